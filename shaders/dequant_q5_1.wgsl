// Q5_1: 32 weights in 24 bytes: d f16 @0, m f16 @2, qh u32 @4, nibbles u8[16] @8 (split as in Q4_0);
// bit j of qh is the fifth bit of weight j; w = d * (nib | bit << 4) + m.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 24u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 4u) * BLOCK_BYTES;
    let j0 = (g % 4u) * 8u;
    let d = weights_f16(blk);
    let m = weights_f16(blk + 2u);
    let qh = weights_u32(blk + 4u) >> j0;
    let q = weights_u32x2(blk + 8u + (j0 & 15u));
    let sh = (j0 >> 4u) * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        let v = ((byte_of8(q, k) >> sh) & 15u) | (((qh >> k) & 1u) << 4u);
        out[k] = d * f32(v) + m;
    }
    return out;
}

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (those 32 activations).
// Q5_1 blocks are 24 bytes: with 4-aligned rows every block is word-aligned.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let wi = (row_byte + s * BLOCK_BYTES) >> 2u;
    let dm = unpack2x16float(weights[wi]);
    let qh = weights[wi + 1u];
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let q = weights[wi + 2u + k];
        let lo = (q & 0x0f0f0f0fu) | spread4_bit4(qh >> (4u * k));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | spread4_bit4(qh >> (16u + 4u * k));
        acc += vec4<f32>(unpack4xU8(lo)) * xv[k] + vec4<f32>(unpack4xU8(hi)) * xv[k + 4u];
    }
    return dm.x * (acc.x + acc.y + acc.z + acc.w) + dm.y * sum32(xv);
}
