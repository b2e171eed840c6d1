// F32 weights: a "block" is 32 plain floats, so rows are multiples of 32 like every other type.
const BLOCK_LEN: u32 = 32u;
const BLOCK_BYTES: u32 = 128u;

fn dequant8(row_byte: u32, g: u32) -> array<f32, 8> {
    // Rows start 4-byte aligned and f32s are 4 bytes: plain word loads.
    let w = (row_byte >> 2u) + g * 8u;
    var out: array<f32, 8>;
    for (var k = 0u; k < 8u; k++) {
        out[k] = bitcast<f32>(weights[w + k]);
    }
    return out;
}
