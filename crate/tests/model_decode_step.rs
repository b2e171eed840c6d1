//! The decode step's budget on a random-weight Gemma 2 model (soft-capped logits): one submit
//! and at most 64 bytes read back per token whatever the sampling (top-k up to 64; greedy,
//! temperature, top-p, repetition penalty), GPU-sampled generations reproducible from their
//! seed, and a GPU draw at temperature 0 identical to the argmax.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::sample::GpuSampling;
use gemma_web::gpu::{CounterSnapshot, Gpu, GpuOptions};
use gemma_web::model::config::Arch;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use gemma_web::model::{
    GenerateOptions, Head, Model, ModelOptions, Output, SamplingParams, Session,
};
use pollster::block_on;

fn session() -> Session {
    let bytes = random_gemma_bytes(&RandomGemmaSpec::tiny(Arch::Gemma2)).unwrap();
    let gpu = block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu");
    let opts = ModelOptions {
        context_len: Some(64),
        ..Default::default()
    };
    let model = block_on(Model::load(gpu, &mut &bytes[..], &opts, &mut |_, _| {})).unwrap();
    Session::new(model)
}

fn generate(s: &mut Session, sampling: &SamplingParams, n: u32) -> (Vec<u32>, CounterSnapshot) {
    s.reset();
    let opts = GenerateOptions {
        max_tokens: n,
        sampling: sampling.clone(),
        stop_ids: vec![],
    };
    // A prompt that repeats a token, so the penalty has something to do.
    let prompt = [2u32, 17, 17, 300, 17, 41];
    let before = gpu_of(s).counted();
    let g = block_on(s.generate(&prompt, &opts, &mut |_| true)).unwrap();
    (g.generated_ids, gpu_of(s).counted().since(&before))
}

/// The generated ids, and submits and read-back bytes per decode step: the difference of two
/// generations with the same prompt, n and 2 tokens long (the prefill's costs cancel).
fn run(s: &mut Session, sampling: SamplingParams, n: u32) -> (Vec<u32>, f64, f64) {
    let (ids, long) = generate(s, &sampling, n);
    let (_, short) = generate(s, &sampling, 2);
    let steps = f64::from(n - 2);
    let per = |a: u64, b: u64| (a - b) as f64 / steps;
    (
        ids,
        per(long.submits, short.submits),
        per(long.readback_bytes, short.readback_bytes),
    )
}

#[test]
fn one_submit_and_at_most_64_bytes_per_token() {
    let mut s = session();
    let modes = [
        SamplingParams::greedy(),
        SamplingParams {
            repetition_penalty: 1.3,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            repetition_penalty: 1.0,
            seed: 5,
        },
        SamplingParams {
            temperature: 1.0,
            top_k: 64,
            top_p: 0.95,
            repetition_penalty: 1.2,
            seed: 6,
        },
        // Every token, and a top-k above 64 with top-p.
        SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 7,
        },
        SamplingParams {
            temperature: 0.9,
            top_k: 200,
            top_p: 0.9,
            repetition_penalty: 1.1,
            seed: 8,
        },
    ];
    for p in modes {
        assert!(!matches!(p.head(), Head::Logits | Head::TopK), "{p:?}");
        let (ids, submits, bytes) = run(&mut s, p.clone(), 12);
        assert_eq!(ids.len(), 12);
        assert!(ids.iter().all(|&id| id < 512), "{ids:?}");
        assert_eq!(submits, 1.0, "{p:?}");
        assert!(bytes <= 64.0, "{p:?}: {bytes} bytes a token");
    }
}

#[test]
fn gpu_sampling_is_reproducible_from_the_seed() {
    let mut s = session();
    let p = SamplingParams {
        temperature: 1.5,
        top_k: 64,
        top_p: 1.0,
        repetition_penalty: 1.1,
        seed: 42,
    };
    let (a, ..) = run(&mut s, p.clone(), 16);
    let (b, ..) = run(&mut s, p.clone(), 16);
    assert_eq!(a, b);
    let (c, ..) = run(
        &mut s,
        SamplingParams {
            seed: 43,
            ..p.clone()
        },
        16,
    );
    assert_ne!(a, c, "another seed, other tokens");
    // So is a draw from every token.
    let full = SamplingParams { top_k: 0, ..p };
    let (d, ..) = run(&mut s, full.clone(), 16);
    assert_eq!(d, run(&mut s, full.clone(), 16).0);
    assert_ne!(d, run(&mut s, SamplingParams { seed: 43, ..full }, 16).0);
}

#[test]
fn a_draw_at_temperature_0_is_the_argmax() {
    let mut s = session();
    let greedy = Head::Sample(GpuSampling {
        temperature: 0.0,
        top_k: 1,
        top_p: 1.0,
        penalty: 1.0,
        seed: 0,
    });
    let prompt = [2u32, 99, 7, 300];
    let m = s.engine.gpu_mut().expect("a GPU engine");
    let mut a = match block_on(m.prefill(&prompt, 0, Head::Argmax)).unwrap() {
        Output::Argmax(id) => id,
        o => panic!("{o:?}"),
    };
    let mut b = match block_on(m.prefill(&prompt, 0, greedy)).unwrap() {
        Output::Sampled { id, prob, .. } => {
            assert_eq!(prob, 1.0);
            id
        }
        o => panic!("{o:?}"),
    };
    for pos in 4..20 {
        assert_eq!(a, b, "position {pos}");
        a = match block_on(m.forward_decode(a, pos, Head::Argmax)).unwrap() {
            Output::Argmax(id) => id,
            o => panic!("{o:?}"),
        };
        // The same position again (the cache slot is simply rewritten).
        b = match block_on(m.forward_decode(b, pos, greedy)).unwrap() {
            Output::Sampled { id, .. } => id,
            o => panic!("{o:?}"),
        };
    }
}

fn gpu_of(s: &Session) -> &Gpu {
    &s.engine.gpu().expect("a GPU engine").gpu
}
