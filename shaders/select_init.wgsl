// Starts a select (select_common.wgsl): clears the histogram and the search state. The first
// select of a draw also resets the kept set to every token; a later one searches inside the
// set the earlier one kept. One thread.

@group(0) @binding(0) var<storage, read_write> state: Select;
@group(0) @binding(1) var<storage, read_write> hist: array<u32>; // (3, BINS): counts, mass lo, mass hi
@group(0) @binding(2) var<uniform> p: SelectParams;

@compute @workgroup_size(1)
fn main() {
    for (var i = 0u; i < 3u * BINS; i++) {
        hist[i] = 0u;
    }
    var s = state;
    if (p.first != 0u) {
        s.floor_hi = 0u;
        s.floor_lo = 0u;
        s.kept = 0u;
        s.kept_lo = 0u;
        s.kept_hi = 0u;
    }
    s.prefix_hi = 0u;
    s.prefix_lo = 0u;
    s.pass_ = 0u;
    s.done = 0u;
    s.above = 0u;
    s.above_lo = 0u;
    s.above_hi = 0u;
    s.goal = 0.0;
    state = s;
}
