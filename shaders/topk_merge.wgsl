// Top-k, stage 2: one workgroup picks the K best of the m candidates of topk.wgsl (same order:
// value descending, index ascending; NONE entries skipped). K = 1 gives the argmax in out_idx[0],
// so greedy decoding reads back 4 bytes.

struct Params {
    m: u32,       // candidates = groups * K
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<storage, read> cand_idx: array<u32>;  // (m)
@group(0) @binding(1) var<storage, read> cand_val: array<f32>;  // (m)
@group(0) @binding(2) var<storage, read_write> out_idx: array<u32>; // (K) best first; NONE past n
@group(0) @binding(3) var<storage, read_write> out_val: array<f32>; // (K)
@group(0) @binding(4) var<uniform> p: Params;

override WG: u32 = 256u; // a power of two
override K: u32 = 1u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
    var prev_v = 0.0;
    var prev_i = NONE;
    for (var j = 0u; j < K; j++) {
        var bv = 0.0;
        var bi = NONE;
        if (j == 0u || prev_i != NONE) {
            for (var c = lid; c < p.m; c += WG) {
                let i = cand_idx[c];
                let v = cand_val[c];
                let after = j == 0u || v < prev_v || (v == prev_v && i > prev_i);
                if (after && better(v, i, bv, bi)) {
                    bv = v;
                    bi = i;
                }
            }
        }
        let b = workgroup_best(lid, bv, bi);
        prev_v = b.v;
        prev_i = b.i;
        if (lid == 0u) {
            out_idx[j] = prev_i;
            out_val[j] = prev_v;
        }
    }
}
