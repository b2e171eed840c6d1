// Prefill product Y = X W^T on CPU adapters: one thread a weight row (or two), TOKENS tokens a dispatch. Assembled as
// prelude + weights.wgsl + dequant_<type>.wgsl (+ dot_no_head.wgsl) + this file.
//
// matmul.wgsl's tiles suit GPUs, but on a CPU adapter (lavapipe, SwiftShader) every storage or workgroup-memory
// load is a loop over the SIMD lanes, one scalar load each, and its inner loop does six of them for eight
// multiply-adds. Here each lane dequantizes its row's 32 weights once (vec4 loads, the group's head once per 256
// weights, as the matvec does) and multiplies them with the same 32 activations of each of the TOKENS tokens,
// read from uniform bindings at indices every lane shares: one scalar load and a broadcast per value. Each token's
// row of X has its own 64 KiB window (x0 .. x7), so any row up to 16384 columns takes all TOKENS tokens. With
// ROWS = 2 a lane dequantizes two rows and each activation it loads serves both (the matvec's ROW_REPEAT idea).

struct Params {
    n: u32,           // tokens of this dispatch, 1..=TOKENS (token t is row tok0 + t of X and Y)
    rows: u32,        // rows in this piece
    cols: u32,        // multiple of 32
    row_stride: u32,  // bytes between rows in `weights` (a multiple of 16)
    y_offset: u32,    // column of Y for this piece's first row
    y_stride: u32,    // floats between tokens in Y
    tok0: u32,        // the dispatch's first token
    _pad: u32,
    first: array<vec4<u32>, 2>,  // token t's row starts at vec4 first[t / 4][t % 4] of its window
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;          // (rows, row_stride / 4) blocks of the type
@group(0) @binding(2) var<storage, read_write> y: array<f32>;          // (tokens, y_stride)
@group(0) @binding(3) var<uniform> params: Params;
// binding 4: weights4, the same buffer as vec4<u32>, declared by weights.wgsl
// Token t's window of X (the rest of each window unread).
@group(0) @binding(1) var<uniform> x0: array<vec4<f32>, 4096>;
@group(0) @binding(5) var<uniform> x1: array<vec4<f32>, 4096>;
@group(0) @binding(6) var<uniform> x2: array<vec4<f32>, 4096>;
@group(0) @binding(7) var<uniform> x3: array<vec4<f32>, 4096>;
@group(0) @binding(8) var<uniform> x4: array<vec4<f32>, 4096>;
@group(0) @binding(9) var<uniform> x5: array<vec4<f32>, 4096>;
@group(0) @binding(10) var<uniform> x6: array<vec4<f32>, 4096>;
@group(0) @binding(11) var<uniform> x7: array<vec4<f32>, 4096>;

override WG: u32 = 64u;
// Tokens a dispatch, 1..=8: the accumulators live in registers.
override TOKENS: u32 = 8u;
// Rows a lane, 1 or 2: with 2, each activation loaded serves two rows.
override ROWS: u32 = 1u;

// Vec4s b..b+7 of token t's window, one function a binding (WGSL cannot index bindings; a switch over them
// costs every branch on a CPU adapter).
fn xs0(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x0[b], x0[b + 1u], x0[b + 2u], x0[b + 3u], x0[b + 4u], x0[b + 5u], x0[b + 6u], x0[b + 7u]);
}
fn xs1(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x1[b], x1[b + 1u], x1[b + 2u], x1[b + 3u], x1[b + 4u], x1[b + 5u], x1[b + 6u], x1[b + 7u]);
}
fn xs2(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x2[b], x2[b + 1u], x2[b + 2u], x2[b + 3u], x2[b + 4u], x2[b + 5u], x2[b + 6u], x2[b + 7u]);
}
fn xs3(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x3[b], x3[b + 1u], x3[b + 2u], x3[b + 3u], x3[b + 4u], x3[b + 5u], x3[b + 6u], x3[b + 7u]);
}
fn xs4(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x4[b], x4[b + 1u], x4[b + 2u], x4[b + 3u], x4[b + 4u], x4[b + 5u], x4[b + 6u], x4[b + 7u]);
}
fn xs5(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x5[b], x5[b + 1u], x5[b + 2u], x5[b + 3u], x5[b + 4u], x5[b + 5u], x5[b + 6u], x5[b + 7u]);
}
fn xs6(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x6[b], x6[b + 1u], x6[b + 2u], x6[b + 3u], x6[b + 4u], x6[b + 5u], x6[b + 6u], x6[b + 7u]);
}
fn xs7(b: u32) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(x7[b], x7[b + 1u], x7[b + 2u], x7[b + 3u], x7[b + 4u], x7[b + 5u], x7[b + 6u], x7[b + 7u]);
}

