//! Prefill product Y = X W^T for every weight type against candle-core's dequantization with f64
//! dot products, at WebGPU's default limits, in both layouts (GPU tiles, and one thread four rows
//! with X in uniform windows, as on CPU adapters): odd token counts (one tile or block of tokens,
//! several, partial), rows not multiples of the tile, the output a column range of a wider Y,
//! split weights.
#![cfg(not(target_arch = "wasm32"))]

mod quant_common;

use gemma_web::gpu::matvec::{Matmul, MatmulLayout};
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::testing::assert_close;
use quant_common::*;

fn device() -> Gpu {
    pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("a wgpu adapter (lavapipe)")
}

/// Binds once for `max_n` tokens and runs each n of `ns` through `set_n`, as prefill does, in
/// both layouts.
fn check(g: &Gpu, m: &QMatrix, ns: &[usize], seed: u64, max_piece_rows: Option<usize>) {
    for layout in [MatmulLayout::Tiles, MatmulLayout::Rows] {
        check_layout(g, m, ns, seed, max_piece_rows, layout);
    }
}

fn check_layout(
    g: &Gpu,
    m: &QMatrix,
    ns: &[usize],
    seed: u64,
    max_piece_rows: Option<usize>,
    layout: MatmulLayout,
) {
    let max_n = *ns.iter().max().unwrap();
    let x = random_vec(max_n * m.cols, seed ^ 0xab);
    let (y_offset, y_stride) = (3usize, m.rows + 5);
    pollster::block_on(async {
        let w = m.upload(g, max_piece_rows).await;
        // An activations buffer, as the model's: bindable as a uniform, with room for the last
        // window.
        let xb = g.activations("x", (x.len() * 4) as u64).unwrap();
        g.write(&xb, 0, bytemuck::cast_slice(&x)).unwrap();
        let yb = g.storage("y", (max_n * y_stride * 4) as u64).unwrap();
        let mut mm = Matmul::with_layout(
            g,
            &w,
            &xb,
            &yb,
            max_n as u32,
            y_offset as u32,
            y_stride as u32,
            layout,
        )
        .await
        .unwrap();
        assert_eq!(mm.layout(), layout);
        for &n in ns {
            let zeros = vec![0u8; max_n * y_stride * 4];
            g.write(&yb, 0, &zeros).unwrap();
            let ops = mm.set_n(g, n as u32).unwrap();
            g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
            let y = g.read_f32(&yb, max_n * y_stride).await.unwrap();

            let expected = matmul_ref(&m.dequant, m.rows, m.cols, &x[..n * m.cols], n);
            let mut got = Vec::with_capacity(n * m.rows);
            for t in 0..n {
                got.extend_from_slice(
                    &y[t * y_stride + y_offset..t * y_stride + y_offset + m.rows],
                );
            }
            // Everything else (other columns, tokens past n) stays untouched.
            let mut outside = Vec::new();
            for t in 0..max_n {
                let row = &y[t * y_stride..(t + 1) * y_stride];
                if t < n {
                    outside.extend_from_slice(&row[..y_offset]);
                    outside.extend_from_slice(&row[y_offset + m.rows..]);
                } else {
                    outside.extend_from_slice(row);
                }
            }
            let tol = (0..n)
                .map(|t| {
                    dot_tolerance(&m.dequant, m.rows, m.cols, &x[t * m.cols..(t + 1) * m.cols])
                })
                .fold(0f32, f32::max);
            let name = format!(
                "matmul {layout:?} {} {}x{} n {n} seed {seed} pieces of {max_piece_rows:?} rows",
                m.ty.name, m.rows, m.cols
            );
            assert_close(&name, &expected, &got, tol, 1e-5);
            assert_close(
                &format!("{name} (outside)"),
                &vec![0.0; outside.len()],
                &outside,
                0.0,
                0.0,
            );
        }
    });
}

#[test]
fn matmul_all_types() {
    let g = device();
    for ty in TYPES {
        for seed in 0..2u64 {
            // Seed 1 crosses groups of 8 blocks (Q8_0, Q5_0 and Q6_K are regrouped in eights at
            // upload) and ends in a partial one.
            let blocks = match (ty.block_len, seed) {
                (256, 1) => 9,
                (256, _) => 3,
                (_, 1) => 19,
                _ => 7,
            };
            let cols = blocks * ty.block_len;
            // The rows layout gives a thread 4 rows 64 apart: 67 rows leave its later rows past
            // the matrix, 250 use all four, the last partly.
            let rows = [67, 250][seed as usize];
            let m = if seed == 1 {
                QMatrix::quantized(*ty, rows, cols, seed)
            } else {
                QMatrix::random_blocks(*ty, rows, cols, seed)
            };
            check(&g, &m, &[37, 1, 5], seed, None);
        }
    }
}

/// A weight in three pieces (one not a multiple of the 64-row tile): each piece's dispatch
/// writes its own columns of Y.
#[test]
fn matmul_split_weight() {
    let g = device();
    for name in ["q4_k", "q8_0", "q6_k"] {
        let ty = qtype(name);
        let cols = if ty.block_len == 256 { 2 * 256 } else { 9 * 32 };
        let m = QMatrix::random_blocks(ty, 200, cols, 9);
        check(&g, &m, &[70, 33], 9, Some(70));
    }
}

/// On a CPU adapter (lavapipe) the adapter's choice is one thread a row where x is an activations
/// buffer, and the tiles where x cannot be bound as a uniform.
#[test]
fn matmul_layout_follows_the_adapter_and_the_buffer() {
    let g = device();
    assert!(g.caps.cpu, "lavapipe is a CPU adapter");
    let m = QMatrix::random_blocks(qtype("q8_0"), 40, 64, 3);
    pollster::block_on(async {
        let w = m.upload(&g, None).await;
        let y = g.storage("y", 40 * 9 * 4).unwrap();
        let act = g.activations("x", 9 * 64 * 4).unwrap();
        let plain = g.storage("x", 9 * 64 * 4).unwrap();
        let rows = Matmul::new(&g, &w, &act, &y, 9, 0, 40).await.unwrap();
        assert_eq!(rows.layout(), MatmulLayout::Rows);
        let tiles = Matmul::new(&g, &w, &plain, &y, 9, 0, 40).await.unwrap();
        assert_eq!(tiles.layout(), MatmulLayout::Tiles);
        assert!(
            Matmul::with_layout(&g, &w, &plain, &y, 9, 0, 40, MatmulLayout::Rows)
                .await
                .is_err()
        );
    });
}

/// Rows of 16384 columns (Gemma 1 2B's FFN down projection) fill a whole 64 KiB uniform window;
/// every token's row starts on the offset alignment, so the rows layout takes them, as the
/// adapter's own choice on CPU adapters too (it once fell back to the tiles there, which cost 40
/// decode steps a block on lavapipe).
#[test]
fn matmul_rows_whole_window() {
    let g = device();
    for name in ["q6_k", "q4_k"] {
        let m = QMatrix::random_blocks(qtype(name), 19, 16384, 5);
        check(&g, &m, &[9, 3], 5, None);
        if g.caps.cpu {
            pollster::block_on(async {
                let w = m.upload(&g, None).await;
                let xb = g.activations("x", 9 * 16384 * 4).unwrap();
                let yb = g.storage("y", 9 * 19 * 4).unwrap();
                let mm = Matmul::new(&g, &w, &xb, &yb, 9, 0, 19).await.unwrap();
                assert_eq!(mm.layout(), MatmulLayout::Rows, "{name}");
            });
        }
    }
}
