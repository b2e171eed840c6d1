// Q8_0: 32 weights in 34 bytes: d f16 @0, q i8[32] @2; w = d * q.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 4u) * BLOCK_BYTES;
    let d = weights_f16(blk);
    let q = weights_u32x2(blk + 2u + (g % 4u) * 8u);
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = d * f32(weights_i8(byte_of8(q, k)));
    }
    return out;
}
