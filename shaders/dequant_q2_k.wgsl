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

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (run s % 4 of half (s / 4) % 2 of block s / 8:
// two 16-weight groups with their own scale and min).
// Q2_K blocks are 84 bytes: with 4-aligned rows every field is word-aligned.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let wi = (row_byte + (s / 8u) * BLOCK_BYTES) >> 2u;
    let half = (s % 8u) / 4u;
    let run = s % 4u;
    let si = half * 8u + run * 2u;
    let scw = weights[wi + si / 4u] >> ((si % 4u) * 8u);
    let dm = unpack2x16float(weights[wi + 20u]);
    let sh = run * 2u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var xs0 = vec4<f32>(0.0);
    var xs1 = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let v0 = (weights[wi + 4u + half * 8u + k] >> sh) & 0x03030303u;
        let v1 = (weights[wi + 8u + half * 8u + k] >> sh) & 0x03030303u;
        acc0 += vec4<f32>(unpack4xU8(v0)) * xv[k];
        acc1 += vec4<f32>(unpack4xU8(v1)) * xv[k + 4u];
        xs0 += xv[k];
        xs1 += xv[k + 4u];
    }
    let a0 = acc0.x + acc0.y + acc0.z + acc0.w;
    let a1 = acc1.x + acc1.y + acc1.z + acc1.w;
    let x0 = xs0.x + xs0.y + xs0.z + xs0.w;
    let x1 = xs1.x + xs1.y + xs1.z + xs1.w;
    let sc0 = scw & 0xffu;
    let sc1 = (scw >> 8u) & 0xffu;
    return dm.x * (f32(sc0 & 15u) * a0 + f32(sc1 & 15u) * a1) - dm.y * (f32(sc0 >> 4u) * x0 + f32(sc1 >> 4u) * x1);
}
