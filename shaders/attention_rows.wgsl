// The key loop of the CPU-adapter attention kernels (attention_decode_rows.wgsl, attention_prefill_rows.wgsl):
// a workgroup is one subgroup of LANES invocations attending one query to a run of keys of one kv head, for NG
// of the query heads that share it. Lane l holds the head dims of vec4 chunks l, l + LANES, l + 2 LANES, ...
// (CHUNKS of them) of each head's query (qr) and running output (acc), in registers, and the keys come in
// order: each key's dot products are the lanes' partial sums added across the subgroup (no workgroup memory,
// no barrier: on CPU adapters a workgroup-memory load is a loop over the SIMD lanes and a barrier switches
// fibers), then an online softmax (running max m, running sum l) scales the lane's accumulators and adds the
// key's value. Every key and value byte is loaded once, 16 at a time, by the lane that uses it.
//
// NG and CHUNKS are pipeline constants so the loops over heads and chunks unroll and qr and acc stay in
// registers. The kernel declares `params` (attention_params.wgsl), `q` (array<vec4<f32>>), `k_cache` and
// `v_cache` (array<kv4_t>, kv_f32.wgsl or kv_f16.wgsl) and calls attend_keys in uniform control flow
// (subgroupAdd).

override LANES: u32 = 8u;   // invocations of the workgroup, all in one subgroup
override NG: u32 = 4u;      // query heads per workgroup, at most MAX_NG
override CHUNKS: u32 = 8u;  // vec4 chunks of a head per lane: ceil(head_dim / 4 / LANES), at most MAX_CHUNKS

const MAX_NG: u32 = 8u;
const MAX_CHUNKS: u32 = 16u;  // head_dim 256 over 4 lanes
const ROWS_NEG: f32 = -3.0e38;  // a finite stand-in for -inf: exp(NEG - m) is 0, exp(NEG - NEG) is 1

// Chunk c of head g at [g * MAX_CHUNKS + c]: the query (filled by the kernel) and the unnormalised output.
var<private> qr: array<vec4<f32>, MAX_NG * MAX_CHUNKS>;
var<private> acc: array<vec4<f32>, MAX_NG * MAX_CHUNKS>;
// Per head: the running max of the scores and the running sum of exp(score - max).
var<private> run_m: array<f32, MAX_NG>;
var<private> run_l: array<f32, MAX_NG>;

// Fills qr from the kernel's `q` (array<vec4<f32>>, rows of head_dim): heads first .. first + ng.
fn load_queries(lane: u32, first: u32, ng: u32) {
    let hd4 = params.head_dim / 4u;
    for (var g = 0u; g < NG; g++) {
        for (var c = 0u; c < CHUNKS; c++) {
            let d4 = lane + c * LANES;
            if (g < ng && d4 < hd4) {
                qr[g * MAX_CHUNKS + c] = q[(first + g) * hd4 + d4];
            }
        }
    }
}

// Attends qr to keys begin..end (positions; position p in slot p % cache_len) of kv head `kv_head`, from
// an empty softmax: acc, run_m and run_l hold the result.
fn attend_keys(lane: u32, kv_head: u32, begin: u32, end: u32) {
    let hd4 = params.head_dim / 4u;
    for (var g = 0u; g < NG; g++) {
        run_m[g] = ROWS_NEG;
        run_l[g] = 0.0;
        for (var c = 0u; c < CHUNKS; c++) {
            acc[g * MAX_CHUNKS + c] = vec4<f32>(0.0);
        }
    }
    let kv_row0 = params.cache_len * kv_head;
    var slot = begin % params.cache_len;  // stepped, not divided, per key
    for (var key = begin; key < end; key++) {
        let row = (kv_row0 + slot) * hd4;
        slot = select(slot + 1u, 0u, slot + 1u == params.cache_len);
        var dots: array<f32, MAX_NG>;
        for (var c = 0u; c < CHUNKS; c++) {
            let d4 = lane + c * LANES;
            if (d4 < hd4) {
                let k4 = vec4<f32>(k_cache[row + d4]);
                for (var g = 0u; g < NG; g++) {
                    dots[g] += dot(qr[g * MAX_CHUNKS + c], k4);
                }
            }
        }
        var a: array<f32, MAX_NG>;
        var p: array<f32, MAX_NG>;
        for (var g = 0u; g < NG; g++) {
            let s = attn_logit(subgroupAdd(dots[g]));
            let m_new = max(run_m[g], s);
            a[g] = exp(run_m[g] - m_new);
            p[g] = exp(s - m_new);
            run_l[g] = run_l[g] * a[g] + p[g];
            run_m[g] = m_new;
        }
        for (var c = 0u; c < CHUNKS; c++) {
            let d4 = lane + c * LANES;
            if (d4 < hd4) {
                let v4 = vec4<f32>(v_cache[row + d4]);
                for (var g = 0u; g < NG; g++) {
                    let i = g * MAX_CHUNKS + c;
                    acc[i] = acc[i] * a[g] + p[g] * v4;
                }
            }
        }
    }
}
