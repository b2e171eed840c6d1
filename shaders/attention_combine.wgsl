// Second pass of decode attention: merges the n_splits partial results of attention_decode.wgsl
// for each head, rescaling each by exp(m_split - m) so the softmax is over all visible keys.
// Dispatch: (n_heads, 1, 1). Assembled as prelude + attention_params.wgsl + this file.

@group(0) @binding(0) var<uniform> params: AttnParams;
@group(0) @binding(1) var<storage, read> part_o: array<f32>;         // (n_splits, n_heads, head_dim), unnormalised
@group(0) @binding(2) var<storage, read> part_ml: array<vec2<f32>>;  // (n_splits, n_heads): running max, sum
@group(0) @binding(3) var<storage, read_write> out: array<f32>;      // (n_heads, head_dim)

const COMBINE_WG: u32 = 256u;  // at least head_dim
const NEG: f32 = -3.0e38;

@compute @workgroup_size(COMBINE_WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let hd = params.head_dim;
    let head = wid.x;
    if (t >= hd) {
        return;
    }
    var m = NEG;
    var sum = 0.0;
    var o = 0.0;
    for (var s = 0u; s < params.n_splits; s++) {
        let row = s * params.n_heads + head;
        let ml = part_ml[row];
        let m_new = max(m, ml.x);
        let a = exp(m - m_new);
        let b = exp(ml.x - m_new);
        sum = sum * a + ml.y * b;
        o = o * a + part_o[row * hd + t] * b;
        m = m_new;
    }
    out[head * hd + t] = o / sum;
}
