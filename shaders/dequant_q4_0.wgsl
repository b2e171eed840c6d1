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

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (those 32 activations).
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let blk = row_byte + s * BLOCK_BYTES;
    let d = weights_f16(blk);
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let q = weights_u32_2a(blk + 2u + 4u * k);
        acc += vec4<f32>(unpack4xU8(q & 0x0f0f0f0fu)) * xv[k] + vec4<f32>(unpack4xU8((q >> 4u) & 0x0f0f0f0fu)) * xv[k + 4u];
    }
    return d * (acc.x + acc.y + acc.z + acc.w - 8.0 * sum32(xv));
}
