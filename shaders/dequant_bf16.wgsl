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
