// Reads one byte's histogram (select_hist.wgsl) from the top bin down and moves the select on
// (select_common.wgsl). A count select stops at the bin where the first k tokens end, a mass
// select where the running mass reaches top_p times the kept set's mass (taken from the first
// byte's histogram, which covers the whole kept set). If that bin holds one token, or the
// count ends exactly at its edge, or no byte is left, the whole bin is kept and the select is
// done; else the next pass looks inside it. A target never reached keeps every token counted.
// Clears the histogram for the next pass. One thread.

@group(0) @binding(0) var<storage, read_write> state: Select;
@group(0) @binding(1) var<storage, read_write> hist: array<u32>; // (3, BINS)
@group(0) @binding(2) var<uniform> p: SelectParams;

@compute @workgroup_size(1)
fn main() {
    var s = state;
    if (s.done != 0u) {
        return;
    }
    let pass_ = s.pass_;
    let passes = 4u + p.digits;
    let by_mass = p.mode == 1u;
    if (by_mass && pass_ == 0u) {
        var total = vec2<u32>(0u, 0u);
        for (var b = 0u; b < BINS; b++) {
            total = add64(total, vec2<u32>(hist[BINS + b], hist[2u * BINS + b]));
        }
        s.goal = p.top_p * mass_f32(total);
    }
    let prefix = vec2<u32>(s.prefix_hi, s.prefix_lo) & prefix_mask(pass_);
    var above = s.above;
    var above_m = vec2<u32>(s.above_lo, s.above_hi);
    // Where the kept set ends: everything at or above `edge`, counting `kept` tokens.
    var edge = prefix;
    var kept = 0u;
    var kept_m = vec2<u32>(0u, 0u);
    var finished = true;
    var crossed = false;
    for (var j = 0u; j < BINS; j++) {
        let b = BINS - 1u - j;
        let c = hist[b];
        if (c == 0u) {
            continue;
        }
        let n2 = above + c;
        let m2 = add64(above_m, vec2<u32>(hist[BINS + b], hist[2u * BINS + b]));
        var cross = n2 >= p.k;
        if (by_mass) {
            cross = mass_f32(m2) >= s.goal;
        }
        if (cross) {
            crossed = true;
            edge = with_byte(prefix, pass_, b);
            if ((!by_mass && n2 == p.k) || c == 1u || pass_ + 1u >= passes) {
                kept = n2;
                kept_m = m2;
            } else {
                // Look inside bin b next pass; `above` stays what ranks above it.
                finished = false;
            }
            break;
        }
        above = n2;
        above_m = m2;
    }
    if (!crossed) {
        kept = above;
        kept_m = above_m;
    }
    if (finished) {
        // The kept set only shrinks: a later select searches inside the earlier one's.
        if (edge.x > s.floor_hi || (edge.x == s.floor_hi && edge.y > s.floor_lo)) {
            s.floor_hi = edge.x;
            s.floor_lo = edge.y;
        }
        s.kept = kept;
        s.kept_lo = kept_m.x;
        s.kept_hi = kept_m.y;
        s.done = 1u;
    } else {
        s.prefix_hi = edge.x;
        s.prefix_lo = edge.y;
        s.above = above;
        s.above_lo = above_m.x;
        s.above_hi = above_m.y;
    }
    s.pass_ = pass_ + 1u;
    state = s;
    for (var i = 0u; i < 3u * BINS; i++) {
        hist[i] = 0u;
    }
}
