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

// The matvec's run: a chunk of 64 weights, the low and high nibbles of the same 32 qs bytes.
const RUN: u32 = 64u;
const RUN_X4: u32 = 16u;

// What a block's 256 weights share: d, dmin and the 12 scale bytes, one vec4 load (blocks are 144 bytes and rows
// start on 16).
struct Head {
    h: vec4<u32>,
}

fn head256(row_byte: u32, g: u32) -> Head {
    return Head(weights4[(row_byte + g * BLOCK_BYTES) >> 4u]);
}

// (scale, min) of sub-block j (0..7) of the block whose head is `h`: ggml's get_scale_min_k4.
fn q4_k_scale_min(h: Head, j: u32) -> vec2<f32> {
    let jb = (j % 4u) * 8u;
    if (j < 4u) {
        return vec2<f32>(f32((h.h.y >> jb) & 63u), f32((h.h.z >> jb) & 63u));
    }
    let sc = ((h.h.w >> jb) & 15u) | ((((h.h.y >> jb) >> 6u) & 3u) << 4u);
    let mn = (((h.h.w >> jb) >> 4u) & 15u) | ((((h.h.z >> jb) >> 6u) & 3u) << 4u);
    return vec2<f32>(f32(sc), f32(mn));
}

// Dot product of weights 64r..64r+63 (chunk r % 4 of block r / 4) of the row at `row_byte` with xv, `h` the
// block's head: the chunk's 32 qs bytes, two vec4 loads, hold sub-block 2c in their low nibbles and 2c + 1 in
// their high ones.
fn dot_run(row_byte: u32, r: u32, h: Head, xv: array<vec4<f32>, RUN_X4>) -> f32 {
    let c = r % 4u;
    let q4 = ((row_byte + (r / 4u) * BLOCK_BYTES) >> 4u) + 1u + c * 2u;
    let qs0 = weights4[q4];
    let qs1 = weights4[q4 + 1u];
    var lo = vec4<f32>(0.0);
    var hi = vec4<f32>(0.0);
    var x_lo = vec4<f32>(0.0);
    var x_hi = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        lo += vec4<f32>(unpack4xU8(qs0[k] & 0x0f0f0f0fu)) * xv[k];
        lo += vec4<f32>(unpack4xU8(qs1[k] & 0x0f0f0f0fu)) * xv[k + 4u];
        hi += vec4<f32>(unpack4xU8((qs0[k] >> 4u) & 0x0f0f0f0fu)) * xv[k + 8u];
        hi += vec4<f32>(unpack4xU8((qs1[k] >> 4u) & 0x0f0f0f0fu)) * xv[k + 12u];
        x_lo += xv[k] + xv[k + 4u];
        x_hi += xv[k + 8u] + xv[k + 12u];
    }
    let dm = unpack2x16float(h.h.x);
    let a = q4_k_scale_min(h, 2u * c);
    let b = q4_k_scale_min(h, 2u * c + 1u);
    let sum_lo = lo.x + lo.y + lo.z + lo.w;
    let sum_hi = hi.x + hi.y + hi.z + hi.w;
    let xs_lo = x_lo.x + x_lo.y + x_lo.z + x_lo.w;
    let xs_hi = x_hi.x + x_hi.y + x_hi.z + x_hi.w;
    return dm.x * (a.x * sum_lo + b.x * sum_hi) - dm.y * (a.y * xs_lo + b.y * xs_hi);
}

// Weights 32s..32s+31 as floats, `h` the block's head (prefill on CPU adapters reuses them for several tokens).
fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    let j = s % 8u;
    let dm = unpack2x16float(h.h.x);
    let sm = q4_k_scale_min(h, j);
    let dl = dm.x * sm.x;
    let ml = dm.y * sm.y;
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
