//! Proves the CPU reference (tests/reference) itself: on the real Gemma 3 270M it reproduces an
//! independent llama.cpp run; on tiny random Gemma 1/2/3 files it is finite and deterministic.
#![cfg(not(target_arch = "wasm32"))]

mod reference;

use std::path::PathBuf;
use std::time::Instant;

use reference::*;

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

fn real_model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gemma-3-270m-q4_k_m.gguf")
}

/// The real model, or None when GEMMA_WEB_SKIP_MODEL_TESTS=1 lets the test skip; otherwise its
/// absence fails the test.
fn real_model() -> Option<PathBuf> {
    let path = real_model_path();
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

#[test]
fn gemma3_270m_matches_llama_cpp() {
    let Some(path) = real_model() else { return };
    let t = Instant::now();
    let mut m = load_reference_with_len(&path, 64);
    eprintln!(
        "load {:.1}s, config {:?}",
        t.elapsed().as_secs_f64(),
        m.config
    );
    assert_eq!(m.config.arch, RefArch::Gemma3);
    assert_eq!(m.config.sliding_window, Some(512));
    assert_eq!(m.config.rope_base, 1e6);
    assert_eq!(m.config.rope_base_local, 1e4);

    let t = Instant::now();
    let logits = m.logits_all(&HAIKU_PROMPT);
    eprintln!(
        "prompt of {} tokens: {:.2}s",
        HAIKU_PROMPT.len(),
        t.elapsed().as_secs_f64()
    );
    let last = logits.last().unwrap();
    assert!(logits.iter().flatten().all(|x| x.is_finite()));
    let top5 = top_k(last, 5);
    eprintln!("top-5 reference {top5:?}\ntop-5 llama.cpp {LLAMA_CPP_TOP5:?}");
    let ids: Vec<u32> = top5.iter().map(|p| p.0).collect();
    let want: Vec<u32> = LLAMA_CPP_TOP5.iter().map(|p| p.0).collect();
    assert_eq!(ids, want, "top-5 ids");
    for ((id, got), (_, want)) in top5.iter().zip(LLAMA_CPP_TOP5) {
        assert!(
            (got - want).abs() <= 0.7,
            "token {id}: logit {got} vs llama.cpp {want}"
        );
    }

    let t = Instant::now();
    let greedy = m.greedy(&HAIKU_PROMPT, LLAMA_CPP_GREEDY.len());
    eprintln!(
        "greedy {} steps: {:.2}s",
        greedy.len(),
        t.elapsed().as_secs_f64()
    );
    assert_eq!(greedy, LLAMA_CPP_GREEDY);
}
