//! RMSNorm over rows and per-head (Gemma 3 q/k norm), against f64 references.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::{kernels, Gpu, GpuOptions};
use gemma_web::testing::{assert_close, Rng};
use pollster::block_on;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

fn rmsnorm_ref(x: &[f32], w: &[f32], n: usize, eps: f32) -> Vec<f32> {
    x.chunks(n)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &w)| (f64::from(v) * inv * f64::from(w)) as f32)
        })
        .collect()
}

#[test]
fn rmsnorm_rows_odd_sizes_and_large_residuals() {
    let g = gpu();
    // (rows, n): row lengths not multiples of the workgroup (256), d_model 640 and 2304,
    // head_dim 256 for per-head norms (rows = tokens * heads).
    for (seed, rows, n, scale) in [
        (1u64, 1usize, 640usize, 1.0f32),
        (2, 7, 640, 800.0), // the residual stream of the 270M model reaches ~800
        (3, 5, 2304, 3.0),
        (4, 3 * 4, 256, 1.0),
        (5, 9, 1, 1.0),
        (6, 3, 1000, 1e-3),
    ] {
        let mut r = Rng::new(seed);
        let x = r.vec_normal(rows * n, scale);
        let w = r.vec_uniform(n, 0.5, 1.5);
        let eps = 1e-6;
        let xb = g.storage_f32("x", &x).unwrap();
        let wb = g.storage_f32("w", &w).unwrap();
        let out = g.storage("out", (rows * n * 4) as u64).unwrap();
        let op = block_on(kernels::rmsnorm(
            &g,
            &xb,
            &wb,
            &out,
            rows as u32,
            n as u32,
            eps,
            false,
        ))
        .unwrap();
        g.run(&[&op]).unwrap();
        let got = block_on(g.read_f32(&out, rows * n)).unwrap();
        assert_close(
            &format!("rmsnorm seed {seed} {rows}x{n}"),
            &rmsnorm_ref(&x, &w, n, eps),
            &got,
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn rmsnorm_accumulates_into_residual_and_reuses_pipelines() {
    let g = gpu();
    let (rows, n) = (3usize, 640usize);
    let mut r = Rng::new(9);
    let x = r.vec_normal(rows * n, 4.0);
    let w = r.vec_uniform(n, 0.5, 1.5);
    let h = r.vec_normal(rows * n, 100.0);
    let xb = g.storage_f32("x", &x).unwrap();
    let wb = g.storage_f32("w", &w).unwrap();
    let hb = g.storage_f32("h", &h).unwrap();
    let op = block_on(kernels::rmsnorm(
        &g,
        &xb,
        &wb,
        &hb,
        rows as u32,
        n as u32,
        1e-6,
        true,
    ))
    .unwrap();
    let count = g.pipeline_count();
    let _again = block_on(kernels::rmsnorm(
        &g,
        &xb,
        &wb,
        &hb,
        rows as u32,
        n as u32,
        1e-6,
        true,
    ))
    .unwrap();
    assert_eq!(
        g.pipeline_count(),
        count,
        "same (kernel, variant) built twice"
    );
    g.run(&[&op]).unwrap();
    let got = block_on(g.read_f32(&hb, rows * n)).unwrap();
    let want: Vec<f32> = rmsnorm_ref(&x, &w, n, 1e-6)
        .iter()
        .zip(&h)
        .map(|(&a, &b)| (f64::from(a) + f64::from(b)) as f32)
        .collect();
    assert_close("rmsnorm accumulate", &want, &got, 1e-4, 1e-6);
}

#[test]
fn rmsnorm_rejects_short_buffers() {
    let g = gpu();
    let xb = g.storage("x", 100 * 4).unwrap();
    let wb = g.storage("w", 64 * 4).unwrap();
    let out = g.storage("out", 100 * 4).unwrap();
    assert!(block_on(kernels::rmsnorm(&g, &xb, &wb, &out, 2, 64, 1e-6, false)).is_err());
}
