// One attention head's RMSNorm (Gemma 3's q/k norm, optional) and RoPE (NeoX halves: pairs (i, i + head_dim/2)
// rotate by position * pos_scale * base^(-2i/head_dim)), in a workgroup of 256 threads holding the head, thread i
// its dim i. Shared by qk_rope_kv.wgsl and attention_decode.wgsl's fused entry, so both give the same bits. The
// norm sums as rmsnorm.wgsl does and the rotation is rope.wgsl's.

var<workgroup> hnr_sum: array<f32, 256>;
var<workgroup> hnr_row: array<f32, 256>;

const HNR_TWO_PI: f32 = 6.283185307179586;

// 1 / rms of a head of `hd` values whose squares sum to `sum_sq`, as rmsnorm.wgsl computes it.
fn head_rms_inv(sum_sq: f32, hd: u32, eps: f32) -> f32 {
    return inverseSqrt(sum_sq / f32(hd) + eps);
}

// Dims i and i + hd / 2 (x0, x1) of a head at `position`, rotated.
fn rope_pair(x0: f32, x1: f32, i: u32, hd: u32, position: u32, base: f32, pos_scale: f32) -> vec2<f32> {
    let freq = pow(base, -2.0 * f32(i) / f32(hd));
    var angle = f32(position) * pos_scale * freq;
    // sin/cos are only accurate near [-pi, pi] on GPUs.
    angle -= HNR_TWO_PI * round(angle / HNR_TWO_PI);
    let c = cos(angle);
    let s = sin(angle);
    return vec2<f32>(x0 * c - x1 * s, x0 * s + x1 * c);
}

// Every thread of the workgroup calls this (it has barriers). `x`: this thread's value (0 past head_dim); `w`: its
// norm weight, used when `norm`. Threads lid < head_dim / 2 get the rotated pair (dims lid, lid + head_dim / 2).
// The squares sum as a tree over 256 slots; attention_decode.wgsl's fused entry sums several heads the same way.
fn head_norm_rope(x_in: f32, lid: u32, hd: u32, norm: bool, w: f32, eps: f32, position: u32, base: f32,
                  pos_scale: f32) -> vec2<f32> {
    var x = x_in;
    hnr_sum[lid] = x * x;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            hnr_sum[lid] += hnr_sum[lid + stride];
        }
        workgroupBarrier();
    }
    if (norm && lid < hd) {
        x = x * head_rms_inv(hnr_sum[0], hd, eps) * w;
    }
    hnr_row[lid] = x;
    workgroupBarrier();
    let half = hd / 2u;
    var out = vec2<f32>(0.0);
    if (lid < half) {
        out = rope_pair(hnr_row[lid], hnr_row[lid + half], lid, hd, position, base, pos_scale);
    }
    return out;
}
