//! RoPE, NeoX halves, per-layer base, on q and k at given positions, against an f64 reference.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::{kernels, Gpu, GpuOptions};
use gemma_web::testing::{assert_close, rope_reference, rope_reference_scaled, Rng};
use pollster::block_on;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

#[test]
fn rope_q_and_k_several_tokens_per_layer_base() {
    let g = gpu();
    // Gemma 3 270M: 4 q heads, 1 kv head, head_dim 256, bases 1e4 (local) and 1e6 (global);
    // plus odd shapes.
    for (seed, n_tokens, heads, d, base, p0) in [
        (1u64, 5usize, 4usize, 256usize, 10000.0f32, 0u32),
        (2, 5, 1, 256, 1_000_000.0, 0),
        (3, 1, 4, 256, 10000.0, 511),
        (4, 3, 3, 18, 10000.0, 7),
        (5, 17, 2, 64, 1_000_000.0, 1000),
    ] {
        let mut r = Rng::new(seed);
        let x = r.vec_normal(n_tokens * heads * d, 1.0);
        let positions: Vec<u32> = (0..n_tokens as u32).map(|t| p0 + t * 3).collect();
        let xb = g.storage_f32("x", &x).unwrap();
        let pb = g.storage_u32("pos", &positions).unwrap();
        let op = block_on(kernels::rope(
            &g,
            &xb,
            &pb,
            n_tokens as u32,
            heads as u32,
            d as u32,
            base,
        ))
        .unwrap();
        g.run(&[&op]).unwrap();
        let got = block_on(g.read_f32(&xb, x.len())).unwrap();
        let want = rope_reference(&x, &positions, heads, d, f64::from(base));
        // f32 angles lose about pos * 2^-23 radians, as in every f32 implementation.
        let max_pos = positions.iter().copied().max().unwrap_or(0) as f32;
        let abs = 2e-5 + max_pos * 1e-6;
        assert_close(
            &format!("rope seed {seed} t{n_tokens} h{heads} d{d} base {base}"),
            &want,
            &got,
            abs,
            1e-5,
        );
    }
}

#[test]
fn rope_at_position_zero_is_identity_and_odd_head_dim_is_rejected() {
    let g = gpu();
    let mut r = Rng::new(3);
    let x = r.vec_normal(2 * 256, 1.0);
    let xb = g.storage_f32("x", &x).unwrap();
    let pb = g.storage_u32("pos", &[0]).unwrap();
    let op = block_on(kernels::rope(&g, &xb, &pb, 1, 2, 256, 10000.0)).unwrap();
    g.run(&[&op]).unwrap();
    assert_close(
        "rope pos 0",
        &x,
        &block_on(g.read_f32(&xb, x.len())).unwrap(),
        0.0,
        0.0,
    );
    assert!(block_on(kernels::rope(&g, &xb, &pb, 1, 2, 255, 10000.0)).is_err());
}

#[test]
fn rope_with_linear_scaling_divides_the_positions() {
    let g = gpu();
    // Gemma 3 4B+ global layers (base 1e6, factor 8, 8 q heads / 4 kv heads of 256), and odd shapes
    // and factors, at positions far into the context.
    for (seed, n_tokens, heads, d, base, factor, p0) in [
        (1u64, 5usize, 8usize, 256usize, 1_000_000.0f32, 8.0f32, 0u32),
        (2, 3, 4, 256, 1_000_000.0, 8.0, 100_000),
        (3, 7, 3, 18, 10_000.0, 2.5, 17),
        (4, 2, 1, 64, 10_000.0, 1.0, 4000),
    ] {
        let mut r = Rng::new(seed);
        let x = r.vec_normal(n_tokens * heads * d, 1.0);
        let positions: Vec<u32> = (0..n_tokens as u32).map(|t| p0 + t * 5).collect();
        let xb = g.storage_f32("x", &x).unwrap();
        let pb = g.storage_u32("pos", &positions).unwrap();
        let op = block_on(kernels::rope_scaled(
            &g,
            &xb,
            &pb,
            n_tokens as u32,
            heads as u32,
            d as u32,
            base,
            1.0 / factor,
        ))
        .unwrap();
        g.run(&[&op]).unwrap();
        let got = block_on(g.read_f32(&xb, x.len())).unwrap();
        let want =
            rope_reference_scaled(&x, &positions, heads, d, f64::from(base), f64::from(factor));
        let max_angle = positions.iter().copied().max().unwrap_or(0) as f32 / factor;
        assert_close(
            &format!("rope seed {seed} t{n_tokens} h{heads} d{d} base {base} factor {factor}"),
            &want,
            &got,
            2e-5 + max_angle * 1e-6,
            1e-5,
        );
        // Not the unscaled rotation (except for factor 1, where it must be exactly that).
        let unscaled = rope_reference(&x, &positions, heads, d, f64::from(base));
        let differs = got.iter().zip(&unscaled).any(|(a, b)| (a - b).abs() > 1e-2);
        assert_eq!(differs, factor != 1.0, "seed {seed}");
    }
    // A factor that is no factor is refused.
    let xb = g.storage_f32("x", &[0.0; 64]).unwrap();
    let pb = g.storage_u32("pos", &[0]).unwrap();
    for s in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        assert!(block_on(kernels::rope_scaled(&g, &xb, &pb, 1, 1, 64, 10000.0, s)).is_err());
    }
}
