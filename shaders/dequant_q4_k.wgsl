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

// What the 8 runs of 32 weights of a block share for the matvec: d, dmin and the 12 scale bytes, one vec4 load
// (blocks are 144 bytes and rows start on 16).
struct Head {
    h: vec4<u32>,
}

fn head8(row_byte: u32, g: u32) -> Head {
    return Head(weights4[(row_byte + g * BLOCK_BYTES) >> 4u]);
}

// Dot product of weights 32s..32s+31 (sub-block s % 8 of block s / 8) of the row at `row_byte` with xv, `h` the
// block's head: the 32 bytes of qs whose low (even j) or high (odd j) nibbles these weights are, two vec4 loads.
fn dot32h(row_byte: u32, s: u32, h: Head, xv: array<vec4<f32>, 8>) -> f32 {
    let j = s % 8u;
    let dm = unpack2x16float(h.h.x);
    // Scales and mins: bytes 0..3, 4..7, 8..11 of the 12 packed bytes.
    let s0 = h.h.y;
    let s1 = h.h.z;
    let s2 = h.h.w;
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
    let q4 = ((row_byte + (s / 8u) * BLOCK_BYTES) >> 4u) + 1u + (j / 2u) * 2u;
    let qs = array<vec4<u32>, 2>(weights4[q4], weights4[q4 + 1u]);
    let sh = (j % 2u) * 4u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        acc += vec4<f32>(unpack4xU8((qs[0][k] >> sh) & 0x0f0f0f0fu)) * xv[k];
        acc += vec4<f32>(unpack4xU8((qs[1][k] >> sh) & 0x0f0f0f0fu)) * xv[k + 4u];
    }
    return dm.x * f32(sc) * (acc.x + acc.y + acc.z + acc.w) - dm.y * f32(mn) * sum32(xv);
}

// Weights 32s..32s+31 as floats, `h` the block's head (prefill on CPU adapters reuses them for several tokens).
fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    let j = s % 8u;
    let dm = unpack2x16float(h.h.x);
    let jb = (j % 4u) * 8u;
    var sc: u32;
    var mn: u32;
    if (j < 4u) {
        sc = (h.h.y >> jb) & 63u;
        mn = (h.h.z >> jb) & 63u;
    } else {
        sc = ((h.h.w >> jb) & 15u) | ((((h.h.y >> jb) >> 6u) & 3u) << 4u);
        mn = (((h.h.w >> jb) >> 4u) & 15u) | ((((h.h.z >> jb) >> 6u) & 3u) << 4u);
    }
    let dl = dm.x * f32(sc);
    let ml = dm.y * f32(mn);
    let q4 = ((row_byte + (s / 8u) * BLOCK_BYTES) >> 4u) + 1u + (j / 2u) * 2u;
    let qs = array<vec4<u32>, 2>(weights4[q4], weights4[q4 + 1u]);
    let sh = (j % 2u) * 4u;
    var out: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        out[k] = dl * vec4<f32>(unpack4xU8((qs[0][k] >> sh) & 0x0f0f0f0fu)) - ml;
        out[k + 4u] = dl * vec4<f32>(unpack4xU8((qs[1][k] >> sh) & 0x0f0f0f0fu)) - ml;
    }
    return out;
}
