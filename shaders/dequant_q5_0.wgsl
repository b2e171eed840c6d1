// Q5_0: 32 weights in 22 bytes: d f16, qh u32, nibbles u8[16] (byte i: weight i low, weight i + 16 high);
// bit j of qh is the fifth bit of weight j; w = d * ((nib | bit << 4) - 16). Regrouped at upload
// (gpu/weights.rs): each group of 8 blocks is their 8 scales (16 bytes), their 8 qh words (32), then their
// 8 x 16 nibble bytes; a last group of m < 8 blocks the same, shorter.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

// Byte offsets of block b's scale, qh word and nibbles (16-byte aligned) in the row at `row_byte`.
fn q5_0_block(row_byte: u32, b: u32) -> vec3<u32> {
    let group = row_byte + (b / 8u) * 176u;
    let j = b % 8u;
    return vec3<u32>(group + 2u * j, group + 16u + 4u * j, group + 48u + 16u * j);
}

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let at = q5_0_block(row_byte, g / 4u);
    let j0 = (g % 4u) * 8u;
    let d = weights_f16_2a(at.x);
    let qh = weights[at.y >> 2u] >> j0;
    let w = (at.z + (j0 & 15u)) >> 2u;
    let q = vec2<u32>(weights[w], weights[w + 1u]);
    let sh = (j0 >> 4u) * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        let v = ((byte_of8(q, k) >> sh) & 15u) | (((qh >> k) & 1u) << 4u);
        out[k] = d * (f32(v) - 16.0);
    }
    return out;
}

// The matvec's run: one block.
const RUN: u32 = 32u;
const RUN_X4: u32 = 8u;

// What 8 consecutive blocks (256 weights) share for the matvec: their scales and qh words, three vec4 loads for 256 weights.
struct Head {
    d: vec4<u32>,
    qh_lo: vec4<u32>, // blocks 0..3
    qh_hi: vec4<u32>, // blocks 4..7
}

fn head256(row_byte: u32, g: u32) -> Head {
    let at = (row_byte + g * 176u) >> 4u;
    return Head(weights4[at], weights4[at + 1u], weights4[at + 2u]);
}

// Dot product of weights 32s..32s+31 (block s) of the row at `row_byte` with xv (those 32 activations), `h` the
// head of group s / 8: the nibbles are one vec4 load.
fn dot_run(row_byte: u32, s: u32, h: Head, xv: array<vec4<f32>, RUN_X4>) -> f32 {
    let j = s % 8u;
    let dd = unpack2x16float(h.d[j / 2u]);
    let d = select(dd.x, dd.y, (j & 1u) != 0u);
    let qh = select(h.qh_lo, h.qh_hi, j >= 4u)[j % 4u];
    let q = weights4[q5_0_block(row_byte, s).z >> 4u];
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let lo = (q[k] & 0x0f0f0f0fu) | spread4_bit4(qh >> (4u * k));
        let hi = ((q[k] >> 4u) & 0x0f0f0f0fu) | spread4_bit4(qh >> (16u + 4u * k));
        acc += vec4<f32>(unpack4xU8(lo)) * xv[k] + vec4<f32>(unpack4xU8(hi)) * xv[k + 4u];
    }
    return d * (acc.x + acc.y + acc.z + acc.w - 16.0 * sum32(xv));
}

// Weights 32s..32s+31 (block s) as floats, `h` the head of group s / 8 (prefill on CPU adapters reuses them for
// several tokens).
fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    let j = s % 8u;
    let dd = unpack2x16float(h.d[j / 2u]);
    let d = select(dd.x, dd.y, (j & 1u) != 0u);
    let qh = select(h.qh_lo, h.qh_hi, j >= 4u)[j % 4u];
    let q = weights4[q5_0_block(row_byte, s).z >> 4u];
    var out: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        let lo = (q[k] & 0x0f0f0f0fu) | spread4_bit4(qh >> (4u * k));
        let hi = ((q[k] >> 4u) & 0x0f0f0f0fu) | spread4_bit4(qh >> (16u + 4u * k));
        out[k] = d * (vec4<f32>(unpack4xU8(lo)) - 16.0);
        out[k + 4u] = d * (vec4<f32>(unpack4xU8(hi)) - 16.0);
    }
    return out;
}
