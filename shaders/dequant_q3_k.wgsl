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
