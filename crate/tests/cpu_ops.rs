//! The CPU engine's tensor math (`gemma_web::cpu`) against independent references: quantized
//! products against candle's dequantization with f64 dot products, GELU against candle's,
//! the rest against plain f64 formulas written here. Odd sizes throughout (rows and head
//! widths that are not multiples of any SIMD width, windows that wrap the cache ring).
#![cfg(not(target_arch = "wasm32"))]

mod quant_common;

use candle_core::{Device, Tensor};
use gemma_web::cpu::{attend, ops, AttentionShape, KvCache, QMatrix, QMatrixBuilder};
use gemma_web::testing::{assert_close, rope_reference_scaled, worst_product_error, Rng};
use quant_common::{matmul_ref, qtype, random_vec, QMatrix as TestMatrix, TYPES};

/// Every weight type, valid quantizer output and random bit patterns, one token and a block of
/// five: y = x W^T against candle's dequantized W in f64. The activations are rounded to 8 bits
/// per block of 32 in candle's kernels (ggml's Q8_0 / Q8_K; f16 / bf16 for those weights) and
/// to 16 bits in ours, so the tolerance of a row is the sum of its |w| times the largest |x|
/// over 128.
#[test]
fn quantized_matmul_all_types() {
    for ty in TYPES {
        // candle's Q4_1 and Q5_1 dot products take blocks in pairs; odd counts are refused.
        let paired = matches!(ty.name, "q4_1" | "q5_1");
        if paired {
            assert!(QMatrixBuilder::new(ty.ggml, 3, 7 * ty.block_len as u64).is_err());
        }
        let blocks = match (ty.block_len, paired) {
            (256, _) => 3,
            (_, true) => 6,
            _ => 7,
        };
        let cols = blocks * ty.block_len;
        for seed in 0..2u64 {
            let rows = [67, 29][seed as usize];
            let t = if seed == 0 {
                TestMatrix::quantized(*ty, rows, cols, seed)
            } else {
                TestMatrix::random_blocks(*ty, rows, cols, seed)
            };
            let m = QMatrix::from_bytes(ty.ggml, rows as u64, cols as u64, &t.gguf).unwrap();
            for n in [1usize, 5] {
                let x = random_vec(n * cols, seed ^ 0x5eed ^ n as u64);
                let want = matmul_ref(&t.dequant, rows, cols, &x, n);
                let mut got = vec![f32::NAN; n * rows];
                m.matmul(&x, n, &mut got).unwrap();
                let worst_row: f32 = (0..rows)
                    .map(|r| {
                        t.dequant[r * cols..(r + 1) * cols]
                            .iter()
                            .map(|w| w.abs())
                            .sum()
                    })
                    .fold(0f32, f32::max);
                let tol = worst_row / 128.0 + 1e-5;
                let name = format!("{} {rows}x{cols} seed {seed} tokens {n}", ty.name);
                assert_close(&name, &want, &got, tol, 1e-3);
                // The threaded wasm build's row split: candle's kernel unsplit is within the
                // tolerance, and split in pieces (ragged last ones, 1-3 row tails) it gives the
                // same bits.
                let mut whole = vec![f32::NAN; n * rows];
                m.matmul_split(&x, n, &mut whole, 1).unwrap();
                assert_close(&format!("{name} unsplit"), &want, &whole, tol, 1e-3);
                for pieces in [2, 5, 64] {
                    let mut split = vec![f32::NAN; n * rows];
                    m.matmul_split(&x, n, &mut split, pieces).unwrap();
                    let same = whole
                        .iter()
                        .zip(&split)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{name} split in {pieces}: {split:?} vs {whole:?}");
                }
            }
            // Rows dequantize exactly as candle does (the embedding lookup).
            let mut row = vec![f32::NAN; cols];
            for r in [0, rows / 2, rows - 1] {
                m.row(r, &mut row).unwrap();
                assert_eq!(
                    row,
                    t.dequant[r * cols..(r + 1) * cols],
                    "{} row {r}",
                    ty.name
                );
            }
        }
    }
}

