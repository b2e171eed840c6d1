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

// Dot product of weights 32s..32s+31 (block s) of the row at `row_byte` with xv (those 32 activations).
// Nine word loads per block; the quants are word-aligned or off by exactly two bytes.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let blk = row_byte + s * BLOCK_BYTES;
    let i = blk >> 2u;
    let aligned_q = (blk & 2u) != 0u;
    var prev = weights[i];
    let d = unpack2x16float(select(prev, prev >> 16u, aligned_q)).x;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        let next = weights[i + 1u + k];
        let q = select((prev >> 16u) | (next << 16u), next, aligned_q);
        acc += vec4<f32>(unpack4xI8(q)) * xv[k];
        prev = next;
    }
    return d * (acc.x + acc.y + acc.z + acc.w);
}
