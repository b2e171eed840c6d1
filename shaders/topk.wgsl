// Top-k, stage 1: each workgroup picks the K best of its CHUNK values, best first, in the
// order (value descending, index ascending), so ties go to the lowest index. Pick j is the
// best value ordered after pick j-1, which needs no per-element "taken" marks. Chunks with
// fewer than K values pad with index NONE. K = 1 is argmax. NaN is never picked.
// topk_merge.wgsl reduces the (groups * K) candidates to the final K.

const NONE: u32 = 0xffffffffu;

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

var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

// (v, i) ranks before (bv, bi)?
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

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
        red_v[lid] = bv;
        red_i[lid] = bi;
        workgroupBarrier();
        for (var s = WG / 2u; s > 0u; s >>= 1u) {
            if (lid < s && better(red_v[lid + s], red_i[lid + s], red_v[lid], red_i[lid])) {
                red_v[lid] = red_v[lid + s];
                red_i[lid] = red_i[lid + s];
            }
            workgroupBarrier();
        }
        prev_v = red_v[0];
        prev_i = red_i[0];
        if (lid == 0u) {
            cand_idx[group * K + j] = prev_i;
            cand_val[group * K + j] = prev_v;
        }
        workgroupBarrier();
    }
}
