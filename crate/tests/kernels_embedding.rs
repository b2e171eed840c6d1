//! Embedding row gather with dequantization and the sqrt(d_model) scale, against candle-core's
//! dequantization; tables split into pieces so ids land in different buffers.
#![cfg(not(target_arch = "wasm32"))]

#[allow(dead_code)]
mod quant_common;

use gemma_web::gpu::{kernels, Gpu, GpuOptions};
use gemma_web::testing::{assert_close, Rng};
use pollster::block_on;
use quant_common::{qtype, QMatrix};

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

/// Uploads `m` in uneven chunks (as a file stream would), pieces of at most `max_piece` bytes,
/// gathers `ids` and compares with candle's dequantized rows times `scale`.
fn check(g: &Gpu, m: &QMatrix, max_piece: Option<u64>, ids: &[u32], want_pieces: usize) {
    let ty = m.ty.ggml;
    let mut up =
        block_on(g.begin_weight("embd", ty, m.rows as u32, m.cols as u32, max_piece)).unwrap();
    let mut rng = Rng::new(m.rows as u64);
    let mut at = 0;
    while at < m.gguf.len() {
        let n = (1 + rng.below(3 * m.row_bytes as u32) as usize).min(m.gguf.len() - at);
        up.push(&m.gguf[at..at + n]).unwrap();
        at += n;
    }
    let table = block_on(up.finish()).unwrap();
    assert_eq!(table.pieces.len(), want_pieces, "pieces");
    let scale = (m.cols as f32).sqrt();
    let n = ids.len() as u32;
    let idb = g.storage_u32("ids", ids).unwrap();
    let out = g.storage("out", (ids.len() * m.cols * 4) as u64).unwrap();
    let ops = block_on(kernels::embedding(g, &table, &idb, &out, n, scale)).unwrap();
    g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
    let got = block_on(g.read_f32(&out, ids.len() * m.cols)).unwrap();
    let mut want = Vec::new();
    for &id in ids {
        let row = &m.dequant[id as usize * m.cols..(id as usize + 1) * m.cols];
        want.extend(
            row.iter()
                .map(|&v| (f64::from(v) * f64::from(scale)) as f32),
        );
    }
    assert_close(
        &format!("embedding {} {}x{}", m.ty.name, m.rows, m.cols),
        &want,
        &got,
        1e-6,
        1e-6,
    );
}

#[test]
fn embedding_f32_q8_0_q5_0_q4_k_q6_k_odd_sizes() {
    let g = gpu();
    for (ty, rows, cols, seed) in [
        ("f32", 1001, 160, 1u64),
        ("f32", 77, 32, 2),
        ("q8_0", 1001, 160, 3),
        ("q8_0", 333, 96, 4),
        ("q8_0", 41, 608, 7),
        ("q5_0", 57, 608, 8),
        ("q4_k", 515, 256, 5),
        ("q6_k", 301, 512, 6),
        ("q6_k", 23, 2304, 9),
    ] {
        let m = QMatrix::random_blocks(qtype(ty), rows, cols, seed);
        let mut rng = Rng::new(seed);
        let mut ids: Vec<u32> = (0..13).map(|_| rng.below(rows as u32)).collect();
        ids.extend([0, rows as u32 - 1, ids[0]]);
        check(&g, &m, None, &ids, 1);
    }
}

#[test]
fn embedding_across_split_table() {
    let g = gpu();
    // Q8_0 rows of 170 bytes pad to 172: pieces of 100 rows, the last one short.
    let m = QMatrix::random_blocks(qtype("q8_0"), 1001, 160, 11);
    let ids = [0u32, 99, 100, 101, 555, 999, 1000, 1000, 250, 7];
    check(&g, &m, Some(172 * 100 + 100), &ids, 11);
    // f32 rows already 4-byte multiples; one row per piece at the extreme.
    let m = QMatrix::random_blocks(qtype("f32"), 9, 32, 12);
    check(&g, &m, Some(128), &[8, 0, 4, 3, 3], 9);
}
