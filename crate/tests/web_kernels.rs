//! Kernel tests in the browser's WebGPU (headless Chromium: SwiftShader, no shader-f16), at
//! default limits. Run by `make test-web-kernels`. Sizes stay small: SwiftShader computes at
//! well under a GFLOP/s. References are plain f64 loops (candle does not build for wasm).
#![cfg(target_arch = "wasm32")]

mod attention_common;

use attention_common::{case, run_case, run_stream, variants, Case, Variant};
use gemma_web::gpu::attention::{AttentionLayout, KvDtype};
use gemma_web::gpu::{kernels, Gpu, GpuOptions};
use gemma_web::testing::{assert_close, rope_reference, Rng};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> Gpu {
    match Gpu::new(GpuOptions::for_tests()).await {
        Ok(g) => g,
        Err(e) => panic!("no WebGPU in this browser: {e}"),
    }
}

#[wasm_bindgen_test]
async fn web_adapter_is_default_limits_without_f16() {
    let g = gpu().await;
    assert_eq!(g.caps.backend, "webgpu");
    assert_eq!(g.caps.max_binding, 128 << 20);
    assert_eq!(g.caps.max_storage_buffers, 8);
    assert!(!g.caps.f16);
    // SwiftShader is Chromium's fallback adapter (`isFallbackAdapter`): the CPU kernel layout.
    assert!(g.caps.cpu, "{:?}", g.caps);
    web_sys::console::log_1(&format!("{:?}", g.caps).into());
}

#[wasm_bindgen_test]
async fn web_rmsnorm_rows_and_heads() {
    let g = gpu().await;
    for (seed, rows, n) in [(1u64, 3usize, 640usize), (2, 2 * 4, 256), (3, 2, 333)] {
        let mut r = Rng::new(seed);
        let x = r.vec_normal(rows * n, 50.0);
        let w = r.vec_uniform(n, 0.5, 1.5);
        let xb = g.storage_f32("x", &x).unwrap();
        let wb = g.storage_f32("w", &w).unwrap();
        let out = g.storage("out", (rows * n * 4) as u64).unwrap();
        let op = kernels::rmsnorm(&g, &xb, &wb, &out, rows as u32, n as u32, 1e-6, false)
            .await
            .unwrap();
        g.run(&[&op]).unwrap();
        let got = g.read_f32(&out, rows * n).await.unwrap();
        let want: Vec<f32> = x
            .chunks(n)
            .flat_map(|row| {
                let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
                let inv = 1.0 / (ms + 1e-6).sqrt();
                row.iter()
                    .zip(&w)
                    .map(move |(&v, &w)| (f64::from(v) * inv * f64::from(w)) as f32)
            })
            .collect();
        assert_close(&format!("web rmsnorm {rows}x{n}"), &want, &got, 1e-5, 1e-5);
    }
}

#[wasm_bindgen_test]
async fn web_rope() {
    let g = gpu().await;
    let (n_tokens, heads, d, base) = (3usize, 4usize, 256usize, 10000.0f64);
    let mut r = Rng::new(5);
    let x = r.vec_normal(n_tokens * heads * d, 1.0);
    let positions = [0u32, 17, 511];
    let xb = g.storage_f32("x", &x).unwrap();
    let pb = g.storage_u32("pos", &positions).unwrap();
    let op = kernels::rope(
        &g,
        &xb,
        &pb,
        n_tokens as u32,
        heads as u32,
        d as u32,
        base as f32,
    )
    .await
    .unwrap();
    g.run(&[&op]).unwrap();
    let got = g.read_f32(&xb, x.len()).await.unwrap();
    let want = rope_reference(&x, &positions, heads, d, base);
    assert_close("web rope", &want, &got, 2e-5 + 511.0 * 1e-6, 1e-5);
}

#[wasm_bindgen_test]
async fn web_argmax_vocab_with_ties() {
    let g = gpu().await;
    for (seed, n) in [(1u64, 262144usize), (2, 4097)] {
        let mut r = Rng::new(seed);
        let mut v: Vec<f32> = (0..n).map(|_| (r.normal() * 64.0).round() / 16.0).collect();
        // The maximum twice, in different chunks: the lower index wins.
        v[n - 1] = 100.0;
        v[n / 3] = 100.0;
        let b = g.storage_f32("logits", &v).unwrap();
        let am = kernels::argmax(&g, &b, n as u32).await.unwrap();
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            am.record(&mut pass);
        }
        g.submit(enc.finish()).unwrap();
        assert_eq!(
            am.read_argmax(&g).await.unwrap(),
            (n / 3) as u32,
            "argmax n={n}"
        );
    }
}

