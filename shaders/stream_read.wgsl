// Streaming-read bandwidth probe for bench-kernels: reads every word of `src` once and folds them into one value that is stored
// only if it equals an impossible key (so the reads cannot be optimised away, and almost nothing
// is written).

struct Params {
    n: u32,     // vec4s in src
    key: u32,   // a value the fold will not produce for the bench's data
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> src: array<vec4<u32>>;  // (n)
@group(0) @binding(1) var<storage, read_write> sink: array<u32>; // (1)
@group(0) @binding(2) var<uniform> params: Params;

override WG: u32 = 256u;
// vec4s per thread. Each workgroup streams one contiguous run of WG * PER_THREAD vec4s, either
// with neighbouring threads on neighbouring 16 bytes (coalesced: what a GPU wants) or, with
// THREAD_RUNS = 1, each thread reading its own contiguous run (what a CPU core's prefetcher wants).
override PER_THREAD: u32 = 64u;
override THREAD_RUNS: u32 = 0u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let start = linear_group(wid, nwg) * WG * PER_THREAD;
    var acc = vec4<u32>(0u);
    for (var k = 0u; k < PER_THREAD; k++) {
        let i = start + select(k * WG + lid, lid * PER_THREAD + k, THREAD_RUNS == 1u);
        if (i < params.n) {
            acc ^= src[i];
        }
    }
    let v = acc.x ^ acc.y ^ acc.z ^ acc.w;
    if (v == params.key) {
        sink[0] = v;
    }
}
