//! Decode matvec y = W x for every weight type against candle-core's dequantization with f64
//! dot products, at WebGPU's default limits, in both thread layouts (one thread a row, as on
//! CPU adapters, with 1, 2 or 4 rows a thread, and a warp a row, as on GPUs), with x read as
//! storage and (one thread a row) as a uniform, and with weights split into several pieces.
#![cfg(not(target_arch = "wasm32"))]

mod quant_common;

use gemma_web::gpu::matvec::{matvec, matvec_shaped, MatvecShape, XBinding};
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::testing::assert_close;
use quant_common::*;

fn device() -> Gpu {
    pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("a wgpu adapter (lavapipe)")
}

/// Runs W x on the GPU with `w` cut into pieces of at most `max_piece_rows` rows, writing y at
/// `y_offset` of a longer buffer; returns that y slice.
fn gpu_matvec(
    g: &Gpu,
    m: &QMatrix,
    x: &[f32],
    shape: MatvecShape,
    x_uniform: bool,
    max_piece_rows: Option<usize>,
) -> Vec<f32> {
    pollster::block_on(async {
        let w = m.upload(g, max_piece_rows).await;
        if let Some(r) = max_piece_rows {
            assert_eq!(w.pieces.len(), m.rows.div_ceil(r), "pieces");
        }
        let xb = if x_uniform {
            let b = g.activations("x", (x.len() * 4) as u64).unwrap();
            g.write(&b, 0, bytemuck::cast_slice(x)).unwrap();
            assert_eq!(
                XBinding::choose(g, &b, m.cols as u32, shape),
                XBinding::Uniform
            );
            b
        } else {
            g.storage_f32("x", x).unwrap()
        };
        let y_offset = 5;
        let yb = g
            .storage("y", ((m.rows + y_offset + 3) * 4) as u64)
            .unwrap();
        let ops = matvec_shaped(g, &w, &xb, &yb, y_offset as u32, shape)
            .await
            .unwrap();
        g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        let y = g.read_f32(&yb, m.rows + y_offset + 3).await.unwrap();
        // Nothing outside the rows was written.
        let outside: Vec<f32> = y[..y_offset]
            .iter()
            .chain(&y[y_offset + m.rows..])
            .copied()
            .collect();
        assert_close(
            "matvec outside its rows",
            &vec![0.0; outside.len()],
            &outside,
            0.0,
            0.0,
        );
        y[y_offset..y_offset + m.rows].to_vec()
    })
}

fn check(g: &Gpu, m: &QMatrix, seed: u64) {
    let x = random_vec(m.cols, seed ^ 0x5eed);
    let expected = matvec_ref(&m.dequant, m.rows, m.cols, &x);
    let tol = dot_tolerance(&m.dequant, m.rows, m.cols, &x);
    for (shape, x_uniform, pieces) in [
        (MatvecShape::CPU, false, None),
        (MatvecShape::CPU, true, None),
        (MatvecShape::GPU, false, None),
        (MatvecShape::CPU, true, Some(m.rows / 3 + 1)),
        // One row a thread (the CPU layout has four), and two with x as storage.
        (MatvecShape::parse("64,1,1").unwrap(), true, None),
        (MatvecShape::parse("32,1,2").unwrap(), false, None),
    ] {
        let y = gpu_matvec(g, m, &x, shape, x_uniform, pieces);
        let name = format!(
            "matvec {} {}x{} seed {seed} {shape:?} x uniform {x_uniform} pieces of {pieces:?} rows",
            m.ty.name, m.rows, m.cols
        );
        assert_close(&name, &expected, &y, tol, 1e-5);
    }
}

/// Every type, rows that are not multiples of any workgroup's row count, columns an odd number
/// of blocks, within and across groups of 8 blocks; both valid quantizer output and random bit
/// patterns in the blocks.
#[test]
fn matvec_all_types() {
    let g = device();
    for ty in TYPES {
        for seed in 0..3u64 {
            // Seed 2 crosses groups of 8 blocks (Q8_0, Q5_0 and Q6_K are regrouped in eights at
            // upload, and the matvec loads what a group shares once) and ends in a partial one.
            let blocks = match (ty.block_len, seed) {
                (256, 2) => 9,
                (256, _) => 3,
                (_, 2) => 19,
                _ => 7,
            };
            let cols = blocks * ty.block_len;
            let rows = [67, 130, 29][seed as usize];
            let m = if seed == 1 {
                QMatrix::quantized(*ty, rows, cols, seed)
            } else {
                QMatrix::random_blocks(*ty, rows, cols, seed)
            };
            check(&g, &m, seed);
        }
    }
}

