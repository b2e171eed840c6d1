// Helpers shared by every kernel. Prepended to each shader; references no binding.

// No token / no candidate.
const NONE: u32 = 0xffffffffu;

// Workgroup index when the dispatch was folded into 2D to stay under 65535 per dimension
// (see gpu::fold_workgroups): x varies fastest.
fn linear_group(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// IEEE half in the low / high 16 bits of a word, without the shader-f16 feature.
fn f16_lo(w: u32) -> f32 {
    return unpack2x16float(w).x;
}
fn f16_hi(w: u32) -> f32 {
    return unpack2x16float(w).y;
}

// bfloat16 in the low 16 bits.
fn bf16_lo(w: u32) -> f32 {
    return bitcast<f32>(w << 16u);
}

// Sign-extends the low 8 bits.
fn sext8(v: u32) -> i32 {
    return (bitcast<i32>(v << 24u)) >> 24u;
}

// GELU with the tanh approximation (Gemma's MLP activation).
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh_stable(u));
}

// tanh through exp of a non-positive argument, so large |x| cannot overflow to inf/inf.
fn tanh_stable(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    let t = (1.0 - e) / (1.0 + e);
    return select(-t, t, x >= 0.0);
}
