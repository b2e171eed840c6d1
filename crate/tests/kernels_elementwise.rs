//! GELU-tanh gated product, residual add and logit soft-cap, against f64 references.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::{kernels, Gpu, GpuOptions};
use gemma_web::testing::{assert_close, Rng};
use pollster::block_on;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

// Sizes around the workgroup size (256); folding past 65535 groups is tested in gpu_layer.
const SIZES: [usize; 5] = [1, 255, 257, 2048 * 3 + 5, 262_147];

#[test]
fn gelu_tanh_gated_product() {
    let g = gpu();
    for (seed, &n) in SIZES.iter().enumerate() {
        let mut r = Rng::new(seed as u64);
        let mut gate = r.vec_normal(n, 3.0);
        // Large |x|: tanh must saturate, not overflow to NaN.
        if n > 4 {
            gate[0] = 40.0;
            gate[1] = -40.0;
            gate[2] = 1e4;
            gate[3] = -1e4;
        }
        let up = r.vec_normal(n, 1.0);
        let gb = g.storage_f32("gate", &gate).unwrap();
        let ub = g.storage_f32("up", &up).unwrap();
        let op = block_on(kernels::gelu_mul(&g, &gb, &ub, n as u32)).unwrap();
        g.run(&[&op]).unwrap();
        let want: Vec<f32> = gate
            .iter()
            .zip(&up)
            .map(|(&a, &b)| (gelu_tanh(f64::from(a)) * f64::from(b)) as f32)
            .collect();
        let got = block_on(g.read_f32(&gb, n)).unwrap();
        assert_close(&format!("gelu_mul n={n}"), &want, &got, 1e-6, 1e-5);
    }
}

#[test]
fn residual_add() {
    let g = gpu();
    for (seed, &n) in SIZES.iter().enumerate() {
        let mut r = Rng::new(100 + seed as u64);
        let h = r.vec_normal(n, 300.0);
        let x = r.vec_normal(n, 1.0);
        let hb = g.storage_f32("h", &h).unwrap();
        let xb = g.storage_f32("x", &x).unwrap();
        let op = block_on(kernels::add(&g, &hb, &xb, n as u32)).unwrap();
        g.run(&[&op]).unwrap();
        let want: Vec<f32> = h.iter().zip(&x).map(|(&a, &b)| a + b).collect();
        let got = block_on(g.read_f32(&hb, n)).unwrap();
        assert_close(&format!("add n={n}"), &want, &got, 0.0, 0.0);
    }
}

#[test]
fn logit_softcap() {
    let g = gpu();
    for (seed, &n) in SIZES.iter().enumerate() {
        let mut r = Rng::new(200 + seed as u64);
        let mut z = r.vec_normal(n, 40.0);
        if n > 2 {
            z[0] = 1e30;
            z[1] = -1e30;
        }
        let cap = 30.0f32;
        let zb = g.storage_f32("z", &z).unwrap();
        let op = block_on(kernels::softcap(&g, &zb, n as u32, cap)).unwrap();
        g.run(&[&op]).unwrap();
        let want: Vec<f32> = z
            .iter()
            .map(|&v| (30.0 * (f64::from(v) / 30.0).tanh()) as f32)
            .collect();
        let got = block_on(g.read_f32(&zb, n)).unwrap();
        assert_close(&format!("softcap n={n}"), &want, &got, 1e-5, 1e-5);
    }
    assert!(block_on(kernels::softcap(&g, &g.storage("z", 4).unwrap(), 1, 0.0)).is_err());
}
