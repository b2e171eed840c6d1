// Q3_K: 256 weights in 110 bytes: hmask u8[32] @0, qs u8[64] @32, scales u8[12] @96 (16 packed 6-bit scales),
// d f16 @108. Low two bits come from qs laid out as in Q2_K; the third bit from hmask (bit 4 * half + run of
// byte (weight % 32)), and a clear bit subtracts 4. w = d * (scale - 32) * (q - (hbit ? 0 : 4)).
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 110u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 32u) * BLOCK_BYTES;
    let w0 = (g % 32u) * 8u;
    let half = w0 / 128u;
    let run = (w0 % 128u) / 32u;
    let sub = (w0 % 32u) / 16u;
    let l0 = w0 % 16u;
    // Scale i: low 4 bits from nibble (i / 8) of byte i % 8, high 2 bits from bits 2 * (i / 4) of byte 8 + i % 4.
    let i = half * 8u + run * 2u + sub;
    let lo = (weights_u8(blk + 96u + (i % 8u)) >> ((i / 8u) * 4u)) & 15u;
    let hi = (weights_u8(blk + 104u + (i % 4u)) >> ((i / 4u) * 2u)) & 3u;
    let dl = weights_f16(blk + 108u) * (f32(lo | (hi << 4u)) - 32.0);
    let q = weights_u32x2(blk + 32u + half * 32u + sub * 16u + l0);
    let h = weights_u32x2(blk + sub * 16u + l0);
    let sh = run * 2u;
    let hbit = half * 4u + run;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        let low = (byte_of8(q, k) >> sh) & 3u;
        let m = select(4.0, 0.0, ((byte_of8(h, k) >> hbit) & 1u) != 0u);
        out[k] = dl * (f32(low) - m);
    }
    return out;
}

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (run s % 4 of half (s / 4) % 2 of block s / 8:
// two 16-weight groups with their own scale).
fn q3k_scale(blk: u32, i: u32) -> f32 {
    let lo = (weights_u8(blk + 96u + (i % 8u)) >> ((i / 8u) * 4u)) & 15u;
    let hi = (weights_u8(blk + 104u + (i % 4u)) >> ((i / 4u) * 2u)) & 3u;
    return f32(lo | (hi << 4u)) - 32.0;
}

fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let blk = row_byte + (s / 8u) * BLOCK_BYTES;
    let half = (s % 8u) / 4u;
    let run = s % 4u;
    let q = weights_window8(blk + 32u + half * 32u);
    let hm = weights_window8(blk);
    let sh = run * 2u;
    let hbit = half * 4u + run;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var xs0 = vec4<f32>(0.0);
    var xs1 = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        // A set hmask bit adds 4 to the two low bits; the constant -4 is applied through the x sums.
        let v0 = ((q[k] >> sh) & 0x03030303u) | (((hm[k] >> hbit) & 0x01010101u) << 2u);
        let v1 = ((q[k + 4u] >> sh) & 0x03030303u) | (((hm[k + 4u] >> hbit) & 0x01010101u) << 2u);
        acc0 += vec4<f32>(unpack4xU8(v0)) * xv[k];
        acc1 += vec4<f32>(unpack4xU8(v1)) * xv[k + 4u];
        xs0 += xv[k];
        xs1 += xv[k + 4u];
    }
    let t0 = acc0.x + acc0.y + acc0.z + acc0.w - 4.0 * (xs0.x + xs0.y + xs0.z + xs0.w);
    let t1 = acc1.x + acc1.y + acc1.z + acc1.w - 4.0 * (xs1.x + xs1.y + xs1.z + xs1.w);
    let si = half * 8u + run * 2u;
    return weights_f16(blk + 108u) * (q3k_scale(blk, si) * t0 + q3k_scale(blk, si + 1u) * t1);
}
