// Decode matrix-vector product y = W x for one piece of a weight matrix (rows split across buffers).
// Assembled as prelude + weights.wgsl + dequant_<type>.wgsl (+ dot_no_head.wgsl for types without a Head) +
// matvec_x_<storage|uniform>.wgsl (binding 1, x, read through x4) + row_sum_<barrier|subgroup>.wgsl (the sum over
// a row's lanes) + this file: one pipeline per weight type, x binding and reduction. Weights are dequantized in
// registers a run at a time (dot_run of the type: 32 weights, 64 for Q4_K and Q6_K, so each loaded byte serves
// every weight it holds); accumulation is f32.

struct Params {
    rows: u32,        // rows in this piece
    cols: u32,        // multiple of BLOCK_LEN
    row_stride: u32,  // bytes between rows in `weights` (a multiple of 4)
    y_offset: u32,    // index in y of this piece's first row
}

@group(0) @binding(0) var<storage, read> weights: array<u32>;      // (rows, row_stride / 4) blocks of the type
// binding 1: x, (cols / 4) vec4<f32>, declared by matvec_x_*.wgsl
@group(0) @binding(2) var<storage, read_write> y: array<f32>;      // (>= y_offset + rows)
@group(0) @binding(3) var<uniform> params: Params;
// binding 4: weights4, the same buffer as vec4<u32>, declared by weights.wgsl

// Threads per workgroup, and threads sharing one row (a power of two dividing WG). 1 thread a row is best on
// CPU adapters (lavapipe); GPUs want a whole warp or more a row so neighbouring threads read neighbouring bytes.
override WG: u32 = 64u;
override ROW_THREADS: u32 = 1u;
// Rows per thread (1..4, more than 1 only with ROW_THREADS = 1): each block of x loaded serves that many rows. On
// CPU adapters loads cost per lane, and x is 4 bytes a weight against the weights' 0.5 to 1. Each row has its own
// named accumulator and head (an array indexed by the row costs a scratch-memory round trip on CPU adapters);
// the GLU matvec takes one row (gate and up already make two).
override ROW_REPEAT: u32 = 1u;
// The fused MLP input: the weight holds the gate rows, then as many up rows; output row r is
// gelu_tanh(gate_r . x) * (up_r . x), params.rows = the gate rows. One dispatch instead of three.
override GLU: bool = false;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32,
        @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    // Large matrices need more than 65535 workgroups in x: the dispatch is 2D.
    let group = wid.x + wid.y * nwg.x;
    // This thread's row j is first + j * step: neighbouring threads on neighbouring rows.
    let step = WG / ROW_THREADS;
    let first = group * step * ROW_REPEAT + lid / ROW_THREADS;
    let lane = lid % ROW_THREADS;
    // Runs of RUN weights (the type's dot_run), 256 / RUN of them sharing a head.
    let runs = params.cols / RUN;
    let per_head = 256u / RUN;

    // Rows the binding holds, through both views of the weights: so that both are always bound (the pipeline's
    // layout is derived from what it uses, and most types' dot_run read only one).
    let stride_words = params.row_stride / 4u;
    let held = min(arrayLength(&weights) / stride_words, arrayLength(&weights4) / (stride_words / 4u));
    let rows = min(params.rows, select(held, held / 2u, GLU));

    // A thread walks its rows' runs 256 weights at a time (one thread a row), loading what they share (the type's
    // Head: scales, a K-quant block's header) once; with several threads a row, neighbouring lanes take
    // neighbouring runs, each with its head. Each x run loaded serves every row.
    let span = select(1u, per_head, ROW_THREADS == 1u);
    var a0 = 0.0;
    var a1 = 0.0;
    var up0 = 0.0;
    var up1 = 0.0;
    let row1 = first + step;
    let two = ROW_REPEAT > 1u && row1 < rows;
    let row2 = first + 2u * step;
    let row3 = first + 3u * step;
    let three = ROW_REPEAT > 2u && row2 < rows;
    let four = ROW_REPEAT > 3u && row3 < rows;
    var a2 = 0.0;
    var a3 = 0.0;
    if (first < rows) {
        for (var s0 = lane * span; s0 < runs; s0 += ROW_THREADS * span) {
            let at0 = first * params.row_stride;
            let at1 = row1 * params.row_stride;
            let at0_up = (first + params.rows) * params.row_stride;
            let at1_up = (row1 + params.rows) * params.row_stride;
            let h0 = head256(at0, s0 / per_head);
            var h1: Head;
            var h2: Head;
            var h3: Head;
            let at2 = row2 * params.row_stride;
            let at3 = row3 * params.row_stride;
            if (three) {
                h2 = head256(at2, s0 / per_head);
            }
            if (four) {
                h3 = head256(at3, s0 / per_head);
            }
            var hu0: Head;
            var hu1: Head;
            if (two) {
                h1 = head256(at1, s0 / per_head);
            }
            if (GLU) {
                hu0 = head256(at0_up, s0 / per_head);
                if (two) {
                    hu1 = head256(at1_up, s0 / per_head);
                }
            }
            for (var s = s0; s < min(s0 + span, runs); s++) {
                var xv: array<vec4<f32>, RUN_X4>;
                for (var k = 0u; k < RUN_X4; k++) {
                    xv[k] = x4(RUN_X4 * s + k);
                }
                a0 += dot_run(at0, s, h0, xv);
                if (GLU) {
                    up0 += dot_run(at0_up, s, hu0, xv);
                }
                if (two) {
                    a1 += dot_run(at1, s, h1, xv);
                    if (GLU) {
                        up1 += dot_run(at1_up, s, hu1, xv);
                    }
                }
                if (three) {
                    a2 += dot_run(at2, s, h2, xv);
                }
                if (four) {
                    a3 += dot_run(at3, s, h3, xv);
                }
            }
        }
    }
    let acc = array<f32, 4>(a0, a1, a2, a3);
    let acc_up = array<f32, 4>(up0, up1, 0.0, 0.0);
    for (var j = 0u; j < ROW_REPEAT; j++) {
        var a = acc[j];
        var u = acc_up[j];
        if (ROW_THREADS > 1u) {
            a = row_sum(lid, lane, a);
            if (GLU) {
                u = row_sum(lid, lane, u);
            }
        }
        let row = first + j * step;
        if (row < rows && lane == 0u) {
            if (GLU) {
                y[params.y_offset + row] = gelu_tanh(a) * u;
            } else {
                y[params.y_offset + row] = a;
            }
        }
    }
}
