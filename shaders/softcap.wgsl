// Logit soft-cap, in place: z = c * tanh(z / c) (Gemma 2's final logits, c = 30).

struct Params {
    n: u32,
    cap: f32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read_write> z: array<f32>; // (n)
@group(0) @binding(1) var<uniform> p: Params;

override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = linear_group(wid, nwg) * WG + lid;
    if (i >= p.n) {
        return;
    }
    z[i] = p.cap * tanh_stable(z[i] / p.cap);
}
