// Q5_K: 256 weights in 176 bytes: d f16 @0, dmin f16 @2, scales u8[12] @4 (as in Q4_K), qh u8[32] @16,
// qs u8[128] @48 (nibbles as in Q4_K). The fifth bit of weight 32 * s + l is bit s of qh[l].
// w = d * sc * q - dmin * m.
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 32u) * BLOCK_BYTES;
    let w0 = (g % 32u) * 8u;
    let c = w0 / 64u;
    let hi = (w0 % 64u) / 32u;
    let l0 = w0 % 32u;
    let s = 2u * c + hi;
    let sm = scale_min_k4(blk + 4u, s);
    let dl = weights_f16(blk) * sm.x;
    let ml = weights_f16(blk + 2u) * sm.y;
    let q = weights_u32x2(blk + 48u + c * 32u + l0);
    let h = weights_u32x2(blk + 16u + l0);
    let sh = hi * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        let v = ((byte_of8(q, k) >> sh) & 15u) | (((byte_of8(h, k) >> s) & 1u) << 4u);
        out[k] = dl * f32(v) - ml;
    }
    return out;
}

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (sub-block s % 8 of block s / 8).
// Q5_K blocks are 176 bytes: with 4-aligned rows every field is word-aligned.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let wi = (row_byte + (s / 8u) * BLOCK_BYTES) >> 2u;
    let j = s % 8u;
    let dm = unpack2x16float(weights[wi]);
    let sm = scale_min_k4(wi * 4u + 4u, j);
    let q0 = wi + 12u + (j / 2u) * 8u;
    let sh = (j % 2u) * 4u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        let h = ((weights[wi + 4u + k] >> j) & 0x01010101u) << 4u;
        let q = ((weights[q0 + k] >> sh) & 0x0f0f0f0fu) | h;
        acc += vec4<f32>(unpack4xU8(q)) * xv[k];
    }
    return dm.x * sm.x * (acc.x + acc.y + acc.z + acc.w) - dm.y * sm.y * sum32(xv);
}
