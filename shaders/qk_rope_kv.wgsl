// After the fused Q/K/V projection, per head of each token: Gemma 3's RMSNorm over head_dim
// (NORM), then RoPE (NeoX halves: pairs (i, i + head_dim/2) rotate by pos * base^(-2i/head_dim));
// rotated queries go to q, rotated keys and the values straight into the layer's KV cache at
// the token's slot (position p in slot p % cache_len). One workgroup per (token, head): the
// query heads first, then the kv heads. Assembled as prelude + kv_f32.wgsl or kv_f16.wgsl (the
// cache's element type) + head_norm_rope.wgsl (the norm and rotation, shared with
// attention_decode.wgsl's fused entry) + this file.

struct Params {
    n_tokens: u32,
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,   // even, <= 256
    cache_len: u32,
    pos: u32,        // position of the first token; token t is at pos + t
    base: f32,       // RoPE frequency base of this layer
    eps: f32,
    pos_scale: f32,  // 1, or 1 / factor of linear RoPE scaling (Gemma 3 4B+ global layers)
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> qkv: array<f32>;             // (n_tokens, (n_heads + 2 n_kv_heads) head_dim): q | k | v
@group(0) @binding(1) var<storage, read> norm_w: array<f32>;          // (2, head_dim): q norm, k norm (read when NORM)
@group(0) @binding(2) var<storage, read_write> q: array<f32>;         // (n_tokens, n_heads, head_dim)
@group(0) @binding(3) var<storage, read_write> k_cache: array<kv_t>;  // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(4) var<storage, read_write> v_cache: array<kv_t>;  // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(5) var<uniform> p: Params;

override NORM: bool = true;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let heads = p.n_heads + p.n_kv_heads;
    let g = linear_group(wid, nwg);
    if (g >= p.n_tokens * heads) {
        return;
    }
    let t = g / heads;
    let head = g % heads;
    let is_q = head < p.n_heads;
    let hd = p.head_dim;
    let q_dim = p.n_heads * hd;
    let kv_dim = p.n_kv_heads * hd;
    let token_base = t * (q_dim + 2u * kv_dim);
    let kv = head - select(p.n_heads, 0u, is_q);
    let src = token_base + select(q_dim + kv * hd, head * hd, is_q);

    var x = 0.0;
    var w = 0.0;
    if (lid < hd) {
        x = qkv[src + lid];
        if (NORM) {
            w = norm_w[select(hd, 0u, is_q) + lid];
        }
    }
    let position = p.pos + t;
    let r = head_norm_rope(x, lid, hd, NORM, w, p.eps, position, p.base, p.pos_scale);
    let slot = (position % p.cache_len) * hd;
    let half = hd / 2u;
    if (lid < half) {
        if (is_q) {
            let dst = (t * p.n_heads + head) * hd;
            q[dst + lid] = r.x;
            q[dst + lid + half] = r.y;
        } else {
            let dst = kv * p.cache_len * hd + slot;
            k_cache[dst + lid] = to_kv(r.x);
            k_cache[dst + lid + half] = to_kv(r.y);
        }
    }
    // The values, as they are.
    if (!is_q && lid < hd) {
        v_cache[kv * p.cache_len * hd + slot + lid] = to_kv(qkv[token_base + q_dim + kv_dim + kv * hd + lid]);
    }
}
