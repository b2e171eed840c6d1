// Q4_K: 256 weights in 144 bytes: d f16 @0, dmin f16 @2, scales u8[12] @4 (8 packed 6-bit scale/min pairs),
// qs u8[128] @16. Each chunk of 64 weights uses 32 bytes of qs: low nibbles for its first 32 weights (scale 2c),
// high nibbles for the next 32 (scale 2c + 1). w = d * sc * q - dmin * m.
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

// ggml's get_scale_min_k4: the 6-bit (scale, min) pair j of the 12 bytes at `at`.
fn scale_min_k4(at: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2<f32>(f32(weights_u8(at + j) & 63u), f32(weights_u8(at + j + 4u) & 63u));
    }
    let b = weights_u8(at + j + 4u);
    let sc = (b & 15u) | ((weights_u8(at + j - 4u) >> 6u) << 4u);
    let m = (b >> 4u) | ((weights_u8(at + j) >> 6u) << 4u);
    return vec2<f32>(f32(sc), f32(m));
}

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 32u) * BLOCK_BYTES;
    let w0 = (g % 32u) * 8u;
    let c = w0 / 64u;
    let hi = (w0 % 64u) / 32u;
    let l0 = w0 % 32u;
    let sm = scale_min_k4(blk + 4u, 2u * c + hi);
    let dl = weights_f16(blk) * sm.x;
    let ml = weights_f16(blk + 2u) * sm.y;
    let q = weights_u32x2(blk + 16u + c * 32u + l0);
    let sh = hi * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = dl * f32((byte_of8(q, k) >> sh) & 15u) - ml;
    }
    return out;
}
