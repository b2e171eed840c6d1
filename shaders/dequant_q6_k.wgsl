// Q6_K: 256 weights in 210 bytes: ql u8[128] @0, qh u8[64] @128, scales i8[16] @192, d f16 @208.
// Each half of 128 weights uses 64 bytes of ql and 32 of qh; its quarter r (32 weights) takes the low (r < 2)
// or high (r >= 2) nibbles of ql bytes 32 * (r % 2) .. + 31 and bits 2r, 2r + 1 of qh; one scale per 16 weights.
// w = d * scale * (q - 32).
const BLOCK_LEN: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let blk = row_byte + (g / 32u) * BLOCK_BYTES;
    let w0 = (g % 32u) * 8u;
    let half = w0 / 128u;
    let r = (w0 % 128u) / 32u;
    let l0 = w0 % 32u;
    let sc = weights_i8(weights_u8(blk + 192u + half * 8u + r * 2u + l0 / 16u));
    let dl = weights_f16(blk + 208u) * f32(sc);
    let ql = weights_u32x2(blk + half * 64u + (r % 2u) * 32u + l0);
    let qh = weights_u32x2(blk + 128u + half * 32u + l0);
    let shl = (r / 2u) * 4u;
    let shh = r * 2u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        let v = ((byte_of8(ql, k) >> shl) & 15u) | (((byte_of8(qh, k) >> shh) & 3u) << 4u);
        out[k] = dl * (f32(v) - 32.0);
    }
    return out;
}
