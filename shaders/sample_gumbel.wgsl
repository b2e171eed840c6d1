// A draw from the softmax of the kept tokens (select_common.wgsl) at a temperature, by the
// Gumbel-max rule: the token with the largest (logit - max) / temperature + g, where g is
// Gumbel noise hashed from (seed, counter of the draw, token), is distributed as that softmax.
// So a draw over the whole vocabulary is an argmax: each workgroup takes CHUNK tokens of one
// draw and writes its best (score, index); sample_pick.wgsl reduces them. Workgroup
// (draw * groups + group); many draws in one dispatch for the tests, one for the model.
// Temperature 0 takes the best logit (greedy after the penalty).

@group(0) @binding(0) var<storage, read> logits: array<f32>;               // (n)
@group(0) @binding(1) var<storage, read> largest: array<f32>;               // [0]: the largest logit
@group(0) @binding(2) var<storage, read> state: Select;                    // the kept set
@group(0) @binding(3) var<storage, read_write> partial: array<vec2<u32>>;  // (draws, groups): score bits, index
@group(0) @binding(4) var<uniform> p: DrawParams;

override WG: u32 = 256u; // a power of two
override CHUNK: u32 = 4096u;

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

// 32 random bits from (seed, counter): four chained hashes, so every input bit reaches every
// output bit.
fn draw_hash(seed_lo: u32, seed_hi: u32, ctr_lo: u32, ctr_hi: u32) -> u32 {
    var h = fmix(seed_lo ^ 0x9e3779b9u);
    h = fmix(h ^ seed_hi ^ 0x7f4a7c15u);
    h = fmix(h ^ ctr_lo ^ 0x85ebca6bu);
    return fmix(h ^ ctr_hi ^ 0xc2b2ae35u);
}

// Standard Gumbel noise for token i of a draw: -log(-log(u)), u in (0, 1) from 24 bits.
fn gumbel(draw_bits: u32, i: u32) -> f32 {
    let h = fmix(draw_bits ^ fmix(i ^ 0x27d4eb2fu));
    let u = (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0);
    return -log(-log(u));
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let slot = linear_group(wid, nwg);
    let draw = slot / p.groups;
    if (draw >= p.draws) {
        return;
    }
    let start = (slot % p.groups) * CHUNK;
    let end = min(start + CHUNK, p.n);
    // The counter is 64 bits: carry into the high word.
    let lo = p.counter_lo + draw;
    let hi = p.counter_hi + select(0u, 1u, lo < p.counter_lo);
    let bits = draw_hash(p.seed_lo, p.seed_hi, lo, hi);
    let top = largest[0];
    let floor_hi = state.floor_hi;
    let floor_lo = state.floor_lo;
    var bv = 0.0;
    var bi = NONE;
    for (var i = start + lid; i < end; i += WG) {
        let l = logits[i];
        if (l == l && key_at_least(rank_key(l, i, p.digits), floor_hi, floor_lo)) {
            // Temperature 0: the largest (penalized) logit, no noise.
            var v = l;
            if (p.temperature > 0.0) {
                v = (l - top) / p.temperature + gumbel(bits, i);
            }
            if (better(v, i, bv, bi)) {
                bv = v;
                bi = i;
            }
        }
    }
    let b = workgroup_best(lid, bv, bi);
    if (lid == 0u) {
        partial[slot] = vec2<u32>(bitcast<u32>(b.v), b.i);
    }
}
