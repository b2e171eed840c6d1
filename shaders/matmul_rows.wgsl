// Prefill product Y = X W^T on CPU adapters: one thread a weight row, TOKENS tokens a dispatch. Assembled as
// prelude + weights.wgsl + dequant_<type>.wgsl (+ dot_no_head.wgsl) + this file.
//
// matmul.wgsl's tiles suit GPUs, but on a CPU adapter (lavapipe, SwiftShader) every storage or workgroup-memory
// load is a loop over the SIMD lanes, one scalar load each, and its inner loop does six of them for eight
// multiply-adds. Here each lane dequantizes its row's 32 weights once (vec4 loads, the group's head once per 256
// weights, as the matvec does) and multiplies them with the same 32 activations of each of the TOKENS tokens,
// read from a uniform binding at indices every lane shares: one scalar load and a broadcast per value.

struct Params {
    n: u32,           // tokens of this dispatch, 1..=TOKENS (token t is row tok0 + t of X and Y)
    rows: u32,        // rows in this piece
    cols: u32,        // multiple of 32; TOKENS * cols <= 16384
    row_stride: u32,  // bytes between rows in `weights` (a multiple of 16)
    y_offset: u32,    // column of Y for this piece's first row
    y_stride: u32,    // floats between tokens in Y
    tok0: u32,        // the dispatch's first token
    _pad: u32,
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;          // (rows, row_stride / 4) blocks of the type
// X from token tok0 on: a 64 KiB window of the activations (TOKENS * cols floats used, the rest unread garbage).
@group(0) @binding(1) var<uniform> x: array<vec4<f32>, 4096>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;          // (tokens, y_stride)
@group(0) @binding(3) var<uniform> params: Params;
// binding 4: weights4, the same buffer as vec4<u32>, declared by weights.wgsl

override WG: u32 = 64u;
// Tokens a dispatch, 1..=8: the accumulators live in registers.
override TOKENS: u32 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_group(wid, nwg) * WG + lid;
    // Rows the binding holds, through both views of the weights (so both are bound, as in matvec.wgsl).
    let stride_words = params.row_stride / 4u;
    let held = min(arrayLength(&weights) / stride_words, arrayLength(&weights4) / (stride_words / 4u));
    if (row >= min(params.rows, held)) {
        return;
    }
    let at = row * params.row_stride;
    let subs = params.cols / 32u;
    let x_per_token = params.cols / 4u;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var s0 = 0u; s0 < subs; s0 += 8u) {
        let h = head256(at, s0 / 8u);
        for (var s = s0; s < min(s0 + 8u, subs); s++) {
            let w = dequant32h(at, s, h);
            for (var t = 0u; t < TOKENS; t++) {
                let base = t * x_per_token + 8u * s;
                var d = w[0] * x[base];
                for (var k = 1u; k < 8u; k++) {
                    d += w[k] * x[base + k];
                }
                acc[t] += d.x + d.y + d.z + d.w;
            }
        }
    }
    for (var t = 0u; t < TOKENS; t++) {
        if (t < params.n) {
            y[(params.tok0 + t) * params.y_stride + params.y_offset + row] = acc[t];
        }
    }
}
