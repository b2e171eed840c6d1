//! A long prefill can be stopped: `Session::generate_until` asks its `stop` check between prefill
//! blocks, ends with `StopReason::Aborted` and no token when told to, and leaves the session as it
//! was, so the conversation goes on exactly as if the stopped call had never been made.
#![cfg(not(target_arch = "wasm32"))]

use std::cell::Cell;

use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::config::Arch;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use gemma_web::model::{GenerateOptions, Model, ModelOptions, SamplingParams, Session, StopReason};

/// Prompt tokens per prefill block: the second turn below feeds 22 tokens (the first turn's pending
/// token and a 21-token prompt) in 6 blocks.
const CHUNK: u32 = 4;

fn load(bytes: &[u8]) -> Session {
    let gpu = pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu");
    let opts = ModelOptions {
        context_len: Some(64),
        prefill_chunk: CHUNK,
        ..ModelOptions::default()
    };
    let mut src: &[u8] = bytes;
    let model =
        pollster::block_on(Model::load(gpu, &mut src, &opts, &mut |_, _| {})).expect("load");
    Session::new(model)
}

fn options(max_tokens: u32) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        sampling: SamplingParams::greedy(),
        // Random weights: no token may end the answer early.
        stop_ids: vec![],
    }
}

fn prompt(len: u32, salt: u32, vocab: u32) -> Vec<u32> {
    (0..len)
        .map(|i| 3 + (i * 37 + salt) % (vocab - 3))
        .collect()
}

#[test]
fn a_stopped_prefill_ends_aborted_and_the_session_goes_on_as_if_it_never_ran() {
    let spec = RandomGemmaSpec::tiny(Arch::Gemma3);
    let bytes = random_gemma_bytes(&spec).expect("write model");
    let first = prompt(7, 0, spec.vocab);
    let long = prompt(21, 11, spec.vocab);

    // The reference: two turns, never interrupted. The stop check runs between every two blocks
    // and never after the last.
    let mut whole = load(&bytes);
    let a = pollster::block_on(whole.generate(&first, &options(3), &mut |_| true)).expect("turn 1");
    let checks = Cell::new(0);
    let b = pollster::block_on(whole.generate_until(
        &long,
        &options(4),
        &mut |_| true,
        Some(&mut || {
            checks.set(checks.get() + 1);
            false
        }),
    ))
    .expect("turn 2");
    assert_eq!(b.stop, StopReason::MaxTokens);
    let blocks = (long.len() as u32 + 1).div_ceil(CHUNK); // the previous turn's pending token first
    assert_eq!(
        checks.get(),
        blocks - 1,
        "one check between each two of {blocks} blocks"
    );
    drop(whole);

    // The same turns with the second one's prefill stopped after its first block, then asked again.
    let mut session = load(&bytes);
    let a2 =
        pollster::block_on(session.generate(&first, &options(3), &mut |_| true)).expect("turn 1");
    assert_eq!(a2.generated_ids, a.generated_ids);
    let history = session.history().to_vec();
    let pending = session.pending();
    let checks = Cell::new(0);
    let mut tokens = 0;
    let stopped = pollster::block_on(session.generate_until(
        &long,
        &options(4),
        &mut |_| {
            tokens += 1;
            true
        },
        Some(&mut || {
            checks.set(checks.get() + 1);
            true
        }),
    ))
    .expect("a stopped prefill is not an error");
    assert_eq!(stopped.stop, StopReason::Aborted);
    assert_eq!(checks.get(), 1, "stopped at the first check");
    assert!(stopped.generated_ids.is_empty());
    assert_eq!(tokens, 0, "no token was sampled");
    assert_eq!(
        session.history(),
        history,
        "the cache's history is untouched"
    );
    assert_eq!(session.pending(), pending);

    let b2 = pollster::block_on(session.generate(&long, &options(4), &mut |_| true))
        .expect("turn 2 again");
    assert_eq!(b2.prompt_ids, b.prompt_ids);
    assert_eq!(
        b2.generated_ids, b.generated_ids,
        "the conversation went on exactly"
    );
}
