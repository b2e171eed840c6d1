// BF16 weights, blocks of 32 (64 bytes) so rows are multiples of 32 like every other type.
// A bfloat16 is the high half of an f32.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let w = (row_byte >> 2u) + g * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 4u; k++) {
        let v = weights[w + k];
        out[2u * k] = bitcast<f32>(v << 16u);
        out[2u * k + 1u] = bitcast<f32>(v & 0xffff0000u);
    }
    return out;
}

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (those 32 activations).
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let w = (row_byte >> 2u) + s * 16u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        let a = weights[w + 2u * k];
        let b = weights[w + 2u * k + 1u];
        let v = bitcast<vec4<f32>>(vec4<u32>(a << 16u, a & 0xffff0000u, b << 16u, b & 0xffff0000u));
        acc += v * xv[k];
    }
    return acc.x + acc.y + acc.z + acc.w;
}
