// Attention for one query token (decode), all heads, first pass of a split-K scheme
// ("flash decoding"): workgroup (x = split, y = kv head, z = chunk of 8 query heads) scores its
// run of keys against every query head that shares the kv head, so each key and value is read
// once per kv head, not once per query head (Gemma 1: 8 heads, 1 kv head). Within the run it
// keeps an online softmax (running max m, running sum l) and writes the unnormalised output
// with (m, l); attention_combine.wgsl merges the splits. The query sits at position `pos`;
// the visible keys are max(0, pos + 1 - window) ..= pos, and the splits tile exactly that range,
// so long contexts spread over many workgroups instead of one thread looping over everything.
// Dispatch: (n_splits, n_kv_heads, ceil((n_heads / n_kv_heads) / 8)).
//
// Two entry points. `main` reads the queries, normed and rotated, from q and the token's key and
// value from the cache (qk_rope_kv.wgsl put them there). `main_fused` does that step itself, one
// dispatch fewer a layer: each workgroup norms and rotates its query heads from the projections
// (qkv) into its split's rows of q, and the workgroup of the last split, the one whose keys end at
// pos, norms and rotates the key and writes it and the value into the cache before it reads them.
// Other splits never read slot pos. Needs the query heads of a kv head to fit one workgroup (z = 1).
// Assembled as prelude + attention_params.wgsl + kv_f32.wgsl or kv_f16.wgsl (the cache's element type) +
// head_norm_rope.wgsl + this file.

@group(0) @binding(0) var<uniform> params: AttnParams;
// main: (n_heads, head_dim); main_fused: (n_splits, n_heads, head_dim), each split's own rows.
@group(0) @binding(1) var<storage, read_write> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> k_cache: array<kv4_t>;        // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(3) var<storage, read_write> v_cache: array<kv_t>;         // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(4) var<storage, read_write> part_o: array<f32>;           // (n_splits, n_heads, head_dim), unnormalised
@group(0) @binding(5) var<storage, read_write> part_ml: array<vec2<f32>>;    // (n_splits, n_heads): running max, sum
// main_fused only:
@group(0) @binding(6) var<storage, read> qkv: array<f32>;                    // (n_heads + 2 n_kv_heads, head_dim): q | k | v
@group(0) @binding(7) var<storage, read> qk_norm: array<f32>;                // (2, head_dim): q norm, k norm (read when NORM)

// main_fused: Gemma 3's per-head RMSNorm of queries and keys.
override NORM: bool = true;

// The tile sizes are plain constants because they size workgroup arrays.
const WG: u32 = 256u;          // threads; also the largest head_dim (one thread per output dim)
const LANES: u32 = 8u;         // threads sharing one key's dot product (8 consecutive vec4 = 128 bytes)
const TILE: u32 = WG / LANES;  // keys scored per step
const GROUP: u32 = 8u;         // query heads per workgroup
// A finite stand-in for -inf: exp(NEG - m) is 0 and exp(NEG - NEG) is 1 without inf - inf.
const NEG: f32 = -3.0e38;

var<workgroup> partial: array<f32, GROUP * WG>;  // per-lane partial dot products
// Scores, then probabilities, of this step, (GROUP, TILE) as vec4: the value loop loads four keys' at once.
var<workgroup> probs: array<vec4<f32>, GROUP * TILE / 4u>;
var<workgroup> run_max: array<f32, GROUP>;
var<workgroup> rescale: array<f32, GROUP>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    attend(wid, t, 0u);
}

@compute @workgroup_size(WG)
fn main_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let hd = params.head_dim;
    let half = hd / 2u;
    let group = params.n_heads / params.n_kv_heads;
    let kv_head = wid.y;
    let ng = min(GROUP, group);
    let head0 = kv_head * group;
    let q_rows = wid.x * params.n_heads;
    let q_dim = params.n_heads * hd;
    let kv_dim = params.n_kv_heads * hd;
    let pos = params.pos;
    // The query heads together: squares into `partial` (a row of WG per head), one tree over all of them (the
    // same sums head_norm_rope makes, with a barrier per level instead of per level and head), then the rotation.
    for (var g = 0u; g < GROUP; g++) {
        var x = 0.0;
        if (g < ng && t < hd) {
            x = qkv[(head0 + g) * hd + t];
        }
        partial[g * WG + t] = x * x;
    }
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride >>= 1u) {
        if (t < stride) {
            for (var g = 0u; g < ng; g++) {
                partial[g * WG + t] += partial[g * WG + t + stride];
            }
        }
        workgroupBarrier();
    }
    if (t < ng) {
        rescale[t] = select(1.0, head_rms_inv(partial[t * WG], hd, params.eps), NORM);
    }
    workgroupBarrier();
    for (var g = 0u; g < ng; g++) {
        var x = 0.0;
        if (t < hd) {
            x = qkv[(head0 + g) * hd + t];
            if (NORM) {
                x = x * rescale[g] * qk_norm[t];
            }
        }
        partial[g * WG + t] = x;
    }
    workgroupBarrier();
    if (t < half) {
        for (var g = 0u; g < ng; g++) {
            let r = rope_pair(partial[g * WG + t], partial[g * WG + t + half], t, hd, pos, params.rope_base,
                              params.rope_pos_scale);
            let at = (q_rows + head0 + g) * hd;
            q[(at + t) / 4u][(at + t) % 4u] = r.x;
            q[(at + t + half) / 4u][(at + t + half) % 4u] = r.y;
        }
    }
    if (wid.x == params.n_splits - 1u) {
        var x = 0.0;
        var w = 0.0;
        if (t < hd) {
            x = qkv[q_dim + kv_head * hd + t];
            if (NORM) {
                w = qk_norm[hd + t];
            }
        }
        let r = head_norm_rope(x, t, hd, NORM, w, params.eps, pos, params.rope_base, params.rope_pos_scale);
        let row = (kv_head * params.cache_len + pos % params.cache_len) * hd;
        if (t < half) {
            k_cache[(row + t) / 4u][(row + t) % 4u] = to_kv(r.x);
            k_cache[(row + t + half) / 4u][(row + t + half) % 4u] = to_kv(r.y);
        }
        if (t < hd) {
            v_cache[row + t] = to_kv(qkv[q_dim + kv_dim + kv_head * hd + t]);
        }
    }
    storageBarrier();
    attend(wid, t, q_rows);
}

