// The matvec's activation vector as a uniform binding of 64 KiB (cols <= 16384): matvec.wgsl's `x4`.
// On CPU adapters (lavapipe) a storage load is a loop over the SIMD lanes, one scalar load each, while a
// uniform load is one gather; with one row per lane, the 4 bytes of x per weight otherwise cost more
// than the weights themselves.
const X_VEC4S: u32 = 4096u;
@group(0) @binding(1) var<uniform> x: array<vec4<f32>, X_VEC4S>; // (cols / 4), the rest unread

fn x4(i: u32) -> vec4<f32> {
    return x[i];
}