#[wasm_bindgen_test]
async fn web_topk_small() {
    let g = gpu().await;
    let n = 5000usize;
    let mut r = Rng::new(9);
    let v: Vec<f32> = (0..n).map(|_| (r.normal() * 64.0).round() / 16.0).collect();
    let b = g.storage_f32("logits", &v).unwrap();
    let tk = kernels::topk(&g, &b, n as u32, 8).await.unwrap();
    let mut enc = g.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        tk.record(&mut pass);
    }
    g.submit(enc.finish()).unwrap();
    let got = tk.read(&g).await.unwrap();
    let mut idx: Vec<u32> = (0..n as u32).collect();
    idx.sort_by(|&a, &b| {
        v[b as usize]
            .partial_cmp(&v[a as usize])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let want: Vec<(u32, f32)> = idx.iter().take(8).map(|&i| (i, v[i as usize])).collect();
    assert_eq!(got, want);
}

#[wasm_bindgen_test]
async fn web_sampling_keeps_the_sorted_prefix() {
    // The radix selects and the Gumbel draw under the browser's shader compiler: the kept set
    // of a top-k above 64 then a top-p, over tied values, is the sorted prefix, and draws land
    // in it.
    use gemma_web::gpu::sample::{Draw, GpuSampling, SampleOps, SelectState};
    let g = gpu().await;
    let n = 5000usize;
    let mut r = Rng::new(10);
    let v: Vec<f32> = (0..n).map(|_| (r.normal() * 8.0).round() / 4.0).collect();
    let b = g.storage_f32("logits", &v).unwrap();
    let p = GpuSampling {
        temperature: 0.8,
        top_k: 300,
        top_p: 0.9,
        penalty: 1.0,
        seed: 4,
    };
    let draws = 16;
    let mut ops = SampleOps::new(&g, &b, n as u32, draws).await.unwrap();
    let list = ops.set(&g, &p, &[], 0, draws).unwrap();
    g.run(&list).unwrap();
    let state: SelectState =
        bytemuck::pod_read_unaligned(&g.read(&ops.state, 0, 64).await.unwrap());
    let got: Vec<Draw> =
        bytemuck::pod_collect_to_vec(&g.read(&ops.out, 0, u64::from(draws) * 16).await.unwrap());
    let mut idx: Vec<usize> = (0..n).collect();
    idx.sort_by(|&a, &b| v[b].partial_cmp(&v[a]).unwrap().then(a.cmp(&b)));
    idx.truncate(300);
    let w: Vec<f64> = idx
        .iter()
        .map(|&i| ((f64::from(v[i]) - f64::from(v[idx[0]])) / 0.8).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut acc = 0.0;
    let keep = w.iter().take_while(|&&x| {
        let before = acc;
        acc += x / total;
        before < 0.9
    });
    let keep = keep.count();
    let mut want: Vec<usize> = idx[..keep].to_vec();
    want.sort_unstable();
    let kept = |i: usize| state.keeps(SelectState::rank_key(v[i], i as u32, n as u32));
    let have: Vec<usize> = (0..n).filter(|&i| kept(i)).collect();
    assert_eq!(state.kept as usize, keep, "{state:?}");
    assert!(have == want, "{} kept, want {}", have.len(), want.len());
    assert!(got.iter().all(|d| kept(d.id as usize)), "{got:?}");
}

/// The native attention cases' runners at browser sizes: GQA and MQA, window, soft-cap, head_dim
/// 256 and 64, a ring cache, and a stream of prefill blocks and decode steps on one bound layer.
/// Decode in every layout and cache type the browser's adapter offers (the rows layout where it
/// has subgroups).
#[wasm_bindgen_test]
async fn web_attention_decode_prefill_and_ring() {
    let g = match Gpu::new(GpuOptions {
        allow_subgroups: true,
        ..GpuOptions::for_tests()
    })
    .await
    {
        Ok(g) => g,
        Err(e) => panic!("no WebGPU in this browser: {e}"),
    };
    let k = Variant {
        kv: KvDtype::F32,
        layout: AttentionLayout::Tiles,
    };
    let prefill = [
        Case {
            window: Some(5),
            softcap: Some(50.0),
            q_std: 20.0,
            seed: 40,
            ..case(4, 1, 6, 7)
        },
        Case {
            head_dim: 64,
            seed: 41,
            ..case(8, 4, 3, 9)
        },
    ];
    for c in &prefill {
        run_case(&g, k, c, true).await;
    }
    let decode = [
        Case {
            window: Some(16),
            seed: 42,
            ..case(4, 1, 40, 1)
        },
        Case {
            head_dim: 64,
            softcap: Some(50.0),
            q_std: 20.0,
            seed: 43,
            ..case(8, 1, 70, 1)
        },
        Case {
            window: Some(8),
            slots: Some(8),
            seed: 44,
            ..case(8, 4, 30, 1)
        },
    ];
    for v in variants(&g) {
        web_sys::console::log_1(&format!("attention decode: {v:?}").into());
        for c in &decode {
            run_case(&g, v, c, false).await;
        }
        run_stream(&g, v, 34, 45).await;
    }
}

// ---- quantized matvec / matmul (owner: matvec). The reference dequantizes with ggml's
// formulas (dequantize_row_q8_0 / _q4_K / _q6_K), written here in plain Rust.

fn f16_at(b: &[u8], o: usize) -> f32 {
    half::f16::from_le_bytes([b[o], b[o + 1]]).to_f32()
}

/// Random Q8_0, Q4_K or Q6_K rows (sane f16 scales, random everything else) and their
/// dequantization.
fn random_quant(
    ty: gemma_web::gguf::GgmlType,
    rows: usize,
    cols: usize,
    seed: u64,
) -> (Vec<u8>, Vec<f32>) {
    use gemma_web::gguf::GgmlType;
    let mut r = Rng::new(seed);
    let (qk, bytes, f16s): (usize, usize, &[usize]) = match ty {
        GgmlType::Q8_0 => (32, 34, &[0]),
        GgmlType::Q4K => (256, 144, &[0, 2]),
        GgmlType::Q6K => (256, 210, &[208]),
        _ => panic!("only Q8_0, Q4_K and Q6_K here"),
    };
    let mut data = r.bytes(rows * cols / qk * bytes);
    let mut w = Vec::with_capacity(rows * cols);
    for b in data.chunks_exact_mut(bytes) {
        for &o in f16s {
            let v = half::f16::from_f32(r.uniform(-0.05, 0.05));
            b[o..o + 2].copy_from_slice(&v.to_le_bytes());
        }
        match ty {
            GgmlType::Q8_0 => {
                let d = f16_at(b, 0);
                w.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
            }
            GgmlType::Q6K => {
                // ql u8[128] @0, qh u8[64] @128, scales i8[16] @192, d @208; each half of 128
                // weights takes 64 ql bytes, 32 qh bytes and 8 scales.
                let d = f16_at(b, 208);
                let mut y = [0f32; 256];
                for half in 0..2 {
                    let (ql, qh) = (&b[64 * half..], &b[128 + 32 * half..]);
                    let sc = |i: usize| f32::from(b[192 + 8 * half + i] as i8);
                    for l in 0..32 {
                        let is = l / 16;
                        let q = [
                            (ql[l] & 0xf) | ((qh[l] & 3) << 4),
                            (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4),
                            (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                            (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
                        ];
                        for (k, &v) in q.iter().enumerate() {
                            y[128 * half + l + 32 * k] = d * sc(is + 2 * k) * (f32::from(v) - 32.0);
                        }
                    }
                }
                w.extend_from_slice(&y);
            }
            _ => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let sc = &b[4..16];
                let scale_min = |j: usize| -> (f32, f32) {
                    if j < 4 {
                        (f32::from(sc[j] & 63), f32::from(sc[j + 4] & 63))
                    } else {
                        (
                            f32::from((sc[j + 4] & 0xf) | ((sc[j - 4] >> 6) << 4)),
                            f32::from((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4)),
                        )
                    }
                };
                for c in 0..4 {
                    let q = &b[16 + 32 * c..16 + 32 * (c + 1)];
                    let (s1, m1) = scale_min(2 * c);
                    let (s2, m2) = scale_min(2 * c + 1);
                    w.extend(q.iter().map(|&v| d * s1 * f32::from(v & 0xf) - dmin * m1));
                    w.extend(q.iter().map(|&v| d * s2 * f32::from(v >> 4) - dmin * m2));
                }
            }
        }
    }
    (data, w)
}

fn dot_rows(w: &[f32], x: &[f32], cols: usize) -> Vec<f32> {
    w.chunks(cols)
        .map(|row| {
            row.iter()
                .zip(x)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>() as f32
        })
        .collect()
}

#[wasm_bindgen_test]
async fn web_matvec_q4_k_q6_k_and_q8_0() {
    use gemma_web::gguf::GgmlType;
    use gemma_web::gpu::matvec::{matvec_shaped, MatvecShape, XBinding};
    let g = gpu().await;
    // Rows not a multiple of any layout's rows per workgroup; an odd number of blocks per row;
    // Q8_0 rows of 7 * 34 bytes so blocks sit at both 2-byte alignments; pieces of 20 rows.
    for (ty, rows, cols, seed) in [
        (GgmlType::Q4K, 37usize, 3 * 256usize, 11u64),
        (GgmlType::Q8_0, 45, 7 * 32, 12),
        (GgmlType::Q6K, 29, 3 * 256, 13),
    ] {
        let (data, w) = random_quant(ty, rows, cols, seed);
        let x = Rng::new(seed + 100).vec_uniform(cols, -1.0, 1.0);
        let want = dot_rows(&w, &x, cols);
        let stride = (cols / ty.block_len() as usize * ty.block_bytes() as usize).div_ceil(4) * 4;
        let wt = g
            .upload_weight(
                "w",
                ty,
                rows as u32,
                cols as u32,
                &data,
                Some((20 * stride) as u64),
            )
            .await
            .unwrap();
        assert_eq!(wt.pieces.len(), rows.div_ceil(20));
        // x as plain storage, and as an activation buffer (a uniform on the CPU layout).
        let xs = g.storage_f32("x", &x).unwrap();
        let xa = g.activations("x", (cols * 4) as u64).unwrap();
        g.write(&xa, 0, bytemuck::cast_slice(&x)).unwrap();
        for (shape, xb) in [
            (MatvecShape::CPU, &xs),
            (MatvecShape::CPU, &xa),
            (MatvecShape::GPU, &xs),
        ] {
            let yb = g.storage("y", (rows * 4) as u64).unwrap();
            let ops = matvec_shaped(&g, &wt, xb, &yb, 0, shape).await.unwrap();
            g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
            let got = g.read_f32(&yb, rows).await.unwrap();
            let binding = XBinding::choose(&g, xb, cols as u32, shape);
            assert_close(
                &format!("web matvec {ty} {rows}x{cols} {shape:?} x {binding:?}"),
                &want,
                &got,
                1e-3,
                1e-4,
            );
        }
    }
}

#[wasm_bindgen_test]
async fn web_matmul_q4_k() {
    use gemma_web::gguf::GgmlType;
    use gemma_web::gpu::matvec::Matmul;
    let g = gpu().await;
    let (rows, cols, n) = (70usize, 256usize, 5usize);
    let (data, w) = random_quant(GgmlType::Q4K, rows, cols, 21);
    let x = Rng::new(22).vec_uniform(n * cols, -1.0, 1.0);
    let want: Vec<f32> = x
        .chunks(cols)
        .flat_map(|xt| dot_rows(&w, xt, cols))
        .collect();
    let wt = g
        .upload_weight("w", GgmlType::Q4K, rows as u32, cols as u32, &data, None)
        .await
        .unwrap();
    let xb = g.storage_f32("x", &x).unwrap();
    let yb = g.storage("y", (n * rows * 4) as u64).unwrap();
    let mut mm = Matmul::new(&g, &wt, &xb, &yb, n as u32, 0, rows as u32)
        .await
        .unwrap();
    let ops = mm.set_n(&g, n as u32).unwrap();
    g.run(&ops.iter().collect::<Vec<_>>()).unwrap();
    let got = g.read_f32(&yb, n * rows).await.unwrap();
    assert_close(
        &format!("web matmul Q4_K {rows}x{cols} n {n}"),
        &want,
        &got,
        1e-3,
        1e-4,
    );
}

/// The CPU engine's Q4_K / Q6_K products in wasm (simd128 unpacking and dot products): within
/// 1e-3 of the sum of |w x| of the exact ones (`gemma_web::cpu::kquant::worst_relative_error`).
#[wasm_bindgen_test]
fn web_cpu_kquant_products_are_nearly_exact() {
    let e = gemma_web::cpu::kquant::worst_relative_error(5).unwrap();
    assert!(e <= 1e-3, "worst error {e:e} of the sum of |w x|");
}
