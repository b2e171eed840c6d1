//! Linear RoPE scaling on Gemma 3's global layers (4B, 12B, 27B: factor 8) on the GPU engine,
//! against a Gemma 3 forward pass written out in this file in f64 from the formulas of GEMMA.md,
//! on weights candle dequantizes. candle's gemma3 has no RoPE scaling, so it cannot check the
//! scaled model itself; it checks this file's forward pass instead, on the same model unscaled.
#![cfg(not(target_arch = "wasm32"))]

mod reference;

use std::collections::HashMap;
use std::path::Path;

use gemma_web::gguf::read_header_from_file;
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::config::Arch;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use gemma_web::model::{Head, Model, ModelOptions, Output};

const FACTOR: f64 = 8.0;

/// A row-major matrix (HF shape: out x in).
struct Mat {
    cols: usize,
    w: Vec<f64>,
}

impl Mat {
    fn mul(&self, x: &[f64]) -> Vec<f64> {
        assert_eq!(x.len(), self.cols);
        self.w
            .chunks_exact(self.cols)
            .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
            .collect()
    }
}

/// Every tensor of the file, dequantized by candle, by GGUF name.
fn weights(path: &Path) -> HashMap<String, Mat> {
    let h = read_header_from_file(path).unwrap();
    let mut file = std::fs::File::open(path).unwrap();
    h.tensors
        .iter()
        .map(|t| {
            let w = reference::dequantize_tensor(&mut file, t).unwrap();
            let w: Vec<f32> = w.flatten_all().unwrap().to_vec1().unwrap();
            let cols = t.dims[0] as usize;
            let m = Mat {
                cols,
                w: w.into_iter().map(f64::from).collect(),
            };
            (t.name.clone(), m)
        })
        .collect()
}

/// RMSNorm with a GGUF weight (Gemma's +1 already in it).
fn rmsnorm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * r * w).collect()
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
}

/// NeoX RoPE of one head in place: pair (i, i + d/2) turns by pos * base^(-2i/d).
fn rope(x: &mut [f64], pos: f64, base: f64) {
    let d = x.len();
    for i in 0..d / 2 {
        let (s, c) = (pos * base.powf(-2.0 * i as f64 / d as f64)).sin_cos();
        let (a, b) = (x[i], x[i + d / 2]);
        x[i] = a * c - b * s;
        x[i + d / 2] = a * s + b * c;
    }
}

