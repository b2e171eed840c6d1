// F16 weights, blocks of 32 halves (64 bytes) so rows are multiples of 32 like every other type.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 64u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    let w = (row_byte >> 2u) + g * 4u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 4u; k++) {
        let h = unpack2x16float(weights[w + k]);
        out[2u * k] = h.x;
        out[2u * k + 1u] = h.y;
    }
    return out;
}

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (those 32 activations): 4 vec4 loads.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let w = (row_byte >> 4u) + s * 4u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let v = weights4[w + k];
        acc += vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)) * xv[2u * k];
        acc += vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)) * xv[2u * k + 1u];
    }
    return acc.x + acc.y + acc.z + acc.w;
}
