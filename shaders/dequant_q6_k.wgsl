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

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv: quarter r of half h of block s / 8,
// two scales (one per 16 weights).
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let blk = row_byte + (s / 8u) * BLOCK_BYTES;
    let half = (s % 8u) / 4u;
    let r = s % 4u;
    let ql0 = blk + half * 64u + (r % 2u) * 32u;
    let qh0 = blk + 128u + half * 32u;
    let shl = (r / 2u) * 4u;
    let shh = r * 2u;
    let ql = weights_window8(ql0);
    let qh = weights_window8(qh0);
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var xs0 = vec4<f32>(0.0);
    var xs1 = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let v0 = ((ql[k] >> shl) & 0x0f0f0f0fu) | (((qh[k] >> shh) & 0x03030303u) << 4u);
        let v1 = ((ql[k + 4u] >> shl) & 0x0f0f0f0fu) | (((qh[k + 4u] >> shh) & 0x03030303u) << 4u);
        acc0 += vec4<f32>(unpack4xU8(v0)) * xv[k];
        acc1 += vec4<f32>(unpack4xU8(v1)) * xv[k + 4u];
        xs0 += xv[k];
        xs1 += xv[k + 4u];
    }
    let sc = weights_u32_2a(blk + 192u + half * 8u + r * 2u);
    let sc0 = f32(weights_i8(sc & 0xffu));
    let sc1 = f32(weights_i8((sc >> 8u) & 0xffu));
    let d = weights_f16(blk + 208u);
    let t0 = acc0.x + acc0.y + acc0.z + acc0.w - 32.0 * (xs0.x + xs0.y + xs0.z + xs0.w);
    let t1 = acc1.x + acc1.y + acc1.z + acc1.w - 32.0 * (xs1.x + xs1.y + xs1.z + xs1.w);
    return d * (sc0 * t0 + sc1 * t1);
}
