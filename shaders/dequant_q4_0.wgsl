// Q4_0: 32 weights in 18 bytes: d f16 @0, nibbles u8[16] @2; weight j < 16 is the low nibble of byte j,
// weight j >= 16 the high nibble of byte j - 16; w = d * (nib - 8).
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 4u) * BLOCK_BYTES;
    let j0 = (g % 4u) * 8u;
    let d = weights_f16(blk);
    let q = weights_u32x2(blk + 2u + (j0 & 15u));
    let sh = (j0 >> 4u) * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = d * (f32((byte_of8(q, k) >> sh) & 15u) - 8.0);
    }
    return out;
}
