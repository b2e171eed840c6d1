//! Tiny random-weight Gemma 1, 2 and 3 models (written by the GGUF writer) on the GPU engine
//! against the CPU reference (candle-transformers' full-precision gemma / gemma2 / gemma3 on the
//! same dequantized weights): logits NMSE at most 1e-4 at every position, through both the
//! prefill (blocks of odd sizes) and the decode path, and identical greedy tokens for 32 steps.
//! Gemma 1 and 2 also run with shader-f16 and subgroups enabled, as the CLI and the page run: on
//! lavapipe that is decode attention in the rows layout; on an f16 KV cache, against the same
//! full-precision reference.
#![cfg(not(target_arch = "wasm32"))]

mod reference;

use gemma_web::gpu::attention::KvDtype;
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::loader::LoadOptions;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use gemma_web::model::{Head, Model, ModelOptions, Output};

const STEPS: usize = 32;

fn nmse(reference: &[f32], ours: &[f32]) -> f64 {
    assert_eq!(reference.len(), ours.len());
    let mut num = 0f64;
    let mut den = 0f64;
    for (&r, &o) in reference.iter().zip(ours) {
        assert!(o.is_finite(), "non-finite logit {o}");
        num += (f64::from(r) - f64::from(o)).powi(2);
        den += f64::from(r).powi(2);
    }
    num / den.max(1e-30)
}

fn prompt(len: usize, vocab: u32, seed: u64) -> Vec<u32> {
    let mut rng = gemma_web::testing::Rng::new(seed);
    (0..len)
        .map(|_| 2 + (rng.next_u64() % u64::from(vocab - 2)) as u32)
        .collect()
}

fn check(name: &str, spec: RandomGemmaSpec, prompt_len: usize, chunk: u32, kv: KvDtype) {
    let gpu = pollster::block_on(Gpu::new(GpuOptions {
        allow_f16: kv == KvDtype::F16,
        allow_subgroups: kv == KvDtype::F16,
        ..GpuOptions::for_tests()
    }))
    .expect("gpu");
    if kv == KvDtype::F16 && !gpu.caps.f16 {
        eprintln!("{name}: the adapter has no shader-f16; the f16 KV cache is not tested here");
        return;
    }
    let bytes = random_gemma_bytes(&spec).expect("write model");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.gguf"));
    std::fs::write(&path, &bytes).expect("write file");
    let total = prompt_len + STEPS;
    let mut reference =
        reference::load_reference_with(&path, total + 1, reference::RefMode::Decode);

    let opts = ModelOptions {
        context_len: Some(64),
        prefill_chunk: chunk,
        // Every block through the matmul kernels, even on CPU adapters.
        min_matmul_block: Some(2),
        kv_cache: Some(kv),
        // Small pieces, so every matrix with more than a few rows is split.
        load: LoadOptions {
            max_piece_bytes: Some(40_000),
        },
    };
    let mut src: &[u8] = &bytes;
    let mut model =
        pollster::block_on(Model::load(gpu, &mut src, &opts, &mut |_, _| {})).expect("load");
    let ids = prompt(prompt_len, spec.vocab, spec.seed ^ 7);

    // Every position of the prompt through prefill blocks (score).
    let want = reference.logits_all(&ids);
    let mut worst = 0f64;
    pollster::block_on(model.score(&ids, 0, &mut |i, got| {
        let e = nmse(&want[i], got);
        worst = worst.max(e);
        assert!(e <= 1e-4, "{name}: prefill position {i}: NMSE {e:.3e}");
    }))
    .expect("score");
    eprintln!("{name}, {kv:?} cache: prefill NMSE worst {worst:.2e}");

    // Greedy decoding from a prefill, logits compared at every decode step.
    let mut next = match pollster::block_on(model.prefill(&ids, 0, Head::Argmax)).expect("prefill")
    {
        Output::Argmax(t) => t,
        o => panic!("{o:?}"),
    };
    let mut ref_logits = want.last().cloned().unwrap();
    let mut worst = 0f64;
    for step in 0..STEPS {
        let ref_next = reference::argmax(&ref_logits);
        assert_eq!(
            next,
            ref_next,
            "{name}: greedy step {step}: ours {next}, reference {ref_next} (margin {})",
            reference::argmax_margin(&ref_logits)
        );
        let pos = (prompt_len + step) as u32;
        ref_logits = reference.step(next);
        let got = match pollster::block_on(model.forward_decode(next, pos, Head::Logits)) {
            Ok(Output::Logits(l)) => l,
            o => panic!("{o:?}"),
        };
        let e = nmse(&ref_logits, &got);
        worst = worst.max(e);
        assert!(e <= 1e-4, "{name}: decode step {step}: NMSE {e:.3e}");
        next = reference::argmax(&got);
    }
    eprintln!("{name}, {kv:?} cache: decode NMSE worst {worst:.2e}");
}

#[test]
fn tiny_gemma3_gqa_window() {
    let c = reference::tiny_case("gemma3");
    check(c.name, c.spec, c.prompt_len, c.chunk, KvDtype::F32);
}

#[test]
fn tiny_gemma1_mqa_q4km() {
    let c = reference::tiny_case("gemma1");
    check(c.name, c.spec, c.prompt_len, c.chunk, KvDtype::F32);
}

#[test]
fn tiny_gemma2_gqa_softcaps() {
    let c = reference::tiny_case("gemma2");
    check(c.name, c.spec, c.prompt_len, c.chunk, KvDtype::F32);
}

#[test]
fn tiny_gemma1_f16_kv_cache() {
    let c = reference::tiny_case("gemma1");
    check(c.name, c.spec, c.prompt_len, c.chunk, KvDtype::F16);
}

#[test]
fn tiny_gemma2_f16_kv_cache() {
    let c = reference::tiny_case("gemma2");
    check(c.name, c.spec, c.prompt_len, c.chunk, KvDtype::F16);
}
