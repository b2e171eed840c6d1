// Causal attention for a block of n_queries query tokens at positions pos .. pos + n_queries (prefill) on CPU
// adapters: attention_prefill.wgsl's job, done as attention_decode_rows.wgsl does decode. A workgroup, one
// subgroup, attends one query to every key it sees (0 .. its position, within the window) for one kv head and
// up to NG of its query heads, with attention_rows.wgsl's key loop, and writes the normalised output: no split,
// no second pass. kv_write.wgsl has already stored the block's own keys and values.
// Needs every subgroup to hold LANES invocations. Dispatch: (n_queries, n_kv_heads, ceil(group / NG)).
// Assembled as prelude + attention_params.wgsl + kv_f32.wgsl or kv_f16.wgsl (the cache's element type) +
// attention_rows.wgsl + this file.

@group(0) @binding(0) var<uniform> params: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;          // (n_queries, n_heads, head_dim)
@group(0) @binding(2) var<storage, read> k_cache: array<kv4_t>;        // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(3) var<storage, read> v_cache: array<kv4_t>;        // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;  // (n_queries, n_heads, head_dim)

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let hd4 = params.head_dim / 4u;
    let group = params.n_heads / params.n_kv_heads;
    let g0 = wid.z * NG;
    let ng = min(NG, group - g0);
    let head0 = wid.y * group + g0;
    let query = wid.x;
    load_queries(lane, query * params.n_heads + head0, ng);
    let key_end = params.pos + query + 1u;
    var key_begin = 0u;
    if (params.window > 0u && key_end > params.window) {
        key_begin = key_end - params.window;
    }
    attend_keys(lane, wid.y, key_begin, key_end);
    for (var g = 0u; g < NG; g++) {
        if (g < ng) {
            let inv = 1.0 / run_l[g];
            for (var c = 0u; c < CHUNKS; c++) {
                let d4 = lane + c * LANES;
                if (d4 < hd4) {
                    out[(query * params.n_heads + head0 + g) * hd4 + d4] = acc[g * MAX_CHUNKS + c] * inv;
                }
            }
        }
    }
}
