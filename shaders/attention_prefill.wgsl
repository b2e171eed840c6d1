// Causal attention for a block of n_queries query tokens at positions pos .. pos + n_queries
// (prefill), reading keys and values 0 .. pos + n_queries from the cache (kv_write.wgsl has
// already stored the block's own rows). Same rules as decode: grouped/multi-query heads, scale,
// optional soft-cap before the mask, optional sliding window (key j visible to query i when
// 0 <= i - j < window), online softmax with a running max.
//
// A workgroup owns ROWS (query, head) rows that share one kv head: `heads` = min(group, ROWS)
// heads of the group times `queries` = ROWS / heads consecutive queries, with
// group = n_heads / n_kv_heads. Their queries sit in workgroup memory (pre-scaled); each step
// scores TILE keys against all rows (one thread per (row, key)), then every thread accumulates
// one output dim of all rows, so each key and value read serves ROWS rows.
// Dispatch: (ceil(n_queries / queries), n_kv_heads * ceil(group / heads), 1).
// Assembled as prelude + attention_params.wgsl + kv_f32.wgsl or kv_f16.wgsl (the cache's element type) + this
// file.

@group(0) @binding(0) var<uniform> params: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;        // (n_queries, n_heads, head_dim)
@group(0) @binding(2) var<storage, read> k_cache: array<kv4_t>;      // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(3) var<storage, read> v_cache: array<kv_t>;       // (n_kv_heads, cache_len, head_dim) [layer-local]
@group(0) @binding(4) var<storage, read_write> out: array<f32>;      // (n_queries, n_heads, head_dim)

// Plain constants because they size workgroup arrays.
const WG: u32 = 256u;                 // threads; also the largest head_dim
const ROWS: u32 = 8u;                 // (query, head) rows per workgroup
const TILE: u32 = WG / ROWS;          // keys per step
const QSTRIDE: u32 = WG / 4u + 1u;    // vec4 per query row, padded so 8 rows hit 8 different banks
const NEG: f32 = -3.0e38;

var<workgroup> q_rows: array<vec4<f32>, ROWS * QSTRIDE>;
var<workgroup> probs: array<f32, ROWS * TILE>;
var<workgroup> run_max: array<f32, ROWS>;
var<workgroup> rescale: array<f32, ROWS>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let hd = params.head_dim;
    let hd4 = hd / 4u;
    let group = params.n_heads / params.n_kv_heads;
    let heads = min(group, ROWS);
    let queries = ROWS / heads;
    let head_chunks = (group + heads - 1u) / heads;
    let kv_head = wid.y / head_chunks;
    let g0 = (wid.y % head_chunks) * heads;
    let n_heads_here = min(heads, group - g0);
    let q0 = wid.x * queries;
    let n_queries_here = min(queries, params.n_queries - q0);
    let kv_row0 = kv_head * params.cache_len;

    // Row r is head g0 + r % heads of the group, query q0 + r / heads.
    for (var i = t; i < ROWS * hd4; i += WG) {
        let r = i / hd4;
        let d4 = i % hd4;
        var v = vec4<f32>(0.0);
        if (r % heads < n_heads_here && r / heads < n_queries_here) {
            let head = kv_head * group + g0 + r % heads;
            v = q[((q0 + r / heads) * params.n_heads + head) * hd4 + d4] * params.scale;
        }
        q_rows[r * QSTRIDE + d4] = v;
    }
    if (t < ROWS) {
        run_max[t] = NEG;
    }
    workgroupBarrier();

    // Keys any row of the block can see.
    let key_end = params.pos + q0 + n_queries_here;
    var key_begin = 0u;
    if (params.window > 0u && params.pos + q0 + 1u > params.window) {
        key_begin = params.pos + q0 + 1u - params.window;
    }

    // This thread's (row, key) pair in the scoring phase: 8 rows x 4 keys per 32 threads.
    let my_row = t % ROWS;
    let my_key = t / ROWS;
    let my_row_valid = my_row % heads < n_heads_here && my_row / heads < n_queries_here;
    let my_qpos = params.pos + q0 + my_row / heads;

    var acc: array<f32, ROWS>;
    var sum: array<f32, ROWS>;
    for (var t0 = key_begin; t0 < key_end; t0 += TILE) {
        let key = t0 + my_key;
        var s = NEG;
        let visible = my_row_valid && key <= my_qpos
            && (params.window == 0u || my_qpos - key < params.window);
        if (visible) {
            let krow = (kv_row0 + key % params.cache_len) * hd4;
            var d = 0.0;
            for (var i = 0u; i < hd4; i++) {
                d += dot(q_rows[my_row * QSTRIDE + i], vec4<f32>(k_cache[krow + i]));
            }
            s = d;
            if (params.softcap > 0.0) {
                s = params.softcap * tanh_stable(s / params.softcap);
            }
        }
        workgroupBarrier();  // the previous step's value loop is done with probs
        probs[my_row * TILE + my_key] = s;
        workgroupBarrier();
        if (t < ROWS) {
            let m_old = run_max[t];
            var m = m_old;
            for (var j = 0u; j < TILE; j++) {
                m = max(m, probs[t * TILE + j]);
            }
            run_max[t] = m;
            rescale[t] = exp(m_old - m);
        }
        workgroupBarrier();
        let ps = probs[t];
        probs[t] = select(0.0, exp(ps - run_max[t / TILE]), ps > NEG);
        workgroupBarrier();
        let n_keys = min(TILE, key_end - t0);
        for (var r = 0u; r < ROWS; r++) {
            acc[r] *= rescale[r];
            sum[r] *= rescale[r];
        }
        if (t < hd) {
            var slot = t0 % params.cache_len;  // stepped, not divided, per key
            for (var j = 0u; j < n_keys; j++) {
                let v = f32(v_cache[(kv_row0 + slot) * hd + t]);
                slot = select(slot + 1u, 0u, slot + 1u == params.cache_len);
                for (var r = 0u; r < ROWS; r++) {
                    let p = probs[r * TILE + j];
                    acc[r] += p * v;
                    sum[r] += p;
                }
            }
        }
    }

    if (t < hd) {
        for (var r = 0u; r < ROWS; r++) {
            if (r % heads < n_heads_here && r / heads < n_queries_here) {
                let head = kv_head * group + g0 + r % heads;
                out[((q0 + r / heads) * params.n_heads + head) * hd + t] = acc[r] / sum[r];
            }
        }
    }
}
