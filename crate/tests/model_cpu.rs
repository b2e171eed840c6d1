//! The CPU engine (`CpuModel`) against the GPU engine (lavapipe) and the independent references:
//! on tiny random Gemma 1, 2 and 3 models the same greedy tokens as the GPU engine through the
//! shared `Session`, and logits close to candle's full-precision models at every position; on
//! the real Gemma 3 270M llama.cpp's greedy tokens and top-5 and the GPU engine's greedy tokens.
#![cfg(not(target_arch = "wasm32"))]

mod reference;

use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::config::Arch;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use gemma_web::model::{
    CpuModel, Engine, FileSource, GenerateOptions, Head, Model, ModelOptions, Output,
    SamplingParams, Session,
};
use gemma_web::Error;
use reference::{HAIKU_PROMPT, LLAMA_CPP_GREEDY, LLAMA_CPP_TOP5};

fn nmse(reference: &[f32], ours: &[f32]) -> f64 {
    assert_eq!(reference.len(), ours.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&r, &o) in reference.iter().zip(ours) {
        assert!(o.is_finite(), "non-finite logit {o}");
        num += (f64::from(r) - f64::from(o)).powi(2);
        den += f64::from(r).powi(2);
    }
    num / den.max(1e-30)
}

fn greedy(max_tokens: u32, stop_ids: Vec<u32>) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop_ids,
    }
}

fn load_cpu(src: &mut impl gemma_web::model::ByteSource, opts: &ModelOptions) -> CpuModel {
    pollster::block_on(CpuModel::load(src, opts, &mut |_, _| {})).expect("load on the CPU")
}

fn load_gpu(src: &mut impl gemma_web::model::ByteSource, opts: &ModelOptions) -> Model {
    let gpu = pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu");
    pollster::block_on(Model::load(gpu, src, opts, &mut |_, _| {})).expect("load")
}

const STEPS: u32 = 24;

/// One tiny model: the CPU engine's logits at every prompt position (prefill blocks of
/// `chunk`) within NMSE 5e-3 of candle's full-precision model (the CPU engine rounds
/// activations to 8 bits before each product, as llama.cpp does), the GPU engine's top-1 at
/// every prompt position, and greedy tokens through the `Session` identical to the GPU
/// engine's.
fn check(name: &str, spec: RandomGemmaSpec, prompt_len: usize, chunk: u32) {
    let bytes = random_gemma_bytes(&spec).expect("write model");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.gguf"));
    std::fs::write(&path, &bytes).expect("write file");
    let opts = ModelOptions {
        context_len: Some(64),
        prefill_chunk: chunk,
        ..ModelOptions::default()
    };
    let mut rng = gemma_web::testing::Rng::new(spec.seed ^ 7);
    let ids: Vec<u32> = (0..prompt_len)
        .map(|_| 2 + rng.below(spec.vocab - 2))
        .collect();

    let mut cpu = load_cpu(&mut &bytes[..], &opts);
    let mut reference =
        reference::load_reference_with(&path, prompt_len + 1, reference::RefMode::Decode);
    let want = reference.logits_all(&ids);
    let mut worst = 0f64;
    pollster::block_on(cpu.score(&ids, 0, &mut |i, got| {
        let e = nmse(&want[i], got);
        worst = worst.max(e);
        assert!(e <= 5e-3, "{name}: position {i}: NMSE {e:.3e}");
    }))
    .expect("score");
    eprintln!("{name}: CPU engine vs reference, worst NMSE {worst:.2e}");

    // Teacher-forced: the GPU engine's top-1 at every position of the prompt, wherever its
    // top two are not a near-tie (random weights give spread logits; greedy decoding of them
    // soon repeats one token, so this is the comparison with teeth).
    let mut gpu = load_gpu(&mut &bytes[..], &opts);
    let mut gpu_logits = Vec::new();
    pollster::block_on(gpu.score(&ids, 0, &mut |_, l| gpu_logits.push(l.to_vec()))).unwrap();
    let (mut compared, mut distinct) = (0, std::collections::BTreeSet::new());
    pollster::block_on(cpu.score(&ids, 0, &mut |i, got| {
        let want = &gpu_logits[i];
        if reference::argmax_margin(want) >= 0.01 {
            compared += 1;
            distinct.insert(reference::argmax(want));
            assert_eq!(
                reference::argmax(got),
                reference::argmax(want),
                "{name}: position {i}: CPU vs GPU top-1"
            );
        }
    }))
    .unwrap();
    eprintln!(
        "{name}: top-1 equal at {compared} of {prompt_len} positions ({} distinct)",
        distinct.len()
    );
    assert!(compared + 1 >= prompt_len && distinct.len() > 1);

    let run = |engine: Engine| {
        let mut session = Session::new(engine);
        let g = pollster::block_on(session.generate(&ids, &greedy(STEPS, vec![]), &mut |_| true))
            .expect("generate");
        g.generated_ids
    };
    let on_cpu = run(Engine::Cpu(cpu));
    let on_gpu = run(Engine::Gpu(gpu));
    eprintln!("{name}: greedy {on_cpu:?}");
    assert_eq!(on_cpu.len(), STEPS as usize);
    assert_eq!(on_cpu, on_gpu, "{name}: greedy tokens, CPU vs GPU engine");
}

