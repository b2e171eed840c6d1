// Rotary position embedding, NeoX halves: for each head, pairs (i, i + head_dim/2) rotate by
// pos * pos_scale * base^(-2i/head_dim). In place on q or k, several tokens at once (prefill).
// pos_scale is 1 / factor of linear RoPE scaling (Gemma 3 4B+ global layers), else 1.

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,   // even
    base: f32,       // per layer: 10000 local, 1e6 global on Gemma 3
    pos_scale: f32,  // per layer: 1, or 1/8 on the global layers of Gemma 3 4B, 12B, 27B
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;   // (n_tokens, n_heads, head_dim)
@group(0) @binding(1) var<storage, read> positions: array<u32>; // (n_tokens)
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 64u;

const TWO_PI: f32 = 6.283185307179586;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let half = p.head_dim / 2u;
    let idx = linear_group(wid, nwg) * WG + lid;
    if (idx >= p.n_tokens * p.n_heads * half) {
        return;
    }
    let i = idx % half;
    let th = idx / half;          // token * n_heads + head
    let t = th / p.n_heads;
    let freq = pow(p.base, -2.0 * f32(i) / f32(p.head_dim));
    var angle = f32(positions[t]) * p.pos_scale * freq;
    // sin/cos are only accurate near [-pi, pi] on GPUs.
    angle -= TWO_PI * round(angle / TWO_PI);
    let c = cos(angle);
    let s = sin(angle);
    let j = th * p.head_dim + i;
    let x0 = x[j];
    let x1 = x[j + half];
    x[j] = x0 * c - x1 * s;
    x[j + half] = x0 * s + x1 * c;
}
