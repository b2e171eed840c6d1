// Q6_K: 256 weights in 210 bytes (GGUF): ql u8[128], qh u8[64], scales i8[16], d f16; one scale per 16 weights,
// w = d * scale * (q - 32) with q a 6-bit value (4 low bits in ql, 2 high bits in qh).
// Repacked at upload (gpu/weights.rs): each group of 8 blocks is their 8 d (16 bytes), then per block its scales
// (16) and four runs of 64 weights, each 48 bytes: 32 bytes of low nibbles (byte l holds weight l in its low
// nibble, weight 32 + l in its high one) and 16 of high bit pairs (bits 2s..2s+1 of byte 4m + c belong to weight
// 32 * (s / 2) + 16 * (s % 2) + 4m + c). A run's 64 weights are three vec4 loads, each byte read once; in GGUF's
// order a run of 64 contiguous weights takes six (its low nibbles share bytes with the next run's). A last group of
// m < 8 blocks is laid out the same, shorter.
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

// Byte offsets of block b's d and of its scales (16-byte aligned; run j follows at +16 + 48j) in the row at
// `row_byte`.
fn q6_k_block(row_byte: u32, b: u32) -> vec2<u32> {
    let group = row_byte + (b / 8u) * 1680u;
    let j = b % 8u;
    return vec2<u32>(group + 2u * j, group + 16u + 208u * j);
}

// The 6-bit values of 4 weights, a byte each: `ql` the word of their low nibbles (shifted down by `nib`, 0 or 4)
// and `qh` the word of their high bit pairs (shifted down by `hs`).
fn q6_k_values(ql: u32, nib: u32, qh: u32, hs: u32) -> u32 {
    return ((ql >> nib) & 0x0f0f0f0fu) | (((qh >> hs) & 0x03030303u) << 4u);
}

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let at = q6_k_block(row_byte, g / 32u);
    let w0 = (g % 32u) * 8u;
    let run = at.y + 16u + (w0 / 64u) * 48u;
    let i0 = w0 % 64u;
    // Low or high nibbles; the words k, k + 1 of the run's low nibbles (k even), whose high bits are words
    // k % 4 and k % 4 + 1 of its high bit pairs, at bits 2 * (2 * nibble + k / 4).
    let hh = i0 / 32u;
    let k = (i0 % 32u) / 4u;
    let sc = weights_i8(weights_u8(at.y + w0 / 16u));
    let dl = weights_f16_2a(at.x) * f32(sc);
    let ql = vec2<u32>(weights[(run >> 2u) + k], weights[(run >> 2u) + k + 1u]);
    let hw = ((run + 32u) >> 2u) + k % 4u;
    let qh = vec2<u32>(weights[hw], weights[hw + 1u]);
    let hs = 2u * (2u * hh + k / 4u);
    let lo = vec4<f32>(unpack4xU8(q6_k_values(ql.x, 4u * hh, qh.x, hs))) - 32.0;
    let hi = vec4<f32>(unpack4xU8(q6_k_values(ql.y, 4u * hh, qh.y, hs))) - 32.0;
    return array<f32, 8>(dl * lo.x, dl * lo.y, dl * lo.z, dl * lo.w, dl * hi.x, dl * hi.y, dl * hi.z, dl * hi.w);
}

// The matvec's run: 64 weights, three vec4 loads.
const RUN: u32 = 64u;
const RUN_X4: u32 = 16u;

// What a block's 256 weights share for the matvec: d and the 16 scales (one word, one vec4).
struct Head {
    d: f32,
    sc: vec4<u32>,
}

fn head256(row_byte: u32, g: u32) -> Head {
    let at = q6_k_block(row_byte, g);
    return Head(weights_f16_2a(at.x), weights4[at.y >> 4u]);
}

// The four scales of a word of the 16 (each for 16 weights).
fn q6_k_scales4(w: u32) -> vec4<f32> {
    return vec4<f32>(unpack4xI8(w));
}

// Run j of block `blk` (its scales' byte offset): its low nibbles (two vec4) and high bit pairs (one).
struct Q6Run {
    ql0: vec4<u32>,
    ql1: vec4<u32>,
    qh: vec4<u32>,
}

fn q6_k_run(blk: u32, j: u32) -> Q6Run {
    let r4 = (blk + 16u + 48u * j) >> 4u;
    return Q6Run(weights4[r4], weights4[r4 + 1u], weights4[r4 + 2u]);
}

// Dot product of weights 64t..64t+63 (run t % 4 of block t / 4) of the row at `row_byte` with xv, `h` the block's
// head. The four groups of 16 weights: low nibbles of the first 16 bytes (bit pairs 0), of the next 16 (bit pairs
// 2), then the high nibbles of both (bit pairs 4 and 6); q - 32 is folded in as 32 times the sum of x.
fn dot_run(row_byte: u32, t: u32, h: Head, xv: array<vec4<f32>, RUN_X4>) -> f32 {
    let q = q6_k_run(q6_k_block(row_byte, t / 4u).y, t % 4u);
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    var x0 = vec4<f32>(0.0);
    var x1 = vec4<f32>(0.0);
    var x2 = vec4<f32>(0.0);
    var x3 = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        a0 += vec4<f32>(unpack4xU8(q6_k_values(q.ql0[k], 0u, q.qh[k], 0u))) * xv[k];
        a1 += vec4<f32>(unpack4xU8(q6_k_values(q.ql1[k], 0u, q.qh[k], 2u))) * xv[k + 4u];
        a2 += vec4<f32>(unpack4xU8(q6_k_values(q.ql0[k], 4u, q.qh[k], 4u))) * xv[k + 8u];
        a3 += vec4<f32>(unpack4xU8(q6_k_values(q.ql1[k], 4u, q.qh[k], 6u))) * xv[k + 12u];
        x0 += xv[k];
        x1 += xv[k + 4u];
        x2 += xv[k + 8u];
        x3 += xv[k + 12u];
    }
    let one = vec4<f32>(1.0);
    let dots = vec4<f32>(dot(a0, one), dot(a1, one), dot(a2, one), dot(a3, one));
    let sums = vec4<f32>(dot(x0, one), dot(x1, one), dot(x2, one), dot(x3, one));
    return h.d * dot(q6_k_scales4(h.sc[t % 4u]), dots - 32.0 * sums);
}

// Weights 32s..32s+31 as floats, `h` the block's head (prefill on CPU adapters reuses them for several tokens):
// the low (s even) or high (s odd) nibbles of run (s % 8) / 2 of block s / 8.
fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    let q = q6_k_run(q6_k_block(row_byte, s / 8u).y, (s % 8u) / 2u);
    let hh = s % 2u;
    let sc = q6_k_scales4(h.sc[(s % 8u) / 2u]);
    let d = h.d * select(sc.xy, sc.zw, hh == 1u);
    var out: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        out[k] = d.x * (vec4<f32>(unpack4xU8(q6_k_values(q.ql0[k], 4u * hh, q.qh[k], 4u * hh))) - 32.0);
        out[k + 4u] = d.y * (vec4<f32>(unpack4xU8(q6_k_values(q.ql1[k], 4u * hh, q.qh[k], 4u * hh + 2u))) - 32.0);
    }
    return out;
}
