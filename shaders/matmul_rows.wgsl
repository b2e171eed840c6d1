// Prefill product Y = X W^T on CPU adapters: one thread ROWS weight rows, TOKENS tokens a dispatch. Assembled as
// prelude + weights.wgsl + dequant_<type>.wgsl (+ dot_no_head.wgsl) + this file.
//
// matmul.wgsl's tiles suit GPUs, but on a CPU adapter (lavapipe, SwiftShader) every storage or workgroup-memory
// load is a loop over the SIMD lanes, one scalar load each, and its inner loop does six of them for eight
// multiply-adds. Here each lane dequantizes its row's 32 weights once (vec4 loads, the group's head once per 256
// weights, as the matvec does) and multiplies them with the same 32 activations of each of the TOKENS tokens,
// read from uniform bindings at indices every lane shares: one scalar load and a broadcast per value. Each token's
// row of X has its own 64 KiB window (x0 .. x7), so any row up to 16384 columns takes all TOKENS tokens. A lane
// takes ROWS rows (gpu/matvec.rs asks for 4) and each activation it loads serves all of them, as the matvec's
// ROW_REPEAT does.

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
// Rows a lane, 1..=4: each activation loaded serves that many rows.
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

// Dot products of the same 32 activations with the 32 weights of each of a lane's ROWS rows (wa: the first).
fn dots(wa: array<vec4<f32>, 8>, wb: array<vec4<f32>, 8>, wc: array<vec4<f32>, 8>, wd: array<vec4<f32>, 8>,
        x: array<vec4<f32>, 8>) -> vec4<f32> {
    var d = vec4<f32>(dot32f(wa, x), 0.0, 0.0, 0.0);
    if (ROWS > 1u) {
        d.y = dot32f(wb, x);
    }
    if (ROWS > 2u) {
        d.z = dot32f(wc, x);
    }
    if (ROWS > 3u) {
        d.w = dot32f(wd, x);
    }
    return d;
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // A workgroup's WG * ROWS rows: lane l takes rows l, l + WG, ... (neighbouring lanes on neighbouring rows).
    let row = linear_group(wid, nwg) * WG * ROWS + lid;
    // Rows the binding holds, through both views of the weights (so both are bound, as in matvec.wgsl).
    let stride_words = params.row_stride / 4u;
    let held = min(arrayLength(&weights) / stride_words, arrayLength(&weights4) / (stride_words / 4u));
    let rows = min(params.rows, held);
    if (row >= rows) {
        return;
    }
    // A lane's later rows may lie past the matrix: their loads are clamped to the binding (WebGPU's bounds
    // rule) and their sums never stored.
    let at_a = row * params.row_stride;
    let at_b = (row + WG) * params.row_stride;
    let at_c = (row + 2u * WG) * params.row_stride;
    let at_d = (row + 3u * WG) * params.row_stride;
    let subs = params.cols / 32u;
    // acc[t][r]: token t, the lane's row r.
    var acc: array<vec4<f32>, 8>;
    for (var s0 = 0u; s0 < subs; s0 += 8u) {
        let g = s0 / 8u;
        let ha = head256(at_a, g);
        var hb: Head;
        var hc: Head;
        var hd: Head;
        if (ROWS > 1u) {
            hb = head256(at_b, g);
        }
        if (ROWS > 2u) {
            hc = head256(at_c, g);
        }
        if (ROWS > 3u) {
            hd = head256(at_d, g);
        }
        for (var s = s0; s < min(s0 + 8u, subs); s++) {
            let wa = dequant32h(at_a, s, ha);
            var wb: array<vec4<f32>, 8>;
            var wc: array<vec4<f32>, 8>;
            var wd: array<vec4<f32>, 8>;
            if (ROWS > 1u) {
                wb = dequant32h(at_b, s, hb);
            }
            if (ROWS > 2u) {
                wc = dequant32h(at_c, s, hc);
            }
            if (ROWS > 3u) {
                wd = dequant32h(at_d, s, hd);
            }
            let f = params.first;
            acc[0] += dots(wa, wb, wc, wd, xs0(f[0].x + 8u * s));
            if (TOKENS > 1u) { acc[1] += dots(wa, wb, wc, wd, xs1(f[0].y + 8u * s)); }
            if (TOKENS > 2u) { acc[2] += dots(wa, wb, wc, wd, xs2(f[0].z + 8u * s)); }
            if (TOKENS > 3u) { acc[3] += dots(wa, wb, wc, wd, xs3(f[0].w + 8u * s)); }
            if (TOKENS > 4u) { acc[4] += dots(wa, wb, wc, wd, xs4(f[1].x + 8u * s)); }
            if (TOKENS > 5u) { acc[5] += dots(wa, wb, wc, wd, xs5(f[1].y + 8u * s)); }
            if (TOKENS > 6u) { acc[6] += dots(wa, wb, wc, wd, xs6(f[1].z + 8u * s)); }
            if (TOKENS > 7u) { acc[7] += dots(wa, wb, wc, wd, xs7(f[1].w + 8u * s)); }
        }
    }
    for (var t = 0u; t < TOKENS; t++) {
        if (t < params.n) {
            let y0 = (params.tok0 + t) * params.y_stride + params.y_offset + row;
            y[y0] = acc[t].x;
            if (ROWS > 1u && row + WG < rows) {
                y[y0 + WG] = acc[t].y;
            }
            if (ROWS > 2u && row + 2u * WG < rows) {
                y[y0 + 2u * WG] = acc[t].z;
            }
            if (ROWS > 3u && row + 3u * WG < rows) {
                y[y0 + 3u * WG] = acc[t].w;
            }
        }
    }
}
