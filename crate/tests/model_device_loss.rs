//! A GPU device lost in the middle of a generation (destroyed, as a driver reset would take it):
//! the generation ends with a typed `DeviceLost` error and no panic, the dead model keeps saying
//! so, and the recovery the browser engine does (a new device, the same weights loaded again,
//! `Session::resume` with the tokens sampled before the loss) ends with exactly the greedy tokens
//! of a run that was never interrupted.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::config::Arch;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use gemma_web::model::{GenerateOptions, Model, ModelOptions, SamplingParams, Session};
use gemma_web::Error;

const MAX_TOKENS: u32 = 12;
/// Tokens sampled before the device goes.
const BEFORE_LOSS: usize = 5;

fn load(bytes: &[u8]) -> Session {
    let gpu = pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu");
    let opts = ModelOptions {
        context_len: Some(64),
        ..ModelOptions::default()
    };
    let mut src: &[u8] = bytes;
    let model =
        pollster::block_on(Model::load(gpu, &mut src, &opts, &mut |_, _| {})).expect("load");
    Session::new(model)
}

fn options() -> GenerateOptions {
    GenerateOptions {
        max_tokens: MAX_TOKENS,
        sampling: SamplingParams::greedy(),
        // Random weights: no token may end the answer early.
        stop_ids: vec![],
    }
}

#[test]
fn lost_device_mid_generation_is_typed_and_resume_on_a_new_device_continues_exactly() {
    let spec = RandomGemmaSpec::tiny(Arch::Gemma3);
    let bytes = random_gemma_bytes(&spec).expect("write model");
    let prompt: Vec<u32> = (0..9).map(|i| 3 + (i * 37) % (spec.vocab - 3)).collect();
    let opts = options();

    let mut whole = load(&bytes);
    let reference = pollster::block_on(whole.generate(&prompt, &opts, &mut |_| true))
        .expect("uninterrupted run")
        .generated_ids;
    assert_eq!(reference.len(), MAX_TOKENS as usize);
    drop(whole);

    let mut session = load(&bytes);
    let device = session.engine.gpu().expect("gpu engine").gpu.device.clone();
    let mut sampled = Vec::new();
    let lost = pollster::block_on(session.generate(&prompt, &opts, &mut |id| {
        sampled.push(id);
        if sampled.len() == BEFORE_LOSS {
            device.destroy();
        }
        true
    }));
    match lost {
        Err(Error::DeviceLost(why)) => eprintln!("lost as expected: {why}"),
        other => panic!("expected DeviceLost, got {other:?}"),
    }
    assert_eq!(sampled, reference[..BEFORE_LOSS], "tokens before the loss");
    // The dead device keeps failing with the same typed error instead of hanging or panicking.
    let again = pollster::block_on(session.generate(&prompt, &opts, &mut |_| true));
    assert!(
        matches!(again, Err(Error::DeviceLost(_))),
        "a second call on the lost device: {again:?}"
    );
    drop(session);

    let mut recovered = load(&bytes);
    let mut streamed = Vec::new();
    let g = pollster::block_on(recovered.resume(&prompt, &sampled, &opts, &mut |id| {
        streamed.push(id);
        true
    }))
    .expect("resume on a new device");
    assert_eq!(g.generated_ids, reference, "the resumed generation");
    assert_eq!(g.prompt_ids, prompt);
    assert_eq!(
        streamed,
        reference[BEFORE_LOSS..],
        "only new tokens are streamed"
    );
    // The cache holds the prompt and the reply again: the conversation goes on from there.
    assert_eq!(
        recovered.history().len(),
        prompt.len() + reference.len() - 1
    );

    let nothing_left =
        pollster::block_on(recovered.resume(&prompt, &reference, &opts, &mut |_| true));
    assert!(matches!(nothing_left, Err(Error::Unsupported(_))));
}
