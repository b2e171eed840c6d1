//! The real Gemma 3 270M (Q4_K_M) on the GPU engine, against an independent llama.cpp run
//! (GEMMA.md) and against the CPU reference (candle-transformers' gemma3 on the dequantized
//! weights).
#![cfg(not(target_arch = "wasm32"))]

mod reference;

use std::path::PathBuf;

use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::{
    FileSource, GenerateOptions, Head, Model, ModelOptions, Output, SamplingParams, Session,
    StopReason,
};
use gemma_web::Error;

/// GEMMA.md: `<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n` with BOS.
const HAIKU_PROMPT: [u32; 17] = [
    2, 105, 2364, 107, 6974, 496, 678, 20517, 1003, 506, 5442, 236761, 106, 107, 105, 4368, 107,
];
/// llama.cpp's greedy continuation of HAIKU_PROMPT (GEMMA.md).
const LLAMA_CPP_GREEDY: [u32; 10] = [6974, 496, 678, 20517, 1003, 506, 5442, 236761, 217716, 107];
/// llama.cpp's top-5 logits at the first generated position (GEMMA.md).
const LLAMA_CPP_TOP5: [(u32, f32); 5] = [
    (6974, 9.147),
    (5986, 7.468),
    (818, 5.818),
    (236777, 5.377),
    (3048, 5.182),
];

fn real_model() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gemma-3-270m-q4_k_m.gguf");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("GEMMA_WEB_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: {} is absent and GEMMA_WEB_SKIP_MODEL_TESTS=1",
            path.display()
        );
        return None;
    }
    panic!(
        "{} is absent: run `make model` (or set GEMMA_WEB_SKIP_MODEL_TESTS=1 to skip)",
        path.display()
    );
}

fn load(path: &PathBuf, context: u32) -> Model {
    let gpu = pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu");
    let mut src = FileSource::open(path).expect("open");
    let opts = ModelOptions {
        context_len: Some(context),
        ..Default::default()
    };
    pollster::block_on(Model::load(gpu, &mut src, &opts, &mut |_, _| {})).expect("load")
}

fn greedy(max_tokens: u32) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop_ids: vec![1, 106],
    }
}

#[test]
fn gemma3_270m_matches_llama_cpp() {
    let Some(path) = real_model() else { return };
    let mut model = load(&path, 128);

    // First generated position: the top-5 ids in llama.cpp's order, logits within what the
    // f32-dequantized forward differs from llama.cpp by (GEMMA.md: 0.7 max).
    let top = match pollster::block_on(model.prefill(&HAIKU_PROMPT, 0, Head::TopK)).unwrap() {
        Output::TopK(t) => t,
        o => panic!("{o:?}"),
    };
    eprintln!(
        "top-5 ours {:?}\ntop-5 llama.cpp {LLAMA_CPP_TOP5:?}",
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

    // Greedy generation through the session (prefill, then one decode step per token).
    let mut session = Session::new(model);
    let g =
        pollster::block_on(session.generate(&HAIKU_PROMPT, &greedy(10), &mut |_| true)).unwrap();
    eprintln!(
        "greedy {:?}: prefill {:.1} tok/s, decode {:.1} tok/s",
        g.generated_ids,
        g.prefill_tok_s(),
        g.decode_tok_s()
    );
    assert_eq!(g.generated_ids, LLAMA_CPP_GREEDY);
    assert_eq!(g.stop, StopReason::MaxTokens);

    // A second turn reuses the cache: the same greedy answer as a fresh session fed the whole
    // conversation at once.
    let turn2: Vec<u32> = vec![
        106, 107, 105, 2364, 107, 6974, 496, 678, 20517, 106, 107, 105, 4368, 107,
    ];
    let a = pollster::block_on(session.generate(&turn2, &greedy(8), &mut |_| true)).unwrap();
    let mut all: Vec<u32> = HAIKU_PROMPT.to_vec();
    all.extend_from_slice(&LLAMA_CPP_GREEDY);
    all.extend_from_slice(&turn2);
    assert_eq!(
        session.history().len() + 1,
        all.len() + a.generated_ids.len()
    );
    session.reset();
    let b = pollster::block_on(session.generate(&all, &greedy(8), &mut |_| true)).unwrap();
    assert_eq!(
        a.generated_ids, b.generated_ids,
        "cached turn vs whole conversation"
    );

    // Past the context: a typed error, before anything runs.
    session.reset();
    let long = vec![2u32; 129];
    match pollster::block_on(session.generate(&long, &greedy(1), &mut |_| true)) {
        Err(Error::PromptTooLong {
            tokens: 129,
            context: 128,
        }) => {}
        other => panic!("{other:?}"),
    }
}
