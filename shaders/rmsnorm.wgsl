// RMSNorm of each row: out = x * rsqrt(mean(x^2) + eps) * w (GGUF weights already hold Gemma's
// 1 + w). With n = head_dim and rows = tokens * heads it is Gemma 3's per-head q/k norm.
// ACCUMULATE adds the result to `out` instead (Gemma 2/3 post-norms feeding the residual).
// One workgroup per row; sums in f32.

struct Params {
    rows: u32,
    n: u32,      // row length
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;         // (rows, n)
@group(0) @binding(1) var<storage, read> w: array<f32>;         // (n)
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // (rows, n)
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256u;   // a power of two
override ACCUMULATE: bool = false;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = linear_group(wid, nwg);
    // Uniform across the workgroup, so the barriers below stay in uniform control flow.
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    var s = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = x[base + i];
        s += v * v;
    }
    partial[lid] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let inv = inverseSqrt(partial[0] / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i += WG) {
        let v = x[base + i] * inv * w[i];
        if (ACCUMULATE) {
            out[base + i] += v;
        } else {
            out[base + i] = v;
        }
    }
}
