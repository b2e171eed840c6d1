// Q4_1: 32 weights in 20 bytes: d f16 @0, m f16 @2, nibbles u8[16] @4 (split as in Q4_0); w = d * nib + m.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 4u) * BLOCK_BYTES;
    let j0 = (g % 4u) * 8u;
    let d = weights_f16(blk);
    let m = weights_f16(blk + 2u);
    let q = weights_u32x2(blk + 4u + (j0 & 15u));
    let sh = (j0 >> 4u) * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = d * f32((byte_of8(q, k) >> sh) & 15u) + m;
    }
    return out;
}

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (those 32 activations).
// Q4_1 blocks are 20 bytes: with 4-aligned rows every block is word-aligned.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let wi = (row_byte + s * BLOCK_BYTES) >> 2u;
    let dm = unpack2x16float(weights[wi]);
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let q = weights[wi + 1u + k];
        acc += vec4<f32>(unpack4xU8(q & 0x0f0f0f0fu)) * xv[k] + vec4<f32>(unpack4xU8((q >> 4u) & 0x0f0f0f0fu)) * xv[k + 4u];
    }
    return dm.x * (acc.x + acc.y + acc.z + acc.w) + dm.y * sum32(xv);
}
