// Q5_0: 32 weights in 22 bytes: d f16 @0, qh u32 @2, nibbles u8[16] @6 (split as in Q4_0);
// bit j of qh is the fifth bit of weight j; w = d * ((nib | bit << 4) - 16).
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 4u) * BLOCK_BYTES;
    let j0 = (g % 4u) * 8u;
    let d = weights_f16(blk);
    let qh = weights_u32(blk + 2u) >> j0;
    let q = weights_u32x2(blk + 6u + (j0 & 15u));
    let sh = (j0 >> 4u) * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        let v = ((byte_of8(q, k) >> sh) & 15u) | (((qh >> k) & 1u) << 4u);
        out[k] = d * (f32(v) - 16.0);
    }
    return out;
}

// Dot product of weights 32s..32s+31 (block s) of the row at `row_byte` with xv (those 32 activations).
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let blk = row_byte + s * BLOCK_BYTES;
    let d = weights_f16(blk);
    let qh = weights_u32_2a(blk + 2u);
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let q = weights_u32_2a(blk + 6u + 4u * k);
        let lo = (q & 0x0f0f0f0fu) | spread4_bit4(qh >> (4u * k));
        let hi = ((q >> 4u) & 0x0f0f0f0fu) | spread4_bit4(qh >> (16u + 4u * k));
        acc += vec4<f32>(unpack4xU8(lo)) * xv[k] + vec4<f32>(unpack4xU8(hi)) * xv[k + 4u];
    }
    return d * (acc.x + acc.y + acc.z + acc.w - 16.0 * sum32(xv));
}
