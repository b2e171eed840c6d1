// Gated MLP product from the fused gate/up projection: out = gelu_tanh(gate) * up, where each
// token's row of `gu` holds its ffn gate values, then its ffn up values.

struct Params {
    n_tokens: u32,
    ffn: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> gu: array<f32>;          // (n_tokens, 2 ffn): gate | up
@group(0) @binding(1) var<storage, read_write> out: array<f32>;   // (n_tokens, ffn)
@group(0) @binding(2) var<uniform> p: Params;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_group(wid, nwg) * WG + lid;
    if (i >= p.n_tokens * p.ffn) {
        return;
    }
    let t = i / p.ffn;
    let j = i % p.ffn;
    let row = t * 2u * p.ffn;
    out[i] = gelu_tanh(gu[row + j]) * gu[row + p.ffn + j];
}
