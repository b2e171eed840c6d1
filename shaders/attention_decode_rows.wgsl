// Decode attention for CPU adapters (lavapipe, SwiftShader), first pass of the same split-K scheme as
// attention_decode.wgsl, whose partial results attention_combine.wgsl merges: a workgroup, one subgroup, owns one
// split of the visible keys for one kv head and up to NG of its query heads (x = split, y = kv head, z = chunk of
// NG query heads) and runs attention_rows.wgsl's key loop over it.
//
// Why not attention_decode.wgsl on a CPU adapter: there a storage or workgroup-memory load is a loop over the
// SIMD lanes, one scalar load each, and a barrier switches every fiber of the workgroup; that kernel goes
// through workgroup memory and five barriers per 32 keys and reads the queries once per key, and ran at 4-11%
// of lavapipe's streaming bandwidth, this one at 45-80%.
//
// Two entry points, as in attention_decode.wgsl. `main` reads the queries, normed and rotated, from q and the
// token's key and value from the cache (qk_rope_kv.wgsl put them there). `main_fused` norms and rotates each
// lane's chunks of the queries from the projections (qkv) itself, the norm's sum of squares added across the
// subgroup, and the workgroup of the last split stores the token's key, normed and rotated, and value at pos:
// each lane writes the chunks it then reads, so no barrier is needed. It also leaves its queries in its split's
// rows of q. Needs the query heads of a kv head to fit one workgroup (z = 1).
// Needs every subgroup to hold LANES invocations (gpu/attention.rs checks the adapter's smallest subgroup).
// Dispatch: (n_splits, n_kv_heads, ceil((n_heads / n_kv_heads) / NG)).
// Assembled as prelude + attention_params.wgsl + kv_f32.wgsl or kv_f16.wgsl (the cache's element type) +
// head_norm_rope.wgsl + attention_rows.wgsl + this file.

@group(0) @binding(0) var<uniform> params: AttnParams;
// main: (n_heads, head_dim); main_fused: (n_splits, n_heads, head_dim), each split's own rows.
@group(0) @binding(1) var<storage, read_write> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<kv4_t>;      // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(3) var<storage, read_write> v_cache: array<kv4_t>;      // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(4) var<storage, read_write> part_o: array<vec4<f32>>;   // (n_splits, n_heads, head_dim), unnormalised
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;  // (n_splits, n_heads): running max, sum
// main_fused only:
@group(0) @binding(6) var<storage, read> qkv: array<f32>;                  // (n_heads + 2 n_kv_heads, head_dim): q | k | v
@group(0) @binding(7) var<storage, read> qk_norm: array<f32>;              // (2, head_dim): q norm, k norm (read when NORM)

// main_fused: Gemma 3's per-head RMSNorm of queries and keys.
override NORM: bool = true;

@compute @workgroup_size(LANES)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let group = params.n_heads / params.n_kv_heads;
    let g0 = wid.z * NG;
    load_queries(lane, wid.y * group + g0, min(NG, group - g0));
    attend(wid, lane);
}

// Dims 4 d4 .. 4 d4 + 3 of the head whose projection starts at qkv[base] (norm weights at qk_norm[w_base] when
// NORM, 1 / rms `inv`), rotated to position pos: each dim with its partner half a head away.
fn norm_rope4(base: u32, w_base: u32, inv: f32, d4: u32) -> vec4<f32> {
    let hd = params.head_dim;
    let half = hd / 2u;
    var out: vec4<f32>;
    for (var e = 0u; e < 4u; e++) {
        let d = 4u * d4 + e;
        let other = select(d + half, d - half, d >= half);
        var x = qkv[base + d] * inv;
        var y = qkv[base + other] * inv;
        if (NORM) {
            x *= qk_norm[w_base + d];
            y *= qk_norm[w_base + other];
        }
        if (d < half) {
            out[e] = rope_pair(x, y, d, hd, params.pos, params.rope_base, params.rope_pos_scale).x;
        } else {
            out[e] = rope_pair(y, x, other, hd, params.pos, params.rope_base, params.rope_pos_scale).y;
        }
    }
    return out;
}

// 1 / rms of the head at qkv[base] (1 without NORM), its squares summed across the subgroup.
fn head_inv(base: u32, lane: u32) -> f32 {
    if (!NORM) {
        return 1.0;
    }
    let hd = params.head_dim;
    var sq = 0.0;
    for (var c = 0u; c < CHUNKS; c++) {
        let d4 = lane + c * LANES;
        if (4u * d4 < hd) {
            for (var e = 0u; e < 4u; e++) {
                let x = qkv[base + 4u * d4 + e];
                sq += x * x;
            }
        }
    }
    return head_rms_inv(subgroupAdd(sq), hd, params.eps);
}

@compute @workgroup_size(LANES)
fn main_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let hd = params.head_dim;
    let hd4 = hd / 4u;
    let group = params.n_heads / params.n_kv_heads;
    let kv_head = wid.y;
    let ng = min(NG, group);
    let head0 = kv_head * group;
    let q_dim = params.n_heads * hd;
    let kv_dim = params.n_kv_heads * hd;
    for (var g = 0u; g < NG; g++) {
        if (g < ng) {
            let base = (head0 + g) * hd;
            let inv = head_inv(base, lane);
            for (var c = 0u; c < CHUNKS; c++) {
                let d4 = lane + c * LANES;
                if (d4 < hd4) {
                    let r = norm_rope4(base, 0u, inv, d4);
                    qr[g * MAX_CHUNKS + c] = r;
                    q[(wid.x * params.n_heads + head0 + g) * hd4 + d4] = r;
                }
            }
        }
    }
    if (wid.x == params.n_splits - 1u) {
        let base = q_dim + kv_head * hd;
        let inv = head_inv(base, lane);
        let row = (kv_head * params.cache_len + params.pos % params.cache_len) * hd4;
        for (var c = 0u; c < CHUNKS; c++) {
            let d4 = lane + c * LANES;
            if (d4 < hd4) {
                k_cache[row + d4] = to_kv4(norm_rope4(base, hd, inv, d4));
                let v = q_dim + kv_dim + kv_head * hd + 4u * d4;
                v_cache[row + d4] = to_kv4(vec4<f32>(qkv[v], qkv[v + 1u], qkv[v + 2u], qkv[v + 3u]));
            }
        }
    }
    attend(wid, lane);
}

// The first pass for workgroup `wid`, lane `lane`, with the queries in qr: its split's partial result.
fn attend(wid: vec3<u32>, lane: u32) {
    let hd4 = params.head_dim / 4u;
    let group = params.n_heads / params.n_kv_heads;
    let g0 = wid.z * NG;
    let ng = min(NG, group - g0);
    let head0 = wid.y * group + g0;

    let key_end = params.pos + 1u;
    var key_begin = 0u;
    if (params.window > 0u && key_end > params.window) {
        key_begin = key_end - params.window;
    }
    let split_begin = key_begin + wid.x * params.keys_per_split;
    let split_end = min(split_begin + params.keys_per_split, key_end);
    attend_keys(lane, wid.y, split_begin, split_end);

    for (var g = 0u; g < NG; g++) {
        if (g < ng) {
            let row = wid.x * params.n_heads + head0 + g;
            for (var c = 0u; c < CHUNKS; c++) {
                let d4 = lane + c * LANES;
                if (d4 < hd4) {
                    part_o[row * hd4 + d4] = acc[g * MAX_CHUNKS + c];
                }
            }
            if (lane == 0u) {
                part_ml[row] = vec2<f32>(run_m[g], run_l[g]);
            }
        }
    }
}
