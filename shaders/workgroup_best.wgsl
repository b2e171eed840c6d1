// The best (value, index) over a workgroup, in the samplers' order: value descending, then
// index ascending, so ties go to the lowest index; index NONE is no candidate. Used by topk,
// topk_merge, sample_gumbel and sample_pick, whose `override WG` (a power of two) sizes it.

var<workgroup> red_v: array<f32, WG>;
var<workgroup> red_i: array<u32, WG>;

// (v, i) ranks before (bv, bi)?
fn better(v: f32, i: u32, bv: f32, bi: u32) -> bool {
    return i != NONE && (bi == NONE || v > bv || (v == bv && i < bi));
}

struct Best {
    v: f32,
    i: u32,
}

// Every thread offers (v, i) and gets the workgroup's best back. Call from uniform control flow.
fn workgroup_best(lid: u32, v: f32, i: u32) -> Best {
    red_v[lid] = v;
    red_i[lid] = i;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s && better(red_v[lid + s], red_i[lid + s], red_v[lid], red_i[lid])) {
            red_v[lid] = red_v[lid + s];
            red_i[lid] = red_i[lid + s];
        }
        workgroupBarrier();
    }
    let b = Best(red_v[0], red_i[0]);
    workgroupBarrier();
    return b;
}
