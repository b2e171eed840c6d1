// matvec.wgsl's row_sum with subgroups: a butterfly of shuffles, no workgroup memory and no barrier. Only where
// every subgroup holds at least ROW_THREADS invocations (gpu/matvec.rs checks the adapter's smallest subgroup), so
// that a row's lanes, ROW_THREADS consecutive invocations starting at a multiple of it, share one subgroup. Called
// by every invocation of the workgroup (uniform control flow), as shuffles need.

// The sum of `v` over the ROW_THREADS lanes of a row (lane = lid % ROW_THREADS), in every lane of the row.
fn row_sum(lid: u32, lane: u32, v: f32) -> f32 {
    var total = v;
    for (var m = 1u; m < ROW_THREADS; m <<= 1u) {
        total += subgroupShuffleXor(total, m);
    }
    return total;
}
