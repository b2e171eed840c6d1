// Q4_K: 256 weights in 144 bytes: d f16 @0, dmin f16 @2, scales u8[12] @4 (8 packed 6-bit scale/min pairs),
// qs u8[128] @16. Each chunk of 64 weights uses 32 bytes of qs: low nibbles for its first 32 weights (scale 2c),
// high nibbles for the next 32 (scale 2c + 1). w = d * sc * q - dmin * m.
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

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

// Dot product of weights 32s..32s+31 (sub-block s % 8 of block s / 8) of the row at `row_byte` with xv.
// Q4_K blocks are 144 bytes, so with 4-aligned rows every field is word-aligned: plain word loads.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let wi = (row_byte + (s / 8u) * BLOCK_BYTES) >> 2u;
    let j = s % 8u;
    let dm = unpack2x16float(weights[wi]);
    // Scales and mins: bytes 0..3, 4..7, 8..11 of the 12 packed bytes.
    let s0 = weights[wi + 1u];
    let s1 = weights[wi + 2u];
    let s2 = weights[wi + 3u];
    let jb = (j % 4u) * 8u;
    var sc: u32;
    var mn: u32;
    if (j < 4u) {
        sc = (s0 >> jb) & 63u;
        mn = (s1 >> jb) & 63u;
    } else {
        sc = ((s2 >> jb) & 15u) | ((((s0 >> jb) >> 6u) & 3u) << 4u);
        mn = (((s2 >> jb) >> 4u) & 15u) | ((((s1 >> jb) >> 6u) & 3u) << 4u);
    }
    let q0 = wi + 4u + (j / 2u) * 8u;
    let sh = (j % 2u) * 4u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        let q = (weights[q0 + k] >> sh) & 0x0f0f0f0fu;
        acc += vec4<f32>(unpack4xU8(q)) * xv[k];
    }
    return dm.x * f32(sc) * (acc.x + acc.y + acc.z + acc.w) - dm.y * f32(mn) * sum32(xv);
}
