// Q6_K: 256 weights in 210 bytes: ql u8[128], qh u8[64], scales i8[16], d f16. Each half of 128 weights uses 64
// bytes of ql and 32 of qh; its quarter r (32 weights) takes the low (r < 2) or high (r >= 2) nibbles of ql bytes
// 32 * (r % 2) .. + 31 and bits 2r, 2r + 1 of qh; one scale per 16 weights. w = d * scale * (q - 32).
// Regrouped at upload (gpu/weights.rs): each group of 8 blocks is their 8 d (16 bytes), then per block its scales
// (16), ql (128) and qh (64), 208 bytes; a last group of m < 8 blocks the same, shorter.
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

// Byte offsets of block b's d and of its scales (16-byte aligned; ql follows at +16, qh at +144) in the row at
// `row_byte`.
fn q6_k_block(row_byte: u32, b: u32) -> vec2<u32> {
    let group = row_byte + (b / 8u) * 1680u;
    let j = b % 8u;
    return vec2<u32>(group + 2u * j, group + 16u + 208u * j);
}

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let at = q6_k_block(row_byte, g / 32u);
    let w0 = (g % 32u) * 8u;
    let half = w0 / 128u;
    let r = (w0 % 128u) / 32u;
    let l0 = w0 % 32u;
    let sc = weights_i8(weights_u8(at.y + half * 8u + r * 2u + l0 / 16u));
    let dl = weights_f16_2a(at.x) * f32(sc);
    let lw = (at.y + 16u + half * 64u + (r % 2u) * 32u + l0) >> 2u;
    let hw = (at.y + 144u + half * 32u + l0) >> 2u;
    let ql = vec2<u32>(weights[lw], weights[lw + 1u]);
    let qh = vec2<u32>(weights[hw], weights[hw + 1u]);
    let shl = (r / 2u) * 4u;
    let shh = r * 2u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        let v = ((byte_of8(ql, k) >> shl) & 15u) | (((byte_of8(qh, k) >> shh) & 3u) << 4u);
        out[k] = dl * (f32(v) - 32.0);
    }
    return out;
}

// The matvec's run: 64 weights, quarters 2p and 2p + 1 of a half, which share their 32 qh bytes and the shift of
// their ql nibbles: 6 vec4 loads for 64 weights, against 8 with runs of 32. (A whole half of 128, whose quarters
// also share their ql bytes, loads half as often but ran 8x slower on lavapipe: the 32 vec4 of x it takes spill.)
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

// The 6-bit values of quarter r (32 weights) of a half, a byte each (weights 0..15 in lo, 16..31 in hi), from the
// quarter's ql bytes and the half's qh bytes.
struct Q6Quarter {
    lo: vec4<u32>,
    hi: vec4<u32>,
}

fn q6_k_quarter(ql: array<vec4<u32>, 2>, qh: array<vec4<u32>, 2>, r: u32) -> Q6Quarter {
    let shl = (r / 2u) * 4u;
    let shh = r * 2u;
    var out: Q6Quarter;
    for (var k = 0u; k < 4u; k++) {
        out.lo[k] = ((ql[0][k] >> shl) & 0x0f0f0f0fu) | (((qh[0][k] >> shh) & 0x03030303u) << 4u);
        out.hi[k] = ((ql[1][k] >> shl) & 0x0f0f0f0fu) | (((qh[1][k] >> shh) & 0x03030303u) << 4u);
    }
    return out;
}

// The scales of quarter r of half `half` (bytes half * 8 + r * 2 and the next: one word of the 16).
fn q6_k_scales(h: Head, half: u32, r: u32) -> vec2<f32> {
    let sw = h.sc[half * 2u + r / 2u] >> ((r % 2u) * 16u);
    return vec2<f32>(f32(weights_i8(sw & 0xffu)), f32(weights_i8((sw >> 8u) & 0xffu)));
}

// The ql bytes of quarter r of half `half` (two vec4) and the half's qh bytes (two vec4).
fn q6_k_ql(blk: u32, half: u32, r: u32) -> array<vec4<u32>, 2> {
    let l4 = (blk + 16u + half * 64u + (r % 2u) * 32u) >> 4u;
    return array<vec4<u32>, 2>(weights4[l4], weights4[l4 + 1u]);
}

fn q6_k_qh(blk: u32, half: u32) -> array<vec4<u32>, 2> {
    let h4 = (blk + 144u + half * 32u) >> 4u;
    return array<vec4<u32>, 2>(weights4[h4], weights4[h4 + 1u]);
}

// Dot product of one quarter's 32 weights (values q, scales sc) with the 8 vec4 of x from xv[x0].
fn q6_k_dot_quarter(q: Q6Quarter, sc: vec2<f32>, xv: array<vec4<f32>, RUN_X4>, x0: u32) -> f32 {
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var xs0 = vec4<f32>(0.0);
    var xs1 = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        acc0 += vec4<f32>(unpack4xU8(q.lo[k])) * xv[x0 + k];
        acc1 += vec4<f32>(unpack4xU8(q.hi[k])) * xv[x0 + k + 4u];
        xs0 += xv[x0 + k];
        xs1 += xv[x0 + k + 4u];
    }
    let t0 = acc0.x + acc0.y + acc0.z + acc0.w - 32.0 * (xs0.x + xs0.y + xs0.z + xs0.w);
    let t1 = acc1.x + acc1.y + acc1.z + acc1.w - 32.0 * (xs1.x + xs1.y + xs1.z + xs1.w);
    return sc.x * t0 + sc.y * t1;
}

// Dot product of weights 64t..64t+63 (quarters 2p, 2p + 1 of half (t % 4) / 2 of block t / 4, p = t % 2) of the
// row at `row_byte` with xv, `h` the block's head.
fn dot_run(row_byte: u32, t: u32, h: Head, xv: array<vec4<f32>, RUN_X4>) -> f32 {
    let blk = q6_k_block(row_byte, t / 4u).y;
    let half = (t % 4u) / 2u;
    let r = (t % 2u) * 2u;
    let qh = q6_k_qh(blk, half);
    let q0 = q6_k_quarter(q6_k_ql(blk, half, r), qh, r);
    let q1 = q6_k_quarter(q6_k_ql(blk, half, r + 1u), qh, r + 1u);
    let a = q6_k_dot_quarter(q0, q6_k_scales(h, half, r), xv, 0u);
    let b = q6_k_dot_quarter(q1, q6_k_scales(h, half, r + 1u), xv, 8u);
    return h.d * (a + b);
}

// Weights 32s..32s+31 as floats, `h` the block's head (prefill on CPU adapters reuses them for several tokens).
fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    // Quarter s % 4 of half (s % 8) / 4 of block s / 8.
    let blk = q6_k_block(row_byte, s / 8u).y;
    let half = (s % 8u) / 4u;
    let r = s % 4u;
    let q = q6_k_quarter(q6_k_ql(blk, half, r), q6_k_qh(blk, half), r);
    let d = h.d * q6_k_scales(h, half, r);
    var out: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        out[k] = d.x * (vec4<f32>(unpack4xU8(q.lo[k])) - 32.0);
        out[k + 4u] = d.y * (vec4<f32>(unpack4xU8(q.hi[k])) - 32.0);
    }
    return out;
}
