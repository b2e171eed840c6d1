// Shared by the sampling kernels (select_init, select_hist, select_scan,
// sample_gumbel, sample_pick): the rank key of a token, the select state, and masses.
//
// Every token with a number for its logit gets a 64-bit rank key, unique and in the CPU
// sampler's order: (order(logit), then the lower index first). Its high word is the logit's
// bits made to sort as unsigned integers, its low word the index complemented, so a lower index
// ranks higher, and shifted up so its DIGITS bytes (enough for the vocabulary) lead. The kept
// set of a select is always a prefix of that order: the tokens whose key is at least `floor`.
//
// A select finds the boundary token byte by byte, most significant first (a radix select):
// select_hist counts, per value of the next byte, the kept tokens that match the bytes found so
// far and sums their masses; select_scan walks that histogram from the top and either fixes
// the boundary or descends into the byte where the target is crossed. A select ends early once
// the byte it stops at holds one token (or exactly reaches a count target).
//
// A token's mass is exp((logit - max) / temperature) in [0, 1], summed in fixed point (2^31 is
// 1) as 64-bit integers with carries, so sums do not depend on the order atomics run in.

const BINS: u32 = 256u;
const MASS_ONE: f32 = 2147483648.0;

struct Select {
    floor_hi: u32,   // the kept set: tokens whose key >= floor; (0, 0) keeps every token
    floor_lo: u32,
    prefix_hi: u32,  // the bytes of the boundary key found so far (the rest zero)
    prefix_lo: u32,
    pass_: u32,      // the byte the next select_hist counts, 0 = most significant
    done: u32,       // 1: floor and kept are final for this select
    above: u32,      // kept tokens ranked above the current prefix's bucket
    above_lo: u32,   // their mass
    above_hi: u32,
    kept: u32,       // tokens in the kept set, once done
    kept_lo: u32,    // their mass, once done
    kept_hi: u32,
    goal: f32,       // a mass select's target: top_p times the kept mass it started from
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// A select's parameters (select_init, select_hist, select_scan).
struct SelectParams {
    n: u32,            // tokens
    temperature: f32,  // > 0 (greedy draws run no select)
    digits: u32,       // index bytes of the rank key
    mode: u32,         // 0: keep the first k tokens; 1: the shortest prefix of mass top_p
    k: u32,
    top_p: f32,
    first: u32,        // 1: reset the kept set to every token
    _pad: u32,
}

// A draw's parameters (sample_gumbel, sample_pick).
struct DrawParams {
    n: u32,
    temperature: f32,  // >= 0
    digits: u32,
    draws: u32,
    groups: u32,       // ceil(n / CHUNK)
    seed_lo: u32,
    seed_hi: u32,
    counter_lo: u32,
    counter_hi: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// The logit's bits as an unsigned integer in the same order (-inf lowest; -0 is +0, as for the
// comparisons of the other samplers). Not for NaN.
fn order_key(l: f32) -> u32 {
    let b = bitcast<u32>(select(l, 0.0, l == 0.0));
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

// The rank key (hi, lo) of token i; `digits` bytes of index (1..=4).
fn rank_key(l: f32, i: u32, digits: u32) -> vec2<u32> {
    return vec2<u32>(order_key(l), (~i) << (32u - 8u * digits));
}

fn key_at_least(k: vec2<u32>, hi: u32, lo: u32) -> bool {
    return k.x > hi || (k.x == hi && k.y >= lo);
}

// The bits of a key that passes before `pass` have fixed, as (hi, lo) masks.
fn prefix_mask(pass_: u32) -> vec2<u32> {
    var hi = 0xffffffffu;
    if (pass_ == 0u) {
        hi = 0u;
    } else if (pass_ < 4u) {
        hi = 0xffffffffu << (32u - 8u * pass_);
    }
    var lo = 0u;
    if (pass_ > 4u) {
        lo = 0xffffffffu << (32u - 8u * (pass_ - 4u));
    }
    return vec2<u32>(hi, lo);
}

// Byte `pass_` of a key (0 = most significant).
fn key_byte(k: vec2<u32>, pass_: u32) -> u32 {
    if (pass_ < 4u) {
        return (k.x >> (24u - 8u * pass_)) & 0xffu;
    }
    return (k.y >> (24u - 8u * (pass_ - 4u))) & 0xffu;
}

// `prefix` with byte `pass_` set to b.
fn with_byte(prefix: vec2<u32>, pass_: u32, b: u32) -> vec2<u32> {
    if (pass_ < 4u) {
        return vec2<u32>(prefix.x | (b << (24u - 8u * pass_)), prefix.y);
    }
    return vec2<u32>(prefix.x, prefix.y | (b << (24u - 8u * (pass_ - 4u))));
}

// A token's mass in fixed point; 0 for -inf (and for every token when max is -inf).
fn fixed_mass(l: f32, max_logit: f32, temperature: f32) -> u32 {
    let m = exp((l - max_logit) / temperature);
    if (!(m >= 0.0)) {
        return 0u;
    }
    return u32(round(min(m, 1.0) * MASS_ONE));
}

// 64-bit (lo, hi) sum.
fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

// A 64-bit (lo, hi) fixed-point mass as f32 (monotone in the integer).
fn mass_f32(m: vec2<u32>) -> f32 {
    return (f32(m.y) * 4294967296.0 + f32(m.x)) / MASS_ONE;
}
