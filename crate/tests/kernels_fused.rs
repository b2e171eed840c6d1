//! The fused kernels of the decode step against f64 references, at odd sizes: residual +
//! post-norm + next pre-norm, per-head norm + RoPE + KV-cache write (a ring that wraps; f32 and
//! f16 caches), the
//! gated MLP product, and gate + up + GELU in one matvec (Q5_0 and Q4_K, both thread layouts).
//! The first two also equal, bit for bit, the separate kernels they replace.
#![cfg(not(target_arch = "wasm32"))]

mod attention_common;
mod quant_common;

use attention_common::{cache_bytes, read_cache, stored};
use gemma_web::gpu::attention::KvDtype;

use gemma_web::gpu::kernels::{self, QkRopeKvIo, QkRopeKvParams};
use gemma_web::gpu::matvec::{matvec_glu, MatvecShape, XBinding};
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::testing::{assert_close, rope_reference_scaled, Rng};
use pollster::block_on;
use quant_common::*;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

fn rms(row: &[f64]) -> f64 {
    row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.7978845608028654 * (x + 0.044715 * x * x * x)).tanh())
}

#[test]
fn residual_norm_odd_rows_with_and_without_post_norm() {
    let g = gpu();
    for (seed, rows, n, post) in [
        (1u64, 3usize, 333usize, true),
        (2, 2, 640, false),
        (3, 1, 2304, true),
    ] {
        let mut r = Rng::new(seed);
        let out = r.vec_normal(rows * n, 30.0);
        let h0 = r.vec_normal(rows * n, 300.0);
        let wp = r.vec_uniform(n, 0.5, 1.5);
        let wn = r.vec_uniform(n, 0.5, 1.5);
        let eps = 1e-6f32;
        let ob = g.storage_f32("out", &out).unwrap();
        let hb = g.storage_f32("h", &h0).unwrap();
        let xb = g.storage("xn", (rows * n * 4) as u64).unwrap();
        let wpb = g.storage_f32("w_post", &wp).unwrap();
        let wnb = g.storage_f32("w_next", &wn).unwrap();
        let op = block_on(kernels::residual_norm(
            &g,
            &ob,
            post.then_some(&wpb),
            &wnb,
            &hb,
            &xb,
            rows as u32,
            n as u32,
            eps,
        ))
        .unwrap();
        g.run(&[&op]).unwrap();
        let h = block_on(g.read_f32(&hb, rows * n)).unwrap();
        let xn = block_on(g.read_f32(&xb, rows * n)).unwrap();
        let (mut want_h, mut want_x) = (Vec::new(), Vec::new());
        for t in 0..rows {
            let o: Vec<f64> = out[t * n..][..n].iter().map(|&v| f64::from(v)).collect();
            let inv = 1.0 / (rms(&o) + f64::from(eps)).sqrt();
            let hv: Vec<f64> = (0..n)
                .map(|i| {
                    let add = if post {
                        o[i] * inv * f64::from(wp[i])
                    } else {
                        o[i]
                    };
                    f64::from(h0[t * n + i]) + add
                })
                .collect();
            let inv2 = 1.0 / (rms(&hv) + f64::from(eps)).sqrt();
            want_x.extend((0..n).map(|i| (hv[i] * inv2 * f64::from(wn[i])) as f32));
            want_h.extend(hv.iter().map(|&v| v as f32));
        }
        assert_close(&format!("residual h seed {seed}"), &want_h, &h, 1e-3, 1e-5);
        assert_close(
            &format!("residual xn seed {seed}"),
            &want_x,
            &xn,
            1e-5,
            1e-4,
        );

        // Bit for bit the two kernels it replaces.
        let hb2 = g.storage_f32("h2", &h0).unwrap();
        let xb2 = g.storage("xn2", (rows * n * 4) as u64).unwrap();
        let first = if post {
            block_on(kernels::rmsnorm(
                &g,
                &ob,
                &wpb,
                &hb2,
                rows as u32,
                n as u32,
                eps,
                true,
            ))
        } else {
            block_on(kernels::add(&g, &hb2, &ob, (rows * n) as u32))
        }
        .unwrap();
        let second = block_on(kernels::rmsnorm(
            &g,
            &hb2,
            &wnb,
            &xb2,
            rows as u32,
            n as u32,
            eps,
            false,
        ))
        .unwrap();
        g.run(&[&first, &second]).unwrap();
        assert_eq!(block_on(g.read_f32(&hb2, rows * n)).unwrap(), h);
        assert_eq!(block_on(g.read_f32(&xb2, rows * n)).unwrap(), xn);
    }
}

