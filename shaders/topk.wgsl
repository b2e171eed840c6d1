// Top-k, stage 1: each workgroup picks the K best of its CHUNK values, best first, in the
// order (value descending, index ascending), so ties go to the lowest index. Pick j is the
// best value ordered after pick j-1, which needs no per-element "taken" marks. Chunks with
// fewer than K values pad with index NONE. K = 1 is argmax. NaN is never picked.
// topk_merge.wgsl reduces the (groups * K) candidates to the final K.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> values: array<f32>;         // (n)
@group(0) @binding(1) var<storage, read_write> cand_idx: array<u32>; // (groups, K)
@group(0) @binding(2) var<storage, read_write> cand_val: array<f32>; // (groups, K)
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 256u;     // a power of two
override CHUNK: u32 = 4096u; // values per workgroup; groups = ceil(n / CHUNK)
override K: u32 = 1u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let group = linear_group(wid, nwg);
    let start = group * CHUNK;
    if (start >= p.n) {
        return;
    }
    let end = min(start + CHUNK, p.n);
    var prev_v = 0.0;
    var prev_i = NONE;
    for (var j = 0u; j < K; j++) {
        var bv = 0.0;
        var bi = NONE;
        // Once the chunk ran out of values (prev_i == NONE), later picks stay NONE.
        if (j == 0u || prev_i != NONE) {
            for (var i = start + lid; i < end; i += WG) {
                let v = values[i];
                let after = j == 0u || v < prev_v || (v == prev_v && i > prev_i);
                // v == v excludes NaN.
                if (v == v && after && better(v, i, bv, bi)) {
                    bv = v;
                    bi = i;
                }
            }
        }
        let b = workgroup_best(lid, bv, bi);
        prev_v = b.v;
        prev_i = b.i;
        if (lid == 0u) {
            cand_idx[group * K + j] = prev_i;
            cand_val[group * K + j] = prev_v;
        }
    }
}
