// The matvec's activation vector as a storage binding (any length): matvec.wgsl's `x4`.
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>; // (cols / 4)

fn x4(i: u32) -> vec4<f32> {
    return x[i];
}
