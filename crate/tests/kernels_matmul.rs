//! Prefill product Y = X W^T for every weight type against candle-core's dequantization, f64 dot products.
#![cfg(not(target_arch = "wasm32"))]

mod quant_common;
#[path = "quant_common/mini_gpu.rs"]
mod mini_gpu;

use mini_gpu::*;
use quant_common::*;

/// Writes into a Y wider than the matrix (at column `y_offset` of `y_stride`), the way a split weight's
/// pieces fill one output, and checks the untouched columns stay zero.
fn check(g: &Gpu, m: &QMatrix, n: usize, seed: u64) {
    let x = random_vec(n * m.cols, seed ^ 0xab);
    let expected = matmul_ref(&m.dequant, m.rows, m.cols, &x, n);
    let (y_offset, y_stride) = (3usize, m.rows + 5);
    let p = g.pipeline(&shader_source(m.ty.name, "matmul"), &[]);
    let wb = g.storage(&m.padded);
    let xb = g.storage(bytemuck::cast_slice(&x));
    let yb = g.zeros(n * y_stride);
    let ub = g.uniform(&[n as u32, m.rows as u32, m.cols as u32, m.row_stride as u32, y_offset as u32, y_stride as u32, 0, 0]);
    let bg = g.bind(&p, &[&wb, &xb, &yb, &ub]);
    g.run(&p, &[(&bg, ((m.rows as u32).div_ceil(64), (n as u32).div_ceil(32), 1))]);
    let y = g.read(&yb, n * y_stride);
    let mut got = Vec::with_capacity(n * m.rows);
    let mut outside = Vec::new();
    for t in 0..n {
        let row = &y[t * y_stride..(t + 1) * y_stride];
        got.extend_from_slice(&row[y_offset..y_offset + m.rows]);
        outside.extend_from_slice(&row[..y_offset]);
        outside.extend_from_slice(&row[y_offset + m.rows..]);
    }
    let tol = (0..n)
        .map(|t| dot_tolerance(&m.dequant, m.rows, m.cols, &x[t * m.cols..(t + 1) * m.cols]))
        .fold(0f32, f32::max);
    let name = format!("matmul {} {}x{} n {n} seed {seed}", m.ty.name, m.rows, m.cols);
    assert_close(&name, &expected, &got, tol, 1e-5);
    assert_close(&format!("{name} (outside the piece)"), &vec![0.0; outside.len()], &outside, 0.0, 0.0);
}

#[test]
fn matmul_all_types() {
    let g = gpu();
    for ty in TYPES {
        let blocks = if ty.block_len == 256 { 3 } else { 7 };
        let cols = blocks * ty.block_len;
        for seed in 0..2u64 {
            let rows = [67, 130][seed as usize];
            let m = if seed == 1 { QMatrix::quantized(*ty, rows, cols, seed) } else { QMatrix::random_blocks(*ty, rows, cols, seed) };
            for n in [1, 5, 37] {
                check(&g, &m, n, seed);
            }
        }
    }
}