#[test]
fn qk_rope_kv_norms_rotates_and_fills_a_wrapping_ring() {
    let g = block_on(Gpu::new(GpuOptions {
        allow_f16: true,
        ..GpuOptions::for_tests()
    }))
    .expect("a GPU adapter (lavapipe)");
    // 3 tokens at positions 7, 8, 9 into a ring of 8 slots (slots 7, 0, 1); 3 query heads,
    // 2 kv heads, head_dim 66.
    // Linear RoPE scaling by 8 (Gemma 3 4B+ global layers) in the third case; an f16 cache in
    // the last.
    let f16 = if g.caps.f16 {
        KvDtype::F16
    } else {
        KvDtype::F32
    };
    for (norm, factor, kv) in [
        (true, 1.0f32, KvDtype::F32),
        (false, 1.0, KvDtype::F32),
        (true, 8.0, KvDtype::F32),
        (true, 1.0, f16),
    ] {
        let (n, nh, nkv, hd, cache_len, pos) = (3usize, 3usize, 2usize, 66usize, 8usize, 7u32);
        let (base, eps) = (10_000.0f32, 1e-6f32);
        let stride = (nh + 2 * nkv) * hd;
        let mut r = Rng::new(if norm { 11 } else { 12 } + factor as u64 + kv.bytes());
        let qkv = r.vec_normal(n * stride, 2.0);
        let nw = r.vec_uniform(2 * hd, 0.5, 1.5);
        let cache0 = stored(kv, &r.vec_normal(nkv * cache_len * hd, 1.0));
        let qkvb = g.storage_f32("qkv", &qkv).unwrap();
        let nwb = g.storage_f32("norm_w", &nw).unwrap();
        let qb = g.storage("q", (n * nh * hd * 4) as u64).unwrap();
        let kc = g
            .storage_init("k_cache", &cache_bytes(kv, &cache0))
            .unwrap();
        let vc = g
            .storage_init("v_cache", &cache_bytes(kv, &cache0))
            .unwrap();
        let mut op = block_on(kernels::qk_rope_kv(
            &g,
            &QkRopeKvIo {
                qkv: &qkvb,
                norm_w: norm.then_some(&nwb),
                q: &qb,
                k_cache: &kc,
                v_cache: &vc,
                kv,
            },
            QkRopeKvParams {
                n_tokens: 1,
                n_heads: nh as u32,
                n_kv_heads: nkv as u32,
                head_dim: hd as u32,
                cache_len: cache_len as u32,
                pos: 0,
                base,
                eps,
                pos_scale: 1.0 / factor,
                ..Default::default()
            },
            n as u32,
        ))
        .unwrap();
        let o = op.set(&g, pos, n as u32).unwrap().clone();
        g.run(&[&o]).unwrap();

        // Reference: per-head RMSNorm in f64, then RoPE in f64.
        let normed = |x: &[f32], w: &[f32]| -> Vec<f32> {
            if !norm {
                return x.to_vec();
            }
            let xd: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
            let inv = 1.0 / (rms(&xd) + f64::from(eps)).sqrt();
            xd.iter()
                .zip(w)
                .map(|(v, &w)| (v * inv * f64::from(w)) as f32)
                .collect()
        };
        let positions: Vec<u32> = (0..n as u32).map(|t| pos + t).collect();
        let (mut q_in, mut k_in) = (Vec::new(), Vec::new());
        for t in 0..n {
            let row = &qkv[t * stride..][..stride];
            for h in 0..nh {
                q_in.extend(normed(&row[h * hd..][..hd], &nw[..hd]));
            }
            for h in 0..nkv {
                k_in.extend(normed(&row[(nh + h) * hd..][..hd], &nw[hd..]));
            }
        }
        let rope = |x: &[f32], heads| {
            rope_reference_scaled(x, &positions, heads, hd, f64::from(base), f64::from(factor))
        };
        let (want_q, want_k) = (rope(&q_in, nh), rope(&k_in, nkv));
        let got_q = block_on(g.read_f32(&qb, n * nh * hd)).unwrap();
        assert_close(
            &format!("q norm={norm} factor={factor}"),
            &want_q,
            &got_q,
            2e-5,
            1e-4,
        );
        let (mut want_kc, mut want_vc) = (cache0.clone(), cache0.clone());
        for t in 0..n {
            let slot = (pos as usize + t) % cache_len;
            for h in 0..nkv {
                let dst = (h * cache_len + slot) * hd;
                let k = &want_k[(t * nkv + h) * hd..][..hd];
                want_kc[dst..dst + hd].copy_from_slice(&stored(kv, k));
                let v = &qkv[t * stride + (nh + nkv + h) * hd..][..hd];
                want_vc[dst..dst + hd].copy_from_slice(&stored(kv, v));
            }
        }
        let got_k = block_on(read_cache(&g, &kc, cache0.len(), kv));
        let got_v = block_on(read_cache(&g, &vc, cache0.len(), kv));
        // A key the GPU computes a hair off the f64 reference may round to the neighbouring
        // half: one half ulp (2^-10 relative) on an f16 cache.
        let rel = if kv == KvDtype::F16 { 1e-3 } else { 1e-4 };
        assert_close(
            &format!("k cache norm={norm} {kv:?}"),
            &want_kc,
            &got_k,
            2e-5,
            rel,
        );
        assert_eq!(got_v, want_vc, "v cache norm={norm} {kv:?}");
        // More tokens than it was bound for is an error.
        assert!(op.set(&g, 0, n as u32 + 1).is_err());
    }
}

