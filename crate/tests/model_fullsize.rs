//! Full-size shapes at WebGPU's default limits: random-weight GGUFs with Gemma 1 2B's and Gemma 2
//! 2B's exact shapes and Q4_K_M-like types (written to memory, not to a temp dir: two 1.5 GB
//! files filled a CI machine's disk) load on the adapter at default limits (128 MiB per binding:
//! the 256000 x 2048 embedding is split into pieces) and decode a few tokens. The weights are
//! random, so there is no reference text; what is checked is that two independent kernel paths
//! agree at full size: the prefill path (matmul, block attention) and the decode path (matvec,
//! split-K attention) give the same logits for the same tokens (on 2-layer files of the same
//! widths), and the GPU's top-k equals the top-k of the full logit vector.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::random::{write_random_gemma, RandomGemmaSpec};
use gemma_web::model::{Head, Model, ModelOptions, Output};

fn nmse(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (f64::from(x) - f64::from(y)).powi(2);
        den += f64::from(x).powi(2);
    }
    num / den.max(1e-30)
}

fn logits(o: Output) -> Vec<f32> {
    match o {
        Output::Logits(l) => l,
        o => panic!("{o:?}"),
    }
}

/// Writes `spec` to memory and loads it at default limits (the bytes are dropped after).
fn load(name: &str, spec: &RandomGemmaSpec) -> Model {
    let t = std::time::Instant::now();
    let mut file = Vec::new();
    let len = write_random_gemma(spec, &mut file).expect("write");
    let gpu = pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu");
    assert_eq!(gpu.caps.max_binding, 128 << 20, "default limits");
    let mut src = file.as_slice();
    let opts = ModelOptions {
        context_len: Some(32),
        prefill_chunk: 8,
        // The prefill path is the matmul even for short blocks on CPU adapters.
        min_matmul_block: Some(2),
        ..Default::default()
    };
    let model =
        pollster::block_on(Model::load(gpu, &mut src, &opts, &mut |_, _| {})).expect("load");
    eprintln!(
        "{name}: wrote and loaded {len} bytes in {:.1}s, {} weight bytes on the GPU",
        t.elapsed().as_secs_f64(),
        model.stats.weight_gpu_bytes
    );
    model
}

/// The exact shapes: load, then decode a few tokens; the GPU's top-k is the top of the full
/// logit vector (every piece of the split LM head included).
fn decode_a_few(name: &str, spec: RandomGemmaSpec) {
    let mut model = load(name, &spec);
    let vocab = model.config.vocab as usize;
    let t = std::time::Instant::now();
    let mut next = 2u32;
    for pos in 0..3u32 {
        let top = match pollster::block_on(model.forward_decode(next, pos, Head::TopK)).unwrap() {
            Output::TopK(t) => t,
            o => panic!("{o:?}"),
        };
        let full =
            logits(pollster::block_on(model.forward_decode(next, pos, Head::Logits)).unwrap());
        assert_eq!(full.len(), vocab);
        assert!(
            full.iter().all(|x| x.is_finite()),
            "{name}: non-finite logits"
        );
        // The last piece of the LM head wrote its rows.
        assert!(full[vocab - 16..].iter().any(|&x| x != 0.0));
        let mut order: Vec<u32> = (0..vocab as u32).collect();
        order.sort_by(|&a, &b| {
            full[b as usize]
                .total_cmp(&full[a as usize])
                .then(a.cmp(&b))
        });
        let got: Vec<u32> = top.iter().take(8).map(|p| p.0).collect();
        assert_eq!(got, order[..8].to_vec(), "{name}: top-8 at position {pos}");
        next = order[0];
    }
    eprintln!(
        "{name}: 3 decode steps (x2 heads) in {:.1}s",
        t.elapsed().as_secs_f64()
    );
}

/// The same widths with 2 layers (every buffer, split and binding as at full size; lavapipe's
/// matmul costs the same for 1 or 32 tokens, so 18 layers of prefill would take minutes): the
/// prefill path and the decode path agree.
fn prefill_matches_decode(name: &str, spec: RandomGemmaSpec) {
    let spec = RandomGemmaSpec {
        n_layers: 2,
        ..spec
    };
    let mut model = load(name, &spec);
    let prompt = [2u32, 651, 6037, 576, 4143];
    let t = std::time::Instant::now();
    let block = logits(pollster::block_on(model.prefill(&prompt, 0, Head::Logits)).unwrap());
    let mut step = Vec::new();
    for (pos, &id) in prompt.iter().enumerate() {
        step =
            logits(pollster::block_on(model.forward_decode(id, pos as u32, Head::Logits)).unwrap());
    }
    eprintln!(
        "{name}: prefill and decode of {} tokens in {:.1}s",
        prompt.len(),
        t.elapsed().as_secs_f64()
    );
    assert!(block.iter().chain(&step).all(|x| x.is_finite()));
    let e = nmse(&block, &step);
    eprintln!("{name}: prefill vs decode logits NMSE {e:.2e}");
    assert!(e <= 1e-6, "{name}: prefill vs decode NMSE {e:.3e}");
}

#[test]
fn gemma1_2b_shapes_at_default_limits() {
    decode_a_few("gemma-2b", RandomGemmaSpec::gemma_2b());
    prefill_matches_decode("gemma-2b-2layers", RandomGemmaSpec::gemma_2b());
}

#[test]
fn gemma2_2b_shapes_at_default_limits() {
    decode_a_few("gemma2-2b", RandomGemmaSpec::gemma2_2b());
    prefill_matches_decode("gemma2-2b-2layers", RandomGemmaSpec::gemma2_2b());
}