/// The check the threaded wasm build runs in the browser (`splitMatmulMismatches`) passes here.
#[test]
fn split_matmul_check_passes() {
    for pieces in [2, 3, 8] {
        assert_eq!(gemma_web::cpu::quant::split_mismatches(pieces).unwrap(), 0);
    }
}

/// The 8-bit rows (Q8_0, and Q5_0 widened) and the Q4_K / Q6_K products (`cpu/kquant.rs`) take
/// 16-bit activations: their products are within 1e-4 of the sum of |w x| of the exact ones
/// (candle's dequantized weights, f64), where 8-bit activations (ggml's, candle's kernels) miss
/// by up to about 1e-2. Row counts around the 64- and 32-row tasks; one token and several;
/// activations with outliers, as a transformer's have.
#[test]
fn products_with_16_bit_activations_are_nearly_exact() {
    use candle_core::quantized::{GgmlDType, QTensor};
    for (name, dt, block) in [
        ("q8_0", GgmlDType::Q8_0, 32usize),
        ("q5_0", GgmlDType::Q5_0, 32),
        ("q4_k", GgmlDType::Q4K, 256),
        ("q6_k", GgmlDType::Q6K, 256),
    ] {
        for (rows, blocks) in [(1usize, 1usize), (37, 5), (131, 3)] {
            let cols = blocks * block;
            let w = random_vec(rows * cols, rows as u64);
            let wt = Tensor::from_slice(&w, (rows, cols), &Device::Cpu).unwrap();
            let q = QTensor::quantize(&wt, dt).unwrap();
            let wd: Vec<f32> = q
                .dequantize(&Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let bytes = q.data().unwrap().to_vec();
            let ours =
                QMatrix::from_bytes(qtype(name).ggml, rows as u64, cols as u64, &bytes).unwrap();
            for m in [1usize, 6] {
                let mut x = random_vec(m * cols, 7 + m as u64);
                for i in (3..x.len()).step_by(61) {
                    x[i] *= 30.0;
                }
                let mut got = vec![f32::NAN; m * rows];
                ours.matmul(&x, m, &mut got).unwrap();
                let e = worst_product_error(&wd, &x, &got, rows, cols, m);
                assert!(
                    e <= 1e-4,
                    "{name} {rows}x{cols} tokens {m}: worst error {e:e} of the sum of |w x|"
                );
            }
        }
    }
}

/// Streaming in slices gives the same matrix; too few or too many bytes are errors, not panics.
#[test]
fn matrix_streams_and_checks_its_length() {
    let ty = &qtype("q5_0");
    let t = TestMatrix::random_blocks(*ty, 9, 2 * ty.block_len, 3);
    let mut b = QMatrixBuilder::new(ty.ggml, 9, 2 * ty.block_len as u64).unwrap();
    for part in t.gguf.chunks(7) {
        b.push(part).unwrap();
    }
    let m = b.finish().unwrap();
    let whole = QMatrix::from_bytes(ty.ggml, 9, 2 * ty.block_len as u64, &t.gguf).unwrap();
    let x = random_vec(2 * ty.block_len, 1);
    let (mut a, mut b2) = (vec![0f32; 9], vec![0f32; 9]);
    m.matmul(&x, 1, &mut a).unwrap();
    whole.matmul(&x, 1, &mut b2).unwrap();
    assert_eq!(a, b2);

    let short = QMatrix::from_bytes(ty.ggml, 9, 2 * ty.block_len as u64, &t.gguf[1..]);
    assert!(short.is_err());
    let mut long = t.gguf.clone();
    long.push(0);
    assert!(QMatrix::from_bytes(ty.ggml, 9, 2 * ty.block_len as u64, &long).is_err());
    // A row that is not whole blocks.
    assert!(QMatrixBuilder::new(ty.ggml, 9, ty.block_len as u64 + 1).is_err());
    // Too small an output.
    let mut y = vec![0f32; 8];
    assert!(m.matmul(&x, 1, &mut y).is_err());
}

fn rms_ref(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let d = w.len();
    x.chunks(d)
        .flat_map(|r| {
            let ms = r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / d as f64;
            let s = 1.0 / (ms + f64::from(eps)).sqrt();
            r.iter()
                .zip(w)
                .map(move |(&v, &g)| (f64::from(v) * s * f64::from(g)) as f32)
        })
        .collect()
}

#[test]
fn norms_residuals_and_activations() {
    let mut rng = Rng::new(4);
    let (rows, d) = (3, 37);
    // Residual-stream magnitudes of the real model reach several hundred.
    let x: Vec<f32> = rng.vec_uniform(rows * d, -300.0, 300.0);
    let w = rng.vec_uniform(d, 0.5, 1.5);
    let eps = 1e-6;
    let want = rms_ref(&x, &w, eps);

    let mut y = vec![0f32; rows * d];
    ops::rmsnorm(&x, &w, eps, &mut y);
    assert_close("rmsnorm", &want, &y, 1e-5, 1e-5);
    let mut z = x.clone();
    ops::rmsnorm_in_place(&mut z, &w, eps);
    assert_close("rmsnorm in place", &want, &z, 1e-5, 1e-5);

    let h0 = rng.vec_uniform(rows * d, -2.0, 2.0);
    let mut h = h0.clone();
    ops::add_rmsnorm(&mut h, &x, &w, eps);
    let want_h: Vec<f32> = h0.iter().zip(&want).map(|(a, b)| a + b).collect();
    assert_close("h + rmsnorm(x)", &want_h, &h, 1e-5, 1e-5);
    let mut h = h0.clone();
    ops::add(&mut h, &x);
    let want_add: Vec<f32> = h0.iter().zip(&x).map(|(a, b)| a + b).collect();
    assert_eq!(h, want_add);

    // GELU (tanh approximation) against candle's.
    let g = rng.vec_uniform(101, -12.0, 12.0);
    let u = rng.vec_uniform(101, -2.0, 2.0);
    let gelu = Tensor::from_slice(&g, 101, &Device::Cpu)
        .unwrap()
        .gelu()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want: Vec<f32> = gelu.iter().zip(&u).map(|(a, b)| a * b).collect();
    let mut got = g.clone();
    ops::gelu_mul(&mut got, &u);
    assert_close("gelu_tanh(gate) * up", &want, &got, 1e-5, 1e-5);

    // Soft-cap.
    let mut s = rng.vec_uniform(50, -200.0, 200.0);
    let want: Vec<f32> = s
        .iter()
        .map(|&v| (30.0 * (f64::from(v) / 30.0).tanh()) as f32)
        .collect();
    ops::softcap(&mut s, 30.0);
    assert_close("softcap", &want, &s, 1e-5, 1e-6);
}

#[test]
fn rope_matches_the_formula() {
    let mut rng = Rng::new(8);
    let (heads, d) = (3, 18);
    // The last case: linear RoPE scaling by 8 (Gemma 3 4B+ global layers).
    for (pos, base, factor) in [
        (0u32, 10_000f32, 1.0f32),
        (7, 10_000.0, 1.0),
        (4099, 1e6, 1.0),
        (40_999, 1e6, 8.0),
    ] {
        let x = rng.vec_uniform(heads * d, -2.0, 2.0);
        let want = rope_reference_scaled(&x, &[pos], heads, d, f64::from(base), f64::from(factor));
        let mut got = x.clone();
        ops::rope(&mut got, pos, &ops::rope_inv_freq(base, d, 1.0 / factor));
        assert_close(&format!("rope pos {pos}"), &want, &got, 1e-5, 1e-5);
    }
}

#[test]
fn argmax_and_top_k() {
    let x = [0.5f32, 3.0, f32::NAN, 3.0, -1.0, 2.0];
    assert_eq!(ops::argmax(&x), 1);
    assert_eq!(ops::top_k(&x, 3), vec![(1, 3.0), (3, 3.0), (5, 2.0)]);
    assert_eq!(ops::top_k(&x, 10).len(), 5);
    let mut rng = Rng::new(2);
    let v = rng.vec_uniform(1000, -5.0, 5.0);
    let mut sorted: Vec<(u32, f32)> = v.iter().enumerate().map(|(i, &x)| (i as u32, x)).collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    assert_eq!(ops::top_k(&v, 64), sorted[..64].to_vec());
    assert_eq!(ops::argmax(&v), sorted[0].0);
}

/// Plain attention over every key/value kept in full: query at position i sees key j when
/// j <= i and (no window or i - j < window).
fn attention_ref(
    s: &AttentionShape,
    q: &[f32],
    k_all: &[f32],
    v_all: &[f32],
    pos: usize,
    n: usize,
) -> Vec<f32> {
    let (nh, hd, kvd) = (s.n_heads, s.head_dim, s.kv_dim());
    let group = nh / s.n_kv_heads;
    let mut out = vec![0f32; n * nh * hd];
    for t in 0..n {
        let i = pos + t;
        for h in 0..nh {
            let qh = &q[(t * nh + h) * hd..][..hd];
            let kvh = (h / group) * hd;
            let keys: Vec<usize> = (0..=i)
                .filter(|&j| s.window.is_none_or(|w| i - j < w as usize))
                .collect();
            let scores: Vec<f64> = keys
                .iter()
                .map(|&j| {
                    let kj = &k_all[j * kvd + kvh..][..hd];
                    let dot: f64 = qh
                        .iter()
                        .zip(kj)
                        .map(|(&a, &b)| f64::from(a) * f64::from(b))
                        .sum();
                    let sc = dot * f64::from(s.scale);
                    match s.softcap {
                        Some(c) => f64::from(c) * (sc / f64::from(c)).tanh(),
                        None => sc,
                    }
                })
                .collect();
            let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|x| (x - m).exp()).sum();
            for e in 0..hd {
                let acc: f64 = keys
                    .iter()
                    .zip(&scores)
                    .map(|(&j, &sc)| (sc - m).exp() / total * f64::from(v_all[j * kvd + kvh + e]))
                    .sum();
                out[(t * nh + h) * hd + e] = acc as f32;
            }
        }
    }
    out
}

