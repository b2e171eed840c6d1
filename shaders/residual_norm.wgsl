// The residual and the next RMSNorm in one pass over each token's row (one workgroup a row):
//   h += rmsnorm(out) * w_post   (Gemma 2, 3: POST) or h += out (Gemma 1),
//   xn = rmsnorm(h) * w_next     (the next block's pre-norm, or the final norm).
// The sums run in the same order as rmsnorm.wgsl, so the result is bit for bit that of the
// three separate passes it replaces.

struct Params {
    rows: u32,
    n: u32,      // d_model
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> out: array<f32>;        // (rows, n) the block's output
@group(0) @binding(1) var<storage, read> w_post: array<f32>;     // (n) post-norm weight (read when POST)
@group(0) @binding(2) var<storage, read> w_next: array<f32>;     // (n) next norm's weight
@group(0) @binding(3) var<storage, read_write> h: array<f32>;    // (rows, n) residual stream
@group(0) @binding(4) var<storage, read_write> xn: array<f32>;   // (rows, n) normed h
@group(0) @binding(5) var<uniform> p: Params;

override WG: u32 = 256u;   // a power of two
override POST: bool = true;

var<workgroup> partial: array<f32, WG>;

// The sum of `v` over the workgroup (every invocation gets it).
fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = linear_group(wid, nwg);
    // Uniform across the workgroup, so the barriers stay in uniform control flow.
    if (row >= p.rows) {
        return;
    }
    let base = row * p.n;
    var inv_post = 1.0;
    if (POST) {
        var s = 0.0;
        for (var i = lid; i < p.n; i += WG) {
            let v = out[base + i];
            s += v * v;
        }
        inv_post = inverseSqrt(workgroup_sum(lid, s) / f32(p.n) + p.eps);
    }
    var s2 = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        var add = out[base + i];
        if (POST) {
            add = add * inv_post * w_post[i];
        }
        let v = h[base + i] + add;
        h[base + i] = v;
        s2 += v * v;
    }
    let inv = inverseSqrt(workgroup_sum(lid, s2) / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i += WG) {
        xn[base + i] = h[base + i] * inv * w_next[i];
    }
}