// The first pass for workgroup `wid`, thread `t`, with the queries at rows q_rows.. of q.
fn attend(wid: vec3<u32>, t: u32, q_rows: u32) {
    let hd = params.head_dim;
    let hd4 = hd / 4u;
    let group = params.n_heads / params.n_kv_heads;
    let kv_head = wid.y;
    let g0 = wid.z * GROUP;
    let ng = min(GROUP, group - g0);
    let head0 = kv_head * group + g0;
    let kv_row0 = kv_head * params.cache_len;

    let key_end = params.pos + 1u;
    var key_begin = 0u;
    if (params.window > 0u && key_end > params.window) {
        key_begin = key_end - params.window;
    }
    let split_begin = key_begin + wid.x * params.keys_per_split;
    let split_end = min(split_begin + params.keys_per_split, key_end);

    if (t < GROUP) {
        run_max[t] = NEG;
    }
    workgroupBarrier();

    var acc: array<f32, GROUP>;
    var sum: array<f32, GROUP>;
    let my_key = t / LANES;
    let lane = t % LANES;
    for (var t0 = split_begin; t0 < split_end; t0 += TILE) {
        // Scores: LANES threads per key, each over every LANES-th vec4 of the row.
        var dots: array<f32, GROUP>;
        let key = t0 + my_key;
        if (key < split_end) {
            let krow = (kv_row0 + key % params.cache_len) * hd4;
            for (var i = lane; i < hd4; i += LANES) {
                let k4 = vec4<f32>(k_cache[krow + i]);
                for (var g = 0u; g < GROUP; g++) {
                    if (g < ng) {
                        dots[g] += dot(q[(q_rows + head0 + g) * hd4 + i], k4);
                    }
                }
            }
        }
        workgroupBarrier();  // the previous step's value loop is done with probs
        for (var g = 0u; g < GROUP; g++) {
            partial[g * WG + t] = dots[g];
        }
        workgroupBarrier();
        if (t < GROUP * TILE) {
            let g = t / TILE;
            let j = t % TILE;
            var s = 0.0;
            for (var l = 0u; l < LANES; l++) {
                s += partial[g * WG + j * LANES + l];
            }
            probs[t / 4u][t % 4u] = select(NEG, attn_logit(s), t0 + j < split_end);
        }
        workgroupBarrier();
        if (t < ng) {
            let m_old = run_max[t];
            var m = m_old;
            for (var j = 0u; j < TILE / 4u; j++) {
                let p = probs[t * (TILE / 4u) + j];
                m = max(m, max(max(p.x, p.y), max(p.z, p.w)));
            }
            run_max[t] = m;
            rescale[t] = exp(m_old - m);
        }
        workgroupBarrier();
        if (t < GROUP * TILE) {
            let s = probs[t / 4u][t % 4u];
            probs[t / 4u][t % 4u] = select(0.0, exp(s - run_max[t / TILE]), s > NEG);
        }
        workgroupBarrier();
        // Values: one thread per output dim, for every head of the group.
        let n_keys = min(TILE, split_end - t0);
        for (var g = 0u; g < GROUP; g++) {
            acc[g] *= rescale[g];
            sum[g] *= rescale[g];
        }
        if (t < hd) {
            // Four keys a step, one load of their probabilities per head (on CPU adapters every workgroup-memory
            // load is a loop over the SIMD lanes). Past n_keys the probabilities are 0 and the slots hold finite
            // values (a ring slot, or zeros), so the last step may run over.
            var slot = t0 % params.cache_len;  // stepped, not divided, per key
            for (var j = 0u; j < n_keys; j += 4u) {
                var v: array<f32, 4>;
                for (var k = 0u; k < 4u; k++) {
                    v[k] = f32(v_cache[(kv_row0 + slot) * hd + t]);
                    slot = select(slot + 1u, 0u, slot + 1u == params.cache_len);
                }
                for (var g = 0u; g < GROUP; g++) {
                    if (g < ng) {
                        let p = probs[(g * TILE + j) / 4u];
                        acc[g] += p.x * v[0];
                        acc[g] += p.y * v[1];
                        acc[g] += p.z * v[2];
                        acc[g] += p.w * v[3];
                        sum[g] += p.x;
                        sum[g] += p.y;
                        sum[g] += p.z;
                        sum[g] += p.w;
                    }
                }
            }
        }
    }

    let split = wid.x;
    if (t < hd) {
        for (var g = 0u; g < ng; g++) {
            let row = split * params.n_heads + head0 + g;
            part_o[row * hd + t] = acc[g];
            if (t == 0u) {
                part_ml[row] = vec2<f32>(run_max[g], sum[g]);
            }
        }
    }
}