fn dot32f(w: array<vec4<f32>, 8>, x: array<vec4<f32>, 8>) -> f32 {
    var d = w[0] * x[0];
    for (var k = 1u; k < 8u; k++) {
        d += w[k] * x[k];
    }
    return d.x + d.y + d.z + d.w;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // A workgroup's WG * ROWS rows: lane l takes rows l and l + WG (neighbouring lanes on neighbouring rows).
    let row = linear_group(wid, nwg) * WG * ROWS + lid;
    let row_b = row + WG;
    // Rows the binding holds, through both views of the weights (so both are bound, as in matvec.wgsl).
    let stride_words = params.row_stride / 4u;
    let held = min(arrayLength(&weights) / stride_words, arrayLength(&weights4) / (stride_words / 4u));
    let rows = min(params.rows, held);
    if (row >= rows) {
        return;
    }
    let two = ROWS > 1u && row_b < rows;
    let at = row * params.row_stride;
    let at_b = row_b * params.row_stride;
    let subs = params.cols / 32u;
    var acc = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    var acc_b = array<f32, 8>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var s0 = 0u; s0 < subs; s0 += 8u) {
        let h = head256(at, s0 / 8u);
        var h_b: Head;
        if (two) {
            h_b = head256(at_b, s0 / 8u);
        }
        for (var s = s0; s < min(s0 + 8u, subs); s++) {
            let w = dequant32h(at, s, h);
            var w_b: array<vec4<f32>, 8>;
            if (two) {
                w_b = dequant32h(at_b, s, h_b);
            }
            let f = params.first;
            // Each token's 32 activations, loaded once for both rows.
            var x = xs0(f[0].x + 8u * s);
            acc[0] += dot32f(w, x);
            if (two) { acc_b[0] += dot32f(w_b, x); }
            if (TOKENS > 1u) {
                x = xs1(f[0].y + 8u * s);
                acc[1] += dot32f(w, x);
                if (two) { acc_b[1] += dot32f(w_b, x); }
            }
            if (TOKENS > 2u) {
                x = xs2(f[0].z + 8u * s);
                acc[2] += dot32f(w, x);
                if (two) { acc_b[2] += dot32f(w_b, x); }
            }
            if (TOKENS > 3u) {
                x = xs3(f[0].w + 8u * s);
                acc[3] += dot32f(w, x);
                if (two) { acc_b[3] += dot32f(w_b, x); }
            }
            if (TOKENS > 4u) {
                x = xs4(f[1].x + 8u * s);
                acc[4] += dot32f(w, x);
                if (two) { acc_b[4] += dot32f(w_b, x); }
            }
            if (TOKENS > 5u) {
                x = xs5(f[1].y + 8u * s);
                acc[5] += dot32f(w, x);
                if (two) { acc_b[5] += dot32f(w_b, x); }
            }
            if (TOKENS > 6u) {
                x = xs6(f[1].z + 8u * s);
                acc[6] += dot32f(w, x);
                if (two) { acc_b[6] += dot32f(w_b, x); }
            }
            if (TOKENS > 7u) {
                x = xs7(f[1].w + 8u * s);
                acc[7] += dot32f(w, x);
                if (two) { acc_b[7] += dot32f(w_b, x); }
            }
        }
    }
    for (var t = 0u; t < TOKENS; t++) {
        if (t < params.n) {
            let y0 = (params.tok0 + t) * params.y_stride + params.y_offset;
            y[y0 + row] = acc[t];
            if (two) {
                y[y0 + row_b] = acc_b[t];
            }
        }
    }
}
