// The KV cache's element type, f32 (kv_f16.wgsl: half precision, where the adapter has
// shader-f16). The attention kernels declare the caches as array<kv_t> or array<kv4_t>, widen
// what they read with f32(..) / vec4<f32>(..), and store through to_kv / to_kv4.

alias kv_t = f32;
alias kv4_t = vec4<f32>;

fn to_kv(x: f32) -> kv_t {
    return x;
}

fn to_kv4(x: vec4<f32>) -> kv4_t {
    return x;
}