#[test]
fn glu_odd_sizes() {
    let g = gpu();
    let (n, ffn) = (3usize, 333usize);
    let mut r = Rng::new(21);
    let gu = r.vec_normal(n * 2 * ffn, 2.0);
    let gub = g.storage_f32("gu", &gu).unwrap();
    let out = g.storage("out", (n * ffn * 4) as u64).unwrap();
    let op = block_on(kernels::glu(&g, &gub, &out, n as u32, ffn as u32)).unwrap();
    g.run(&[&op]).unwrap();
    let got = block_on(g.read_f32(&out, n * ffn)).unwrap();
    let want: Vec<f32> = (0..n * ffn)
        .map(|i| {
            let (t, j) = (i / ffn, i % ffn);
            let row = &gu[t * 2 * ffn..];
            (gelu_tanh(f64::from(row[j])) * f64::from(row[ffn + j])) as f32
        })
        .collect();
    assert_close("glu", &want, &got, 1e-5, 1e-4);
}

/// `x` in a storage buffer, or in an activation buffer (storage and uniform, 64 KiB).
fn x_buffer(g: &Gpu, x: &[f32], activations: bool) -> wgpu::Buffer {
    if activations {
        let b = g.activations("x", (x.len() * 4) as u64).unwrap();
        g.write(&b, 0, bytemuck::cast_slice(x)).unwrap();
        b
    } else {
        g.storage_f32("x", x).unwrap()
    }
}

#[test]
fn gate_up_gelu_in_one_matvec() {
    // x in a plain storage buffer, and in an activation buffer (read as a uniform on the
    // one-row-a-thread layout).
    gate_up_gelu_shapes(
        &gpu(),
        &[
            (MatvecShape::CPU, false),
            (MatvecShape::CPU, true),
            (MatvecShape::GPU, true),
        ],
    );
}

