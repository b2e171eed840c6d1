// The uniform every attention kernel reads (AttnParams in gpu/attention.rs, 64 bytes) and the score
// they share. Prepended to attention_decode.wgsl, attention_decode_rows.wgsl, attention_prefill.wgsl,
// attention_prefill_rows.wgsl and attention_combine.wgsl, each of which binds it as `params`.

struct AttnParams {
    n_heads: u32,
    n_kv_heads: u32,       // divides n_heads
    head_dim: u32,         // multiple of 4, at most 256
    cache_len: u32,        // slots the cache holds; position p lives in slot p % cache_len
    pos: u32,              // position of the (first) query
    n_queries: u32,        // prefill only
    window: u32,           // key j visible to query i when 0 <= i - j < window; 0 = no window
    keys_per_split: u32,   // decode only: keys per split, a multiple of 32 (attention_decode.wgsl's TILE)
    n_splits: u32,         // decode only: workgroups along x
    scale: f32,            // 1/sqrt(head_dim) or 1/sqrt(query_pre_attn_scalar)
    softcap: f32,          // s = softcap * tanh(s / softcap) when > 0
    eps: f32,              // main_fused: the q/k norms' epsilon
    rope_base: f32,        // main_fused: RoPE frequency base
    rope_pos_scale: f32,   // main_fused: 1, or 1 / factor of linear RoPE scaling
    _pad0: u32,
    _pad1: u32,
}


// A raw dot product q.k as the softmax sees it: scaled, then soft-capped (Gemma 2) when softcap > 0.
fn attn_logit(raw: f32) -> f32 {
    let s = raw * params.scale;
    if (params.softcap > 0.0) {
        return params.softcap * tanh_stable(s / params.softcap);
    }
    return s;
}
