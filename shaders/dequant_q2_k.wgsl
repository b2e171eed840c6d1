// Q2_K: 256 weights in 84 bytes: scales u8[16] @0 (low nibble scale, high nibble min, one per 16 weights),
// qs u8[64] @16, d f16 @80, dmin f16 @82.
// Each half of 128 weights uses 32 bytes of qs; its 4 runs of 32 weights take bit pairs 0-1, 2-3, 4-5, 6-7,
// the first 16 of a run from bytes 0..15 and the next 16 from bytes 16..31.
// w = d * (sc & 15) * q - dmin * (sc >> 4).
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 84u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 32u) * BLOCK_BYTES;
    let w0 = (g % 32u) * 8u;
    let half = w0 / 128u;
    let run = (w0 % 128u) / 32u;
    let sub = (w0 % 32u) / 16u;
    let l0 = w0 % 16u;
    let sc = weights_u8(blk + half * 8u + run * 2u + sub);
    let dl = weights_f16(blk + 80u) * f32(sc & 15u);
    let ml = weights_f16(blk + 82u) * f32(sc >> 4u);
    let q = weights_u32x2(blk + 16u + half * 32u + sub * 16u + l0);
    let sh = run * 2u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = dl * f32((byte_of8(q, k) >> sh) & 3u) - ml;
    }
    return out;
}
