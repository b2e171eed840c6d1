// Sampling from the K best logits (topk.wgsl + topk_merge.wgsl, best first): keep the first
// top_k, softmax at the temperature, keep the shortest prefix whose probability reaches top_p,
// draw one. The random number comes from a counter-based generator: a hash of (seed, counter),
// so a draw depends only on the seed and the position it is for, never on earlier draws.
// Temperature 0 takes the first candidate (greedy after the penalty).
// Workgroup j makes draw j with counter + j (many draws in one dispatch for the tests; the
// model makes one). Output per draw: the id, its logit, its probability under the kept set.

const NONE: u32 = 0xffffffffu;

struct Params {
    k: u32,            // candidates to keep, 1..=K
    temperature: f32,  // >= 0
    top_p: f32,        // (0, 1]
    draws: u32,
    seed_lo: u32,
    seed_hi: u32,
    counter_lo: u32,
    counter_hi: u32,
}

struct Draw {
    id: u32,
    logit: f32,
    prob: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> cand_idx: array<u32>;  // (K) best first; NONE past the vocab
@group(0) @binding(1) var<storage, read> cand_val: array<f32>;  // (K)
@group(0) @binding(2) var<storage, read_write> out: array<Draw>; // (draws)
@group(0) @binding(3) var<uniform> p: Params;

override K: u32 = 64u;

// A 32-bit avalanche hash (the murmur3 finalizer).
fn fmix(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x85ebca6bu;
    x ^= x >> 13u;
    x *= 0xc2b2ae35u;
    x ^= x >> 16u;
    return x;
}

// Uniform in [0, 1) with 24 bits, from (seed, counter): four chained hashes, so every input bit
// reaches every output bit.
fn uniform01(seed_lo: u32, seed_hi: u32, ctr_lo: u32, ctr_hi: u32) -> f32 {
    var h = fmix(seed_lo ^ 0x9e3779b9u);
    h = fmix(h ^ seed_hi ^ 0x7f4a7c15u);
    h = fmix(h ^ ctr_lo ^ 0x85ebca6bu);
    h = fmix(h ^ ctr_hi ^ 0xc2b2ae35u);
    return f32(h >> 8u) * (1.0 / 16777216.0);
}

var<workgroup> w: array<f32, K>;

@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let draw = linear_group(wid, nwg);
    if (draw >= p.draws) {
        return;
    }
    // Candidates that exist (NaN logits are never candidates), at most k.
    var n = 0u;
    for (var i = 0u; i < min(p.k, K); i++) {
        if (cand_idx[i] == NONE) {
            break;
        }
        n = i + 1u;
    }
    var pick = 0u;
    var prob = 1.0;
    if (n > 1u && p.temperature > 0.0) {
        let top = cand_val[0];
        var total = 0.0;
        for (var i = 0u; i < n; i++) {
            w[i] = exp((cand_val[i] - top) / p.temperature);
            total += w[i];
        }
        // Top-p: the shortest prefix whose probability reaches p.
        var keep = n;
        if (p.top_p < 1.0) {
            var acc = 0.0;
            for (var i = 0u; i < n; i++) {
                acc += w[i] / total;
                if (acc >= p.top_p) {
                    keep = i + 1u;
                    break;
                }
            }
        }
        var kept = 0.0;
        for (var i = 0u; i < keep; i++) {
            kept += w[i];
        }
        // The counter is 64 bits: carry into the high word.
        let lo = p.counter_lo + draw;
        let hi = p.counter_hi + select(0u, 1u, lo < p.counter_lo);
        var u = uniform01(p.seed_lo, p.seed_hi, lo, hi) * kept;
        pick = keep - 1u;
        for (var i = 0u; i < keep; i++) {
            if (u < w[i]) {
                pick = i;
                break;
            }
            u -= w[i];
        }
        prob = w[pick] / kept;
    }
    out[draw] = Draw(cand_idx[pick], cand_val[pick], prob, 0u);
}