/// The same with a row's lanes summed by subgroup shuffles (8 lanes a row: lavapipe's
/// subgroups are 8 wide) and by the workgroup tree (32) on a device with subgroups.
#[test]
fn gate_up_gelu_with_subgroups() {
    let g = block_on(Gpu::new(GpuOptions {
        allow_subgroups: true,
        ..GpuOptions::for_tests()
    }))
    .expect("a wgpu adapter (lavapipe)");
    let narrow = MatvecShape::parse("64,8,1").unwrap();
    assert_eq!(
        gemma_web::gpu::matvec::row_sum_lib(&g, narrow).0,
        "row_sum_subgroup"
    );
    gate_up_gelu_shapes(&g, &[(narrow, false), (MatvecShape::GPU, false)]);
}

fn gate_up_gelu_shapes(g: &Gpu, shapes: &[(MatvecShape, bool)]) {
    for (name, cols) in [("q5_0", 7 * 32), ("q4_k", 3 * 256)] {
        let ty = qtype(name);
        let ffn = 97; // odd: not a multiple of any workgroup's rows
        let m = QMatrix::quantized(ty, 2 * ffn, cols, 5);
        let x = random_vec(cols, 6);
        let full = matvec_ref(&m.dequant, 2 * ffn, cols, &x);
        let tol = dot_tolerance(&m.dequant, 2 * ffn, cols, &x);
        let want: Vec<f32> = (0..ffn)
            .map(|r| (gelu_tanh(f64::from(full[r])) * f64::from(full[ffn + r])) as f32)
            .collect();
        for &(shape, x_uniform) in shapes {
            let got = block_on(async {
                let w = m.upload(g, None).await;
                let xb = x_buffer(g, &x, x_uniform);
                let want_xb = if x_uniform && shape == MatvecShape::CPU {
                    XBinding::Uniform
                } else {
                    XBinding::Storage
                };
                assert_eq!(XBinding::choose(g, &xb, cols as u32, shape), want_xb);
                let yb = g.storage("y", (ffn * 4) as u64).unwrap();
                let op = matvec_glu(g, &w, &xb, &yb, shape).await.unwrap();
                g.run(&[&op]).unwrap();
                g.read_f32(&yb, ffn).await.unwrap()
            });
            // |gelu(a) b - gelu(a') b'| grows with |b| and |a|: allow the dot tolerance scaled.
            let scale = full.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert_close(
                &format!("glu matvec {name} {shape:?} x uniform {x_uniform}"),
                &want,
                &got,
                tol * 2.0 * scale,
                1e-4,
            );
        }
    }
}

/// Q, K and V (or gate and up) stacked at load equal the separate weights' products.
#[test]
fn stacked_rows_equal_the_parts() {
    let g = gpu();
    let ty = qtype("q5_0");
    let parts: Vec<QMatrix> = [(64, 1u64), (32, 2), (32, 3)]
        .iter()
        .map(|&(rows, seed)| QMatrix::quantized(ty, rows, 160, seed))
        .collect();
    let x = random_vec(160, 9);
    let got = block_on(async {
        let mut ws = Vec::new();
        for m in &parts {
            ws.push(m.upload(&g, None).await);
        }
        let refs: Vec<_> = ws.iter().collect();
        let w = g
            .concat_rows("qkv", &refs)
            .await
            .unwrap()
            .expect("same type and columns");
        assert_eq!(w.rows, 128);
        let xb = g.storage_f32("x", &x).unwrap();
        let yb = g.storage("y", 128 * 4).unwrap();
        let ops = gemma_web::gpu::matvec::matvec(&g, &w, &xb, &yb, 0)
            .await
            .unwrap();
        g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
        // Different types do not stack.
        let other = QMatrix::quantized(qtype("q8_0"), 32, 160, 4)
            .upload(&g, None)
            .await;
        assert!(g
            .concat_rows("x", &[&ws[0], &other])
            .await
            .unwrap()
            .is_none());
        g.read_f32(&yb, 128).await.unwrap()
    });
    let mut want = Vec::new();
    for m in &parts {
        want.extend(matvec_ref(&m.dequant, m.rows, m.cols, &x));
    }
    let tol = parts
        .iter()
        .map(|m| dot_tolerance(&m.dequant, m.rows, m.cols, &x))
        .fold(0.0, f32::max);
    assert_close("stacked matvec", &want, &got, tol, 1e-5);
}