/// Blocks of tokens through a cache: a sliding window whose ring wraps several times (soft-cap,
/// grouped heads, a head width that is not a multiple of 8), and a long global cache whose
/// blocks take the multi-threaded path.
#[test]
fn attention_over_the_cache() {
    let cases = [
        // (heads, kv heads, head_dim, window, softcap, block, total tokens)
        (
            4usize,
            2usize,
            12usize,
            Some(5u32),
            Some(3.0f32),
            3usize,
            20usize,
        ),
        (3, 1, 9, None, None, 4, 11),
        (4, 1, 16, None, None, 64, 150),
        (2, 2, 8, Some(40), None, 64, 150),
    ];
    for (ci, &(nh, nkv, hd, window, softcap, block, total)) in cases.iter().enumerate() {
        let s = AttentionShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap,
            window,
        };
        let mut rng = Rng::new(ci as u64);
        let k_all = rng.vec_uniform(total * s.kv_dim(), -2.0, 2.0);
        let v_all = rng.vec_uniform(total * s.kv_dim(), -2.0, 2.0);
        let q_all = rng.vec_uniform(total * nh * hd, -2.0, 2.0);
        let slots = s.slots_needed(total as u32, block as u32);
        if window.is_some() {
            assert!(slots < total, "case {ci}: the ring must wrap");
        }
        let mut cache = KvCache::new(&s, slots);
        let mut pos = 0;
        while pos < total {
            let n = block.min(total - pos);
            let kv = |a: &[f32]| a[pos * s.kv_dim()..(pos + n) * s.kv_dim()].to_vec();
            cache.store(pos as u32, &kv(&k_all), &kv(&v_all));
            let q = &q_all[pos * nh * hd..(pos + n) * nh * hd];
            let mut out = vec![f32::NAN; n * nh * hd];
            attend(&s, &cache, q, pos as u32, &mut out);
            let want = attention_ref(&s, q, &k_all, &v_all, pos, n);
            assert_close(
                &format!("case {ci} block at {pos}"),
                &want,
                &out,
                1e-5,
                1e-4,
            );
            pos += n;
        }
    }
}
