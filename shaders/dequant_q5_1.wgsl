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