/// A Q8_0 matrix larger than one 128 MiB binding (64000 x 2048, 139 MB), uploaded at default
/// limits, runs as several pieces and equals the CPU product over the whole matrix.
#[test]
fn matvec_split_over_binding_limit() {
    let g = device();
    assert_eq!(g.caps.max_binding, 128 << 20);
    let ty = qtype("q8_0");
    let (rows, cols) = (64000usize, 2048usize);
    let x = random_vec(cols, 77);
    // Built in slices of rows so the f32 copy of the whole matrix never exists on the host.
    let slice_rows = 4000;
    let mut gguf = Vec::with_capacity(rows * cols / 32 * 34);
    let mut expected = Vec::with_capacity(rows);
    for s in 0..rows / slice_rows {
        let m = QMatrix::random_blocks(ty, slice_rows, cols, 1000 + s as u64);
        expected.extend(matvec_ref(&m.dequant, slice_rows, cols, &x));
        gguf.extend_from_slice(&m.gguf);
    }
    assert!(gguf.len() > 128 << 20);
    let y = pollster::block_on(async {
        let w = g
            .upload_weight("lm_head", ty.ggml, rows as u32, cols as u32, &gguf, None)
            .await
            .unwrap();
        assert!(w.pieces.len() >= 2, "{} pieces", w.pieces.len());
        assert!(w.pieces.iter().all(|p| p.buffer.size() <= 128 << 20));
        let xb = g.storage_f32("x", &x).unwrap();
        let yb = g.storage("y", (rows * 4) as u64).unwrap();
        let ops = matvec(&g, &w, &xb, &yb, 0).await.unwrap();
        assert_eq!(ops.len(), w.pieces.len());
        g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        g.read_f32(&yb, rows).await.unwrap()
    });
    // Tolerance from the magnitude of the terms: random Q8_0 rows with |d| < 0.05, |x| < 1.
    assert_close("split matvec", &expected, &y, 2e-3, 1e-5);
}

/// Q5_0 held as Q8_0 on the GPU (how Q and K stack with a Q8_0 V): the same products as candle's
/// dequantization of the Q5_0 blocks, across groups of 8 blocks.
#[test]
fn q5_0_widened_to_q8_0_is_exact() {
    let g = device();
    let m = QMatrix::random_blocks(qtype("q5_0"), 45, 19 * 32, 21);
    let x = random_vec(m.cols, 22);
    let expected = matvec_ref(&m.dequant, m.rows, m.cols, &x);
    let y = pollster::block_on(async {
        let mut up = g
            .begin_weight_as(
                "w",
                m.ty.ggml,
                gemma_web::gguf::GgmlType::Q8_0,
                m.rows as u32,
                m.cols as u32,
                None,
            )
            .await
            .unwrap();
        up.push(&m.gguf).unwrap();
        let w = up.finish().await.unwrap();
        assert_eq!(w.ty, gemma_web::gguf::GgmlType::Q8_0);
        let xb = g.storage_f32("x", &x).unwrap();
        let yb = g.storage("y", (m.rows * 4) as u64).unwrap();
        let ops = matvec(&g, &w, &xb, &yb, 0).await.unwrap();
        g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        g.read_f32(&yb, m.rows).await.unwrap()
    });
    let tol = dot_tolerance(&m.dequant, m.rows, m.cols, &x);
    assert_close("Q5_0 as Q8_0", &expected, &y, tol, 1e-5);
}

/// A row's lanes summed by subgroup shuffles (where the adapter's smallest subgroup holds a
/// row: 2, 4 and 8 lanes a row on lavapipe, whose subgroups are 8 wide) and by the workgroup
/// tree (32 lanes a row, wider than its subgroups) on a device with subgroups, for the types of
/// the real models (x as storage: several lanes a row read different x).
#[test]
fn row_sums_by_subgroup_shuffles_and_by_barriers() {
    use gemma_web::gpu::matvec::row_sum_lib;
    let g = pollster::block_on(Gpu::new(GpuOptions {
        allow_subgroups: true,
        ..GpuOptions::for_tests()
    }))
    .expect("a wgpu adapter (lavapipe)");
    assert!(g.caps.subgroups, "lavapipe offers subgroups");
    let min = g.caps.subgroup_min_size;
    assert!(min >= 4, "subgroups of {min}");
    let mut took = Vec::new();
    for text in ["64,2,1", "64,4,1", "64,8,1", "256,32,1"] {
        let shape = MatvecShape::parse(text).unwrap();
        let lib = row_sum_lib(&g, shape).0;
        let want = if shape.row_threads <= min {
            "row_sum_subgroup"
        } else {
            "row_sum_barrier"
        };
        assert_eq!(lib, want, "{text} with subgroups of {min}");
        took.push(lib);
        for (i, name) in ["q8_0", "q4_k", "q6_k", "q5_0"].into_iter().enumerate() {
            let ty = qtype(name);
            let cols = if ty.block_len == 256 {
                5 * 256
            } else {
                19 * 32
            };
            let m = QMatrix::random_blocks(ty, 75, cols, 40 + i as u64);
            let x = random_vec(cols, 50 + i as u64);
            let expected = matvec_ref(&m.dequant, m.rows, m.cols, &x);
            let tol = dot_tolerance(&m.dequant, m.rows, m.cols, &x);
            let y = gpu_matvec(&g, &m, &x, shape, false, None);
            assert_close(
                &format!("matvec {name} {text} ({lib})"),
                &expected,
                &y,
                tol,
                1e-5,
            );
        }
    }
    assert!(took.contains(&"row_sum_subgroup") && took.contains(&"row_sum_barrier"));
}
