//! The real Gemma 3 270M (Q4_K_M) on the GPU engine, against an independent llama.cpp run
//! (GEMMA.md) and against the CPU reference (candle-transformers' gemma3 on the dequantized
//! weights). Against llama.cpp the engine runs with shader-f16 and subgroups, as the CLI and the
//! page do (on lavapipe: decode attention in the rows layout), on an f16 KV cache where the
//! adapter has shader-f16 (llama.cpp's cache is f16 too); against the f32 reference, on an f32
//! cache.
#![cfg(not(target_arch = "wasm32"))]

mod reference;

use std::path::PathBuf;

use gemma_web::gpu::attention::KvDtype;
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::{
    CpuModel, FileSource, GenerateOptions, Head, Model, ModelOptions, Output, SamplingParams,
    Session, StopReason,
};
use gemma_web::Error;
use reference::{HAIKU_PROMPT, LLAMA_CPP_GREEDY, LLAMA_CPP_TOP5};

/// `features`: shader-f16 and subgroups enabled and an f16 KV cache (where the adapter has
/// them), or neither and an f32 cache.
fn load(path: &PathBuf, context: u32, features: bool) -> Model {
    let gpu = pollster::block_on(Gpu::new(GpuOptions {
        allow_f16: features,
        allow_subgroups: features,
        ..GpuOptions::for_tests()
    }))
    .expect("gpu");
    let mut src = FileSource::open(path).expect("open");
    let opts = ModelOptions {
        context_len: Some(context),
        kv_cache: Some(if gpu.caps.f16 {
            KvDtype::F16
        } else {
            KvDtype::F32
        }),
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
    let Some(path) = reference::real_model() else {
        return;
    };
    let mut model = load(&path, 128, true);
    eprintln!("KV cache: {}", model.stats.kv_cache_type);

    // First generated position: the top-5 ids in llama.cpp's order, logits within 0.2 of
    // llama.cpp's (measured on lavapipe, on token 3048: 0.141 at most with the f16 cache, 0.138
    // with f32; the README says so).
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
            (got - want).abs() <= 0.2,
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

/// Several paragraphs on unrelated topics: more than 512 tokens, so the sliding layers' window
/// (and their ring caches) is exercised well past its length.
const LONG_TEXT: &str = "The lighthouse keeper climbed the spiral stairs every evening at dusk, \
carrying a can of oil and a rag for the great lens. For forty years the light had never failed, \
not in the storms of the winter of 1953, nor on the night the harbour froze and the fishing boats \
were trapped until spring. He kept a logbook of every ship that passed, its name, its flag and \
the hour, and in the margins he drew the birds that rested on the gallery rail.\n\n\
Photosynthesis converts light energy into chemical energy. In the thylakoid membranes of the \
chloroplast, photons excite electrons in chlorophyll; the electrons pass along a transport chain \
that pumps protons across the membrane, and the resulting gradient drives ATP synthase. The Calvin \
cycle then uses ATP and NADPH to fix carbon dioxide into three-carbon sugars, which the plant \
assembles into glucose, sucrose and starch.\n\n\
def merge_sorted(a, b):\n    result = []\n    i = j = 0\n    while i < len(a) and j < len(b):\n\
        if a[i] <= b[j]:\n            result.append(a[i])\n            i += 1\n        else:\n\
            result.append(b[j])\n            j += 1\n    result.extend(a[i:])\n    result.extend(b[j:])\n\
    return result\n\n\
In the spring of 1848 revolutions spread across Europe with astonishing speed. Within weeks of the \
February uprising in Paris, crowds gathered in Vienna, Berlin, Milan and Budapest, demanding \
constitutions, a free press and an end to the old feudal obligations. Most of these movements were \
defeated within two years, yet many of their demands were quietly adopted by the governments that \
had suppressed them.\n\n\
To bake a simple loaf, mix five hundred grams of strong flour with ten grams of salt, seven grams \
of dried yeast and three hundred and fifty millilitres of warm water. Knead for ten minutes until \
the dough is smooth and elastic, leave it to rise for an hour, shape it, let it prove again, and \
bake at two hundred and twenty degrees for about thirty minutes, until the base sounds hollow.\n\n\
The committee will meet on Thursday at half past nine in the small conference room. Please read \
the attached budget before the meeting and send any questions to the treasurer by Wednesday noon. \
Items on the agenda include the new cycle shelter, the repair of the roof over the east wing, the \
summer fair and the proposal to open the library on Sunday afternoons.\n\n\
The lighthouse keeper climbed the spiral stairs every evening at dusk, carrying a can of oil and a \
rag for the great lens, and when he reached the top he looked out over the dark water and counted \
the lights of the ships.";

/// Per-position logits of our engine (prefill blocks) against the CPU reference (candle's gemma3
/// on the dequantized weights, one position at a time): close at every position, and the same
/// greedy token wherever the reference's top two are not a near-tie.
#[test]
fn gemma3_270m_matches_reference_per_position() {
    let Some(path) = reference::real_model() else {
        return;
    };
    let model = load(&path, 1024, false);
    let tokenizer = gemma_web::tokenizer::GemmaTokenizer::from_gguf(&model.header).unwrap();
    let mut model = model;
    let long = tokenizer.encode(LONG_TEXT, true).unwrap();
    assert!(long.len() > 560, "the long text has {} tokens", long.len());
    let prompts: Vec<Vec<u32>> = vec![
        tokenizer.encode("The capital of France is", true).unwrap(),
        tokenizer
            .encode_chat(
                &[gemma_web::tokenizer::ChatTurn::new(
                    gemma_web::tokenizer::Role::User,
                    "List three colours of the rainbow.",
                )],
                true,
            )
            .unwrap(),
        tokenizer
            .encode(
                "fn main() {\n    let v: Vec<u32> = (0..10).collect();",
                true,
            )
            .unwrap(),
        long,
    ];
    let max_len = prompts.iter().map(Vec::len).max().unwrap();
    let mut reference =
        reference::load_reference_with(&path, max_len + 1, reference::RefMode::Decode);
    for (p, ids) in prompts.iter().enumerate() {
        reference.reset();
        let t = std::time::Instant::now();
        // On the long text, logits are compared from position 480 on (across the 512 window);
        // the positions before are fed to both engines (our prefill blocks skip the LM head,
        // which dominates lavapipe's time), and every later position attends to them.
        let start = if ids.len() > 512 { 480 } else { 0 };
        if start > 0 {
            pollster::block_on(model.prefill(&ids[..start], 0, Head::None)).unwrap();
            // One batched candle forward (exact below the window, and the decode steps after it
            // continue its KV caches) instead of `start` decode steps.
            reference.prefill_last(&ids[..start]);
        }
        let (mut worst_nmse, mut worst_abs, mut compared, mut ties) = (0f64, 0f32, 0usize, 0usize);
        let mut failures = Vec::new();
        let mut gpu_top = Vec::new();
        pollster::block_on(model.score(&ids[start..], start as u32, &mut |i, got| {
            gpu_top.push(reference::argmax(got));
            let i = start + i;
            let want = reference.step(ids[i]);
            let (mut num, mut den, mut max_abs) = (0f64, 0f64, 0f32);
            for (&w, &g) in want.iter().zip(got) {
                num += (f64::from(w) - f64::from(g)).powi(2);
                den += f64::from(w).powi(2);
                max_abs = max_abs.max((w - g).abs());
            }
            let nmse = num / den.max(1e-30);
            worst_nmse = worst_nmse.max(nmse);
            worst_abs = worst_abs.max(max_abs);
            if !(nmse <= 1e-5) || !(max_abs <= 0.05) {
                failures.push(format!(
                    "position {i}: NMSE {nmse:.2e}, max |diff| {max_abs}"
                ));
            }
            // A top-two margin under 0.02 is a near-tie: either token is right.
            if reference::argmax_margin(&want) >= 0.02 {
                compared += 1;
                let (ours, theirs) = (reference::argmax(got), reference::argmax(&want));
                if ours != theirs {
                    failures.push(format!("position {i}: greedy {ours} vs reference {theirs}"));
                }
            } else {
                ties += 1;
            }
        }))
        .unwrap();
        eprintln!(
            "prompt {p} ({} tokens, {:.0}s): worst NMSE {worst_nmse:.2e}, worst max |diff| \
             {worst_abs:.4}, greedy compared at {compared} positions ({ties} near-ties)",
            ids.len(),
            t.elapsed().as_secs_f64()
        );
        assert!(failures.is_empty(), "prompt {p}: {failures:#?}");
        if start > 0 {
            cpu_agrees_with_gpu(&path, ids, start, &gpu_top);
        }
    }
}

/// The CPU engine, teacher-forced on the long text, against the GPU engine's top token at each
/// position from `start` on (across the 512 window): agreement at least 0.99 (issue 12; the
/// CPU engine's 16-bit activations give 1.0 here, ggml's 8-bit ones gave 0.95 over the text).
fn cpu_agrees_with_gpu(path: &PathBuf, ids: &[u32], start: usize, gpu_top: &[u32]) {
    let opts = ModelOptions {
        context_len: Some(1024),
        ..Default::default()
    };
    let mut src = FileSource::open(path).expect("open");
    let mut cpu = pollster::block_on(CpuModel::load(&mut src, &opts, &mut |_, _| {}))
        .expect("load on the CPU");
    // The positions before `start` only fill the cache: no logits for them.
    pollster::block_on(cpu.prefill(&ids[..start], 0, Head::None)).unwrap();
    let mut cpu_top = Vec::new();
    pollster::block_on(cpu.score(&ids[start..], start as u32, &mut |_, logits| {
        cpu_top.push(reference::argmax(logits));
    }))
    .unwrap();
    assert_eq!(cpu_top.len(), gpu_top.len());
    let same = cpu_top.iter().zip(gpu_top).filter(|(a, b)| a == b).count();
    let agreement = same as f64 / gpu_top.len() as f64;
    eprintln!(
        "CPU vs GPU engine, top-1 teacher-forced at positions {start}..{}: {same} of {} ({agreement:.3})",
        ids.len(),
        gpu_top.len()
    );
    assert!(agreement >= 0.99, "top-1 agreement {agreement:.3}");
}
