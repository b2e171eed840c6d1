// KV cache write: stores the k and v rows of n_tokens new tokens (already normed and rotated)
// at positions pos .. pos + n_tokens of one layer's cache.
//
// Cache layout [layer-local]: (n_kv_heads, cache_len, head_dim) of kv_t, f32 or f16. One kv head's
// keys are contiguous in position order, so the attention kernels stream a run of keys as one block.
// Position p lives in slot p % cache_len: a sliding-window layer needs only a ring of
// window + block - 1 slots, not the whole context (the host checks that bound).
// Dispatch: fold_workgroups(ceil(n_tokens * n_kv_heads * head_dim / 4 / 256)).
// Assembled as prelude + kv_f32.wgsl or kv_f16.wgsl (the cache's element type) + this file.

struct KvWriteParams {
    n_kv_heads: u32,
    head_dim: u32,   // multiple of 4
    cache_len: u32,  // slots the cache holds
    pos: u32,        // position of the first new token
    n_tokens: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: KvWriteParams;
@group(0) @binding(1) var<storage, read> k_new: array<vec4<f32>>;             // (n_tokens, n_kv_heads, head_dim)
@group(0) @binding(2) var<storage, read> v_new: array<vec4<f32>>;             // (n_tokens, n_kv_heads, head_dim)
@group(0) @binding(3) var<storage, read_write> k_cache: array<kv4_t>;         // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(4) var<storage, read_write> v_cache: array<kv4_t>;         // (n_kv_heads, cache_len, head_dim) [layer-local]

const KV_WRITE_WG: u32 = 256u;

@compute @workgroup_size(KV_WRITE_WG)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let hd4 = params.head_dim / 4u;
    let i = linear_group(wid, nwg) * KV_WRITE_WG + lid;
    if (i >= params.n_tokens * params.n_kv_heads * hd4) {
        return;
    }
    let d4 = i % hd4;
    let head = (i / hd4) % params.n_kv_heads;
    let token = i / (hd4 * params.n_kv_heads);
    let dst = (head * params.cache_len + (params.pos + token) % params.cache_len) * hd4 + d4;
    k_cache[dst] = to_kv4(k_new[i]);
    v_cache[dst] = to_kv4(v_new[i]);
}