/// Logits at every position of `ids` for the tiny Gemma 3 of `spec`: layers 0-4 slide (window,
/// RoPE base 1e4, positions as they are), layer 5 is global (base `spec.rope_base`, positions
/// divided by `factor`).
fn forward(
    spec: &RandomGemmaSpec,
    w: &HashMap<String, Mat>,
    ids: &[u32],
    factor: f64,
) -> Vec<Vec<f64>> {
    let (d, hd) = (spec.d_model as usize, spec.head_dim as usize);
    let (nh, nkv) = (spec.n_heads as usize, spec.n_kv_heads as usize);
    let eps = f64::from(spec.eps);
    let window = spec.sliding_window.unwrap() as usize;
    let v = |name: &str| -> &[f64] { &w[name].w };
    let embd = &w["token_embd.weight"];
    let mut xs: Vec<Vec<f64>> = ids
        .iter()
        .map(|&id| {
            let row = &embd.w[id as usize * d..(id as usize + 1) * d];
            row.iter().map(|x| x * (d as f64).sqrt()).collect()
        })
        .collect();
    for l in 0..spec.n_layers as usize {
        let p = |n: &str| format!("blk.{l}.{n}.weight");
        let global = l % 6 == 5;
        let (base, scale) = if global {
            (f64::from(spec.rope_base), 1.0 / factor)
        } else {
            (10_000.0, 1.0)
        };
        // Queries, keys and values of every position: q/k heads RMS-normed, then rotated.
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (t, x) in xs.iter().enumerate() {
            let xn = rmsnorm(x, v(&p("attn_norm")), eps);
            let mut q = w[&p("attn_q")].mul(&xn);
            let mut k = w[&p("attn_k")].mul(&xn);
            for head in q.chunks_exact_mut(hd) {
                let n = rmsnorm(head, v(&p("attn_q_norm")), eps);
                head.copy_from_slice(&n);
                rope(head, t as f64 * scale, base);
            }
            for head in k.chunks_exact_mut(hd) {
                let n = rmsnorm(head, v(&p("attn_k_norm")), eps);
                head.copy_from_slice(&n);
                rope(head, t as f64 * scale, base);
            }
            qs.push(q);
            ks.push(k);
            vs.push(w[&p("attn_v")].mul(&xn));
        }
        for (i, x) in xs.iter_mut().enumerate() {
            let mut attn = vec![0f64; nh * hd];
            for h in 0..nh {
                let kvh = h / (nh / nkv);
                let q = &qs[i][h * hd..(h + 1) * hd];
                let visible: Vec<usize> = (0..=i).filter(|&j| global || i - j < window).collect();
                let scores: Vec<f64> = visible
                    .iter()
                    .map(|&j| {
                        let k = &ks[j][kvh * hd..(kvh + 1) * hd];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (&j, e) in visible.iter().zip(&e) {
                    for c in 0..hd {
                        attn[h * hd + c] += e / sum * vs[j][kvh * hd + c];
                    }
                }
            }
            let o = rmsnorm(
                &w[&p("attn_output")].mul(&attn),
                v(&p("post_attention_norm")),
                eps,
            );
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let xn = rmsnorm(x, v(&p("ffn_norm")), eps);
            let gate = w[&p("ffn_gate")].mul(&xn);
            let up = w[&p("ffn_up")].mul(&xn);
            let hidden: Vec<f64> = gate
                .iter()
                .zip(&up)
                .map(|(g, u)| gelu_tanh(*g) * u)
                .collect();
            let y = rmsnorm(&w[&p("ffn_down")].mul(&hidden), v(&p("post_ffw_norm")), eps);
            x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        }
    }
    xs.iter()
        .map(|x| embd.mul(&rmsnorm(x, v("output_norm.weight"), eps)))
        .collect()
}

fn nmse(reference: &[f64], ours: &[f32]) -> f64 {
    assert_eq!(reference.len(), ours.len());
    let num: f64 = reference
        .iter()
        .zip(ours)
        .map(|(r, &o)| (r - f64::from(o)).powi(2))
        .sum();
    num / reference.iter().map(|r| r * r).sum::<f64>().max(1e-30)
}

#[test]
fn gemma3_global_layers_divide_positions_by_the_factor() {
    let unscaled = RandomGemmaSpec {
        seed: 11,
        ..RandomGemmaSpec::tiny(Arch::Gemma3)
    };
    let scaled = RandomGemmaSpec {
        rope_scaling: Some(FACTOR as f32),
        ..unscaled.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let bytes = random_gemma_bytes(&scaled).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let w = weights(&path);
    // Positions up to 20: the global layer's angles differ by up to 20 * (1 - 1/8) radians.
    let mut rng = gemma_web::testing::Rng::new(5);
    let ids: Vec<u32> = (0..21).map(|_| 2 + (rng.next_u64() % 500) as u32).collect();

    // This file's forward pass is Gemma 3: unscaled, it is candle's gemma3 on the same weights.
    let plain_path = dir.path().join("plain.gguf");
    std::fs::write(&plain_path, random_gemma_bytes(&unscaled).unwrap()).unwrap();
    let mut candle = reference::load_reference_with(&plain_path, 64, reference::RefMode::Decode);
    let candle_logits = candle.logits_all(&ids);
    let plain = forward(&unscaled, &w, &ids, 1.0);
    for (i, (c, f)) in candle_logits.iter().zip(&plain).enumerate() {
        let e = nmse(f, c);
        assert!(
            e <= 1e-8,
            "unscaled position {i}: candle vs this forward, NMSE {e:.3e}"
        );
    }
    // candle refuses the scaled file rather than run it unscaled.
    assert!(reference::try_load_reference(&path, 64, reference::RefMode::Decode).is_err());

    let want = forward(&scaled, &w, &ids, FACTOR);
    // Scaling matters here: without it the logits are far from the scaled ones.
    let far = nmse(
        &want[20],
        &plain[20].iter().map(|&x| x as f32).collect::<Vec<_>>(),
    );
    assert!(
        far > 1e-3,
        "scaled vs unscaled at position 20: NMSE {far:.3e}"
    );

    let gpu = pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu");
    let opts = ModelOptions {
        context_len: Some(64),
        prefill_chunk: 6,
        min_matmul_block: Some(2),
        ..Default::default()
    };
    let mut src: &[u8] = &bytes;
    let mut model =
        pollster::block_on(Model::load(gpu, &mut src, &opts, &mut |_, _| {})).expect("load");
    let mut worst = 0f64;
    // The prefill path at every position, then the decode path for the last few.
    pollster::block_on(model.score(&ids[..16], 0, &mut |i, got| {
        let e = nmse(&want[i], got);
        worst = worst.max(e);
        assert!(e <= 1e-4, "prefill position {i}: NMSE {e:.3e}");
    }))
    .expect("score");
    for (i, &id) in ids.iter().enumerate().skip(16) {
        let got = match pollster::block_on(model.forward_decode(id, i as u32, Head::Logits)) {
            Ok(Output::Logits(l)) => l,
            o => panic!("{o:?}"),
        };
        let e = nmse(&want[i], &got);
        worst = worst.max(e);
        assert!(e <= 1e-4, "decode position {i}: NMSE {e:.3e}");
    }
    eprintln!("scaled RoPE: NMSE worst {worst:.2e}, scaled vs unscaled {far:.2e}");
}
