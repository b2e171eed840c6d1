// Embedding lookup: out[t] = dequant(weights row ids[t]) * scale, for the rows of one piece of a
// split weight (tokens whose row lies in another piece are left alone; one dispatch per piece).
// Needs `weights.wgsl` and one `dequant_<type>.wgsl` prepended. One workgroup per token.

struct Params {
    n_tokens: u32,
    cols: u32,        // d_model, a multiple of 8
    row_stride: u32,  // bytes per padded row in `weights`
    first_row: u32,   // rows first_row .. first_row + rows live in this piece
    rows: u32,
    scale: f32,       // sqrt(d_model) for Gemma
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;      // (rows, row_stride / 4) blocks of one piece
@group(0) @binding(1) var<storage, read> ids: array<u32>;          // (n_tokens) token ids
@group(0) @binding(2) var<storage, read_write> out: array<f32>;    // (n_tokens, cols)
@group(0) @binding(3) var<uniform> p: Params;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let t = linear_group(wid, nwg);
    if (t >= p.n_tokens) {
        return;
    }
    let id = ids[t];
    if (id < p.first_row || id - p.first_row >= p.rows) {
        return;
    }
    let row_byte = (id - p.first_row) * p.row_stride;
    let base = t * p.cols;
    for (var g = lid; g < p.cols / 8u; g += WG) {
        let v = dequant8(row_byte, g);
        for (var k = 0u; k < 8u; k++) {
            out[base + g * 8u + k] = v[k] * p.scale;
        }
    }
}
