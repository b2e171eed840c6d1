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

// Block s's scale, from `h`, the head of its group, and its 32 quants as 8 words (two vec4 loads).
struct Q8Run {
    d: f32,
    q: array<vec4<u32>, 2>,
}

fn q8_0_run(row_byte: u32, s: u32, h: Head) -> Q8Run {
    let j = s % 8u;
    let dd = unpack2x16float(h.d[j / 2u]);
    let q4 = q8_0_block(row_byte, s).y >> 4u;
    return Q8Run(select(dd.x, dd.y, (j & 1u) != 0u), array<vec4<u32>, 2>(weights4[q4], weights4[q4 + 1u]));
}

// Dot product of weights 32s..32s+31 (block s) of the row at `row_byte` with xv (those 32 activations), `h` the
// head of group s / 8.
fn dot_run(row_byte: u32, s: u32, h: Head, xv: array<vec4<f32>, RUN_X4>) -> f32 {
    let r = q8_0_run(row_byte, s, h);
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        acc += vec4<f32>(unpack4xI8(r.q[0][k])) * xv[k];
        acc += vec4<f32>(unpack4xI8(r.q[1][k])) * xv[k + 4u];
    }
    return r.d * (acc.x + acc.y + acc.z + acc.w);
}

// Weights 32s..32s+31 (block s) as floats, `h` the head of group s / 8 (prefill on CPU adapters reuses them for
// several tokens).
fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    let r = q8_0_run(row_byte, s, h);
    var out: array<vec4<f32>, 8>;
    for (var k = 0u; k < 4u; k++) {
        out[k] = r.d * vec4<f32>(unpack4xI8(r.q[0][k]));
        out[k + 4u] = r.d * vec4<f32>(unpack4xI8(r.q[1][k]));
    }
    return out;
}
