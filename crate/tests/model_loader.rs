//! The loader: bounded reads from any byte source, and typed errors (never a panic) on files
//! that are truncated or damaged.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::config::Arch;
use gemma_web::model::loader::SLICE_BYTES;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use gemma_web::model::{ByteSource, Head, Model, ModelOptions, Output};
use gemma_web::Error;

/// Serves a byte slice and records every read.
struct Recording<'a> {
    bytes: &'a [u8],
    reads: Vec<(u64, usize)>,
}

impl ByteSource for Recording<'_> {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.reads.push((offset, buf.len()));
        let mut inner: &[u8] = self.bytes;
        inner.read_at(offset, buf).await
    }
}

fn gpu() -> Gpu {
    pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("gpu")
}

fn load(bytes: &[u8]) -> Result<(Model, Vec<(u64, usize)>), Error> {
    let mut src = Recording {
        bytes,
        reads: Vec::new(),
    };
    let opts = ModelOptions {
        context_len: Some(16),
        ..Default::default()
    };
    let mut last = (0, 0);
    let model = pollster::block_on(Model::load(gpu(), &mut src, &opts, &mut |done, total| {
        assert!(
            done >= last.0 && done <= total,
            "progress {done} of {total}"
        );
        last = (done, total);
    }))?;
    assert_eq!(last.0, last.1, "progress ends at the total");
    Ok((model, src.reads))
}

#[test]
fn reads_are_bounded_and_cover_the_tensors_once() {
    // A vocabulary large enough that the embedding takes several slices.
    let spec = RandomGemmaSpec {
        vocab: 40_000,
        ..RandomGemmaSpec::tiny(Arch::Gemma3)
    };
    let bytes = random_gemma_bytes(&spec).unwrap();
    assert!(bytes.len() > 2 * SLICE_BYTES);
    let (mut model, reads) = load(&bytes).unwrap();
    let largest = reads.iter().map(|r| r.1).max().unwrap();
    assert!(largest <= SLICE_BYTES, "a read of {largest} bytes");
    // Past the header, no byte is read twice.
    let data_offset = model.header.data_offset;
    let mut tensor_reads: Vec<(u64, usize)> =
        reads.into_iter().filter(|r| r.0 >= data_offset).collect();
    tensor_reads.sort();
    let total: u64 = tensor_reads.iter().map(|r| r.1 as u64).sum();
    assert_eq!(total, model.stats.tensor_bytes);
    for w in tensor_reads.windows(2) {
        assert!(w[0].0 + w[0].1 as u64 <= w[1].0, "overlapping reads {w:?}");
    }
    // And the model runs.
    let out = pollster::block_on(model.prefill(&[2, 17, 300], 0, Head::Argmax)).unwrap();
    assert!(matches!(out, Output::Argmax(id) if id < 40_000));
}

#[test]
fn damaged_files_are_typed_errors() {
    let bytes = random_gemma_bytes(&RandomGemmaSpec::tiny(Arch::Gemma)).unwrap();
    // Cut inside the tensor data, inside the header, and at zero.
    for cut in [bytes.len() - 1000, bytes.len() / 2, 100, 0] {
        match load(&bytes[..cut]) {
            Err(Error::BadModel(msg)) => eprintln!("cut at {cut}: {msg}"),
            Err(e) => panic!("cut at {cut}: {e:?}"),
            Ok(_) => panic!("cut at {cut}: loaded"),
        }
    }
    // Not a GGUF at all.
    let mut bad = bytes.clone();
    bad[..4].copy_from_slice(b"GGUX");
    assert!(matches!(load(&bad), Err(Error::BadModel(_))));
}

#[test]
fn out_of_range_requests_are_errors() {
    let bytes = random_gemma_bytes(&RandomGemmaSpec::tiny(Arch::Gemma2)).unwrap();
    let (mut model, _) = load(&bytes).unwrap();
    let vocab = model.config.vocab;
    // A token id past the vocabulary, a block past the context, an empty prompt.
    assert!(pollster::block_on(model.prefill(&[2, vocab], 0, Head::Argmax)).is_err());
    assert!(pollster::block_on(model.prefill(&[2; 17], 0, Head::Argmax)).is_err());
    assert!(pollster::block_on(model.prefill(&[2], 16, Head::Argmax)).is_err());
    assert!(pollster::block_on(model.prefill(&[], 0, Head::Argmax)).is_err());
    assert!(pollster::block_on(model.forward_decode(2, u32::MAX, Head::Argmax)).is_err());
    // Still usable afterwards.
    let out = pollster::block_on(model.forward_decode(2, 0, Head::Argmax)).unwrap();
    assert!(matches!(out, Output::Argmax(id) if id < vocab));
}
