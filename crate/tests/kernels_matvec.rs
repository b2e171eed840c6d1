//! Decode matvec y = W x for every weight type against candle-core's dequantization, f64 dot products.
#![cfg(not(target_arch = "wasm32"))]

#[path = "quant_common/mini_gpu.rs"]
mod mini_gpu;
mod quant_common;

use mini_gpu::*;
use quant_common::*;

fn check(g: &Gpu, m: &QMatrix, seed: u64, row_threads: u32) {
    let x = random_vec(m.cols, seed ^ 0x5eed);
    let expected = matvec_ref(&m.dequant, m.rows, m.cols, &x);
    let p = g.pipeline(
        &shader_source(m.ty.name, "matvec"),
        &[("WG", 64.0), ("ROW_THREADS", row_threads as f64)],
    );
    let wb = g.storage(&m.padded);
    let xb = g.storage(bytemuck::cast_slice(&x));
    let yb = g.zeros(m.rows);
    let ub = g.uniform(&[m.rows as u32, m.cols as u32, m.row_stride as u32, 0]);
    let bg = g.bind(&p, &[&wb, &xb, &yb, &ub]);
    let rows_per_wg = 64 / row_threads;
    g.run(&p, &[(&bg, ((m.rows as u32).div_ceil(rows_per_wg), 1, 1))]);
    let y = g.read(&yb, m.rows);
    let tol = dot_tolerance(&m.dequant, m.rows, m.cols, &x);
    assert_close(
        &format!(
            "matvec {} {}x{} seed {seed} rt {row_threads}",
            m.ty.name, m.rows, m.cols
        ),
        &expected,
        &y,
        tol,
        1e-5,
    );
}

#[test]
fn matvec_all_types() {
    let g = gpu();
    for ty in TYPES {
        let blocks = if ty.block_len == 256 { 3 } else { 7 };
        let cols = blocks * ty.block_len;
        for seed in 0..3u64 {
            let rows = [67, 130, 29][seed as usize];
            let m = if seed == 1 {
                QMatrix::quantized(*ty, rows, cols, seed)
            } else {
                QMatrix::random_blocks(*ty, rows, cols, seed)
            };
            for rt in [1, 32] {
                check(&g, &m, seed, rt);
            }
        }
    }
}
