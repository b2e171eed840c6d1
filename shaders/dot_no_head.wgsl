// The interface of matvec.wgsl and matmul_rows.wgsl (RUN, Head, head256, dot_run, dequant32h) for weight types
// whose weights share no fields across runs of 32: dot32 and dequant8 alone. Types with shared fields
// (dequant_q8_0, _q5_0, _q4_k, _q6_k) define these themselves.

// Weights a dot_run covers (RUN_X4 vec4 of x).
const RUN: u32 = 32u;
const RUN_X4: u32 = 8u;

struct Head {
    unused: u32,
}

// The fields weights 256g..256g+255 share: none.
fn head256(row_byte: u32, g: u32) -> Head {
    return Head(0u);
}

fn dot_run(row_byte: u32, s: u32, h: Head, xv: array<vec4<f32>, RUN_X4>) -> f32 {
    return dot32(row_byte, s, xv);
}

fn dequant32h(row_byte: u32, s: u32, h: Head) -> array<vec4<f32>, 8> {
    var out: array<vec4<f32>, 8>;
    for (var i = 0u; i < 4u; i++) {
        let w = dequant8(row_byte, 4u * s + i);
        out[2u * i] = vec4<f32>(w[0], w[1], w[2], w[3]);
        out[2u * i + 1u] = vec4<f32>(w[4], w[5], w[6], w[7]);
    }
    return out;
}
