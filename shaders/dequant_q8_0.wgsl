// Q8_0: 32 weights in 34 bytes: d f16, q i8[32]; w = d * q. Regrouped at upload (gpu/weights.rs): each group of 8
// blocks is their 8 scales (16 bytes), then their 8 x 32 quants; a last group of m < 8 blocks the same, shorter.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

// Byte offsets of block b's scale and of its quants (16-byte aligned) in the row at `row_byte`.
fn q8_0_block(row_byte: u32, b: u32) -> vec2<u32> {
    let group = row_byte + (b / 8u) * 272u;
    let j = b % 8u;
    return vec2<u32>(group + 2u * j, group + 16u + 32u * j);
}

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let at = q8_0_block(row_byte, g / 4u);
    let d = weights_f16_2a(at.x);
    let w = (at.y >> 2u) + (g % 4u) * 2u;
    let q = vec2<u32>(weights[w], weights[w + 1u]);
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = d * f32(weights_i8(byte_of8(q, k)));
    }
    return out;
}

// The matvec's run: one block.
const RUN: u32 = 32u;
const RUN_X4: u32 = 8u;

// What 8 consecutive blocks (256 weights) share for the matvec: their scales, one vec4 load for 256 weights.
struct Head {
    d: vec4<u32>,
}

fn head256(row_byte: u32, g: u32) -> Head {
    return Head(weights4[(row_byte + g * 272u) >> 4u]);
}

// Dot product of weights 32s..32s+31 (block s) of the row at `row_byte` with xv (those 32 activations), `h` the
// head of group s / 8: the quants are two vec4 loads.
fn dot_run(row_byte: u32, s: u32, h: Head, xv: array<vec4<f32>, RUN_X4>) -> f32 {
    let j = s % 8u;
    let dd = unpack2x16float(h.d[j / 2u]);
    let d = select(dd.x, dd.y, (j & 1u) != 0u);
    let q4 = q8_0_block(row_byte, s).y >> 4u;
    let q0 = weights4[q4];
    let q1 = weights4[q4 + 1u];
    var acc = vec4<f32>(unpack4xI8(q0.x)) * xv[0];
    acc += vec4<f32>(unpack4xI8(q0.y)) * xv[1];
    acc += vec4<f32>(unpack4xI8(q0.z)) * xv[2];
    acc += vec4<f32>(unpack4xI8(q0.w)) * xv[3];
    acc += vec4<f32>(unpack4xI8(q1.x)) * xv[4];
    acc += vec4<f32>(unpack4xI8(q1.y)) * xv[5];
    acc += vec4<f32>(unpack4xI8(q1.z)) * xv[6];
    acc += vec4<f32>(unpack4xI8(q1.w)) * xv[7];
    return d * (acc.x + acc.y + acc.z + acc.w);
}

// Weights 32s..32s+31 (block s) as floats, `h` the head of group s / 8 (prefill on CPU adapters reuses them for
// several tokens).
fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    let j = s % 8u;
    let dd = unpack2x16float(h.d[j / 2u]);
    let d = select(dd.x, dd.y, (j & 1u) != 0u);
    let q4 = q8_0_block(row_byte, s).y >> 4u;
    let q0 = weights4[q4];
    let q1 = weights4[q4 + 1u];
    return array<vec4<f32>, 8>(
        d * vec4<f32>(unpack4xI8(q0.x)), d * vec4<f32>(unpack4xI8(q0.y)),
        d * vec4<f32>(unpack4xI8(q0.z)), d * vec4<f32>(unpack4xI8(q0.w)),
        d * vec4<f32>(unpack4xI8(q1.x)), d * vec4<f32>(unpack4xI8(q1.y)),
        d * vec4<f32>(unpack4xI8(q1.z)), d * vec4<f32>(unpack4xI8(q1.w)));
}