#[test]
fn tiny_gemma3_window_cpu_vs_gpu() {
    let c = reference::tiny_case("gemma3");
    check(c.name, c.spec, c.prompt_len, c.chunk);
}

#[test]
fn tiny_gemma1_cpu_vs_gpu() {
    let c = reference::tiny_case("gemma1");
    check(c.name, c.spec, c.prompt_len, c.chunk);
}

#[test]
fn tiny_gemma2_softcaps_cpu_vs_gpu() {
    let c = reference::tiny_case("gemma2");
    check(c.name, c.spec, c.prompt_len, c.chunk);
}

/// Bad input is a typed error, never a panic: a truncated file, a block past the context,
/// a token outside the vocabulary.
#[test]
fn bad_input_is_a_typed_error() {
    let bytes = random_gemma_bytes(&RandomGemmaSpec::tiny(Arch::Gemma3)).expect("write model");
    let opts = ModelOptions {
        context_len: Some(16),
        prefill_chunk: 4,
        ..ModelOptions::default()
    };
    let cut = &bytes[..bytes.len() - 1000];
    let r = pollster::block_on(CpuModel::load(&mut &cut[..], &opts, &mut |_, _| {}));
    assert!(matches!(r, Err(Error::BadModel(_))), "{r:?}");

    let mut m = load_cpu(&mut &bytes[..], &opts);
    let r = pollster::block_on(m.prefill(&[5; 17], 0, Head::Argmax));
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    let r = pollster::block_on(m.forward_decode(512, 0, Head::Argmax));
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    let r = pollster::block_on(m.forward_decode(5, 16, Head::Argmax));
    assert!(matches!(r, Err(Error::Unsupported(_))), "{r:?}");
    // Still usable afterwards.
    let r = pollster::block_on(m.prefill(&[5; 16], 0, Head::Argmax));
    assert!(matches!(r, Ok(Output::Argmax(_))), "{r:?}");
}

/// The real Gemma 3 270M: llama.cpp's top-5 at the first generated position (logits within
/// 0.7, GEMMA.md), llama.cpp's greedy tokens through the session and the same tokens as the
/// GPU engine, and a second chat turn that reuses the cache like a fresh run of the whole
/// conversation.
#[test]
fn gemma3_270m_cpu_matches_llama_cpp_and_gpu() {
    let Some(path) = reference::real_model() else {
        return;
    };
    let opts = ModelOptions {
        context_len: Some(128),
        ..ModelOptions::default()
    };
    let mut cpu = load_cpu(&mut FileSource::open(&path).unwrap(), &opts);
    let top = match pollster::block_on(cpu.prefill(&HAIKU_PROMPT, 0, Head::TopK)).unwrap() {
        Output::TopK(t) => t,
        o => panic!("{o:?}"),
    };
    eprintln!(
        "top-5 CPU {:?}\ntop-5 llama.cpp {LLAMA_CPP_TOP5:?}",
        &top[..5]
    );
    let ids: Vec<u32> = top.iter().take(5).map(|p| p.0).collect();
    let want: Vec<u32> = LLAMA_CPP_TOP5.iter().map(|p| p.0).collect();
    assert_eq!(ids, want, "top-5 ids");
    for ((id, got), (_, want)) in top.iter().zip(LLAMA_CPP_TOP5) {
        assert!(
            (got - want).abs() <= 0.7,
            "token {id}: {got} vs llama.cpp {want}"
        );
    }

    let opts10 = greedy(10, vec![1, 106]);
    let mut session = Session::new(cpu);
    let g = pollster::block_on(session.generate(&HAIKU_PROMPT, &opts10, &mut |_| true)).unwrap();
    eprintln!(
        "CPU greedy {:?}: prefill {:.1} tok/s, decode {:.1} tok/s",
        g.generated_ids,
        g.prefill_tok_s(),
        g.decode_tok_s()
    );
    assert_eq!(g.generated_ids, LLAMA_CPP_GREEDY);

    let turn2: Vec<u32> = vec![
        106, 107, 105, 2364, 107, 6974, 496, 678, 20517, 106, 107, 105, 4368, 107,
    ];
    let opts8 = greedy(8, vec![1, 106]);
    let a = pollster::block_on(session.generate(&turn2, &opts8, &mut |_| true)).unwrap();
    let mut all: Vec<u32> = HAIKU_PROMPT.to_vec();
    all.extend_from_slice(&LLAMA_CPP_GREEDY);
    all.extend_from_slice(&turn2);
    session.reset();
    let b = pollster::block_on(session.generate(&all, &opts8, &mut |_| true)).unwrap();
    assert_eq!(
        a.generated_ids, b.generated_ids,
        "cached turn vs whole conversation"
    );

    // The GPU engine, fed the same prompt, gives the same tokens.
    let mut gpu = Session::new(load_gpu(&mut FileSource::open(&path).unwrap(), &opts));
    let c = pollster::block_on(gpu.generate(&HAIKU_PROMPT, &opts10, &mut |_| true)).unwrap();
    assert_eq!(g.generated_ids, c.generated_ids, "CPU vs GPU engine");
}
