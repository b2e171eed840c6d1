// The KV cache's element type, f16 (needs `enable f16;`): half the bytes of kv_f32.wgsl, so half
// the cache memory and half the bandwidth attention spends on keys and values. Same interface.
// Stores clamp to the largest finite half: a key or value past it becomes ±65504, not inf,
// which would turn the scores and the output into NaN.

alias kv_t = f16;
alias kv4_t = vec4<f16>;

const KV_MAX: f32 = 65504.0;

fn to_kv(x: f32) -> kv_t {
    return f16(clamp(x, -KV_MAX, KV_MAX));
}

fn to_kv4(x: vec4<f32>) -> kv4_t {
    return vec4<f16>(clamp(x, vec4<f32>(-KV_MAX), vec4<f32>(KV_MAX)));
}
