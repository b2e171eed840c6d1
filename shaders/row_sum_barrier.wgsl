// matvec.wgsl's row_sum without subgroups: a tree through workgroup memory, log2(ROW_THREADS) + 2 barriers.
var<workgroup> partial: array<f32, 256>; // >= WG

// The sum of `v` over the ROW_THREADS lanes of a row (lane = lid % ROW_THREADS), in lane 0.
fn row_sum(lid: u32, lane: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = ROW_THREADS / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let total = partial[lid];
    workgroupBarrier();
    return total;
}
