// The end of a draw: the best of a draw's per-chunk Gumbel scores (sample_gumbel.wgsl) is the
// token drawn. Writes its Draw: the id, its logit, and its probability among the kept tokens (its mass over the kept set's, from the
// select state; 1 at temperature 0). One workgroup per draw.

struct Draw {
    id: u32,
    logit: f32,
    prob: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;           // (n)
@group(0) @binding(1) var<storage, read> largest: array<f32>;           // [0]: the largest logit
@group(0) @binding(2) var<storage, read> state: Select;
@group(0) @binding(3) var<storage, read> partial: array<vec2<u32>>;    // (draws, groups)
@group(0) @binding(4) var<storage, read_write> out: array<Draw>;       // (draws)
@group(0) @binding(5) var<uniform> p: DrawParams;

override WG: u32 = 64u; // a power of two

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let draw = linear_group(wid, nwg);
    if (draw >= p.draws) {
        return;
    }
    var bv = 0.0;
    var bi = NONE;
    for (var g = lid; g < p.groups; g += WG) {
        let c = partial[draw * p.groups + g];
        if (better(bitcast<f32>(c.x), c.y, bv, bi)) {
            bv = bitcast<f32>(c.x);
            bi = c.y;
        }
    }
    let b = workgroup_best(lid, bv, bi);
    if (lid == 0u) {
        let id = b.i;
        if (id == NONE) {
            out[draw] = Draw(NONE, 0.0, 0.0, 0u);
            return;
        }
        let l = logits[id];
        let kept = mass_f32(vec2<u32>(state.kept_lo, state.kept_hi));
        var prob = 1.0;
        if (p.temperature > 0.0 && kept > 0.0) {
            prob = exp((l - largest[0]) / p.temperature) / kept;
        }
        out[draw] = Draw(id, l, prob, 0u);
    }
}
