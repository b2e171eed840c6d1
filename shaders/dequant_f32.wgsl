// F32 weights: a "block" is 32 plain floats, so rows are multiples of 32 like every other type.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    // Rows start 16-byte aligned and f32s are 4 bytes: plain word loads.
    let w = (row_byte >> 2u) + g * 8u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = bitcast<f32>(weights[w + k]);
    }
    return out;
}

// Dot product of weights 32s..32s+31 of the row at `row_byte` with xv (those 32 activations): 8 vec4 loads.
fn dot32(row_byte: u32, s: u32, xv: array<vec4<f32>, 8>) -> f32 {
    let w = (row_byte >> 4u) + s * 8u;
    var acc = vec4<f32>(0.0);
    for (var k = 0u; k < 8u; k++) {
        acc += bitcast<vec4<f32>>(weights4[w + k]) * xv[k];
    }
    return acc.x + acc.y + acc.z + acc.w;
}
