//! Attention kernels and the KV cache write against a plain f64 CPU reference:
//! softmax(q k^T * scale [soft-capped] + mask) v per head, kv head = head / (n_heads / n_kv_heads).
//! Odd lengths, windows shorter than the sequence, soft-cap on and off, MQA and GQA, prefill
//! on top of an existing cache, at WebGPU's default limits.
#![cfg(not(target_arch = "wasm32"))]

mod attention_common;

use attention_common::{case, run_case, run_stream, setup, Case};
use gemma_web::gpu::attention::{AttentionKernels, AttentionShape, LayerCache};
use gemma_web::gpu::{Gpu, GpuOptions};

fn device() -> Gpu {
    pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("a wgpu adapter (lavapipe)")
}

#[test]
fn prefill_matches_reference() {
    let gpu = device();
    let kernels = pollster::block_on(AttentionKernels::load(&gpu)).unwrap();
    let cases = [
        // Gemma 3 270M: 4 heads on 1 kv head.
        case(4, 1, 0, 1),
        Case {
            seed: 2,
            ..case(4, 1, 0, 7)
        },
        // Gemma 2: 8 heads on 4 kv heads, soft-cap 50, window shorter than the block,
        // big logits so the cap bites.
        Case {
            window: Some(16),
            softcap: Some(50.0),
            q_std: 20.0,
            seed: 3,
            ..case(8, 4, 5, 33)
        },
        // Gemma 1: 8 heads on 1 kv head, on top of 37 cached tokens, peaky softmax.
        Case {
            q_std: 4.0,
            seed: 4,
            ..case(8, 1, 37, 33)
        },
        // Gemma 3 sliding layer: window 512 shorter than the 613 keys of the block's end.
        Case {
            window: Some(512),
            seed: 5,
            ..case(4, 1, 100, 513)
        },
        // More heads per kv head than one workgroup takes; small head_dim.
        Case {
            head_dim: 64,
            seed: 6,
            ..case(16, 1, 3, 9)
        },
        // Plain multi-head attention, head_dim not a multiple of 32, soft-cap.
        Case {
            head_dim: 100,
            softcap: Some(50.0),
            q_std: 30.0,
            seed: 7,
            ..case(4, 4, 0, 33)
        },
        // Ring cache of window + block - 1 slots, 1000 positions in: the block wraps around.
        Case {
            window: Some(512),
            slots: Some(544),
            seed: 8,
            ..case(4, 1, 1000, 33)
        },
    ];
    for c in &cases {
        pollster::block_on(run_case(&gpu, &kernels, c, true));
    }
}

#[test]
fn decode_matches_reference() {
    let gpu = device();
    let kernels = pollster::block_on(AttentionKernels::load(&gpu)).unwrap();
    let mut cases = Vec::new();
    for (i, kv_len) in [1u32, 7, 33, 513, 4097].into_iter().enumerate() {
        let seed = 10 + i as u64;
        cases.push(Case {
            seed,
            ..case(4, 1, kv_len - 1, 1)
        });
        cases.push(Case {
            softcap: Some(50.0),
            q_std: 20.0,
            seed,
            ..case(8, 4, kv_len - 1, 1)
        });
        cases.push(Case {
            window: Some(16),
            q_std: 3.0,
            seed,
            ..case(8, 1, kv_len - 1, 1)
        });
    }
    // Window 512 below the position (Gemma 3 sliding layer in a long chat).
    cases.push(Case {
        window: Some(512),
        seed: 20,
        ..case(4, 1, 600, 1)
    });
    // Past MAX_SPLITS tiles: splits of several steps each, with and without a window.
    cases.push(Case {
        q_std: 2.0,
        seed: 21,
        ..case(8, 1, 9000, 1)
    });
    cases.push(Case {
        window: Some(4096),
        seed: 22,
        ..case(8, 4, 9000, 1)
    });
    // Head chunks along z, small and odd head dims.
    cases.push(Case {
        head_dim: 64,
        seed: 23,
        ..case(16, 1, 70, 1)
    });
    cases.push(Case {
        head_dim: 100,
        softcap: Some(50.0),
        q_std: 30.0,
        seed: 24,
        ..case(4, 4, 44, 1)
    });
    // Ring caches of exactly the window.
    cases.push(Case {
        window: Some(512),
        slots: Some(512),
        seed: 25,
        ..case(4, 1, 5000, 1)
    });
    cases.push(Case {
        window: Some(4096),
        slots: Some(4096),
        seed: 26,
        ..case(8, 4, 9000, 1)
    });
    for c in &cases {
        pollster::block_on(run_case(&gpu, &kernels, c, false));
    }
}

#[test]
fn streams_of_blocks_and_steps_reuse_the_bound_layer() {
    let gpu = device();
    let kernels = pollster::block_on(AttentionKernels::load(&gpu)).unwrap();
    // Every position has its own slot.
    pollster::block_on(run_stream(&gpu, &kernels, 75, 30));
    // Sliding-window ring: window 24 + block 11 - 1 = 34 slots for 70 positions.
    pollster::block_on(run_stream(&gpu, &kernels, 34, 31));
    // A ring one slot short of that is refused, not silently wrong.
    let c = Case {
        window: Some(24),
        slots: Some(33),
        ..case(8, 4, 0, 11)
    };
    let mut s = pollster::block_on(setup(&gpu, &kernels, &c));
    assert!(s.layer.prefill_ops(&gpu, 40, 11).is_err());
    assert!(s.layer.prefill_ops(&gpu, 40, 10).is_ok());
}

#[test]
fn oversized_requests_are_errors_not_panics() {
    let gpu = device();
    let kernels = pollster::block_on(AttentionKernels::load(&gpu)).unwrap();
    let mut s = pollster::block_on(setup(&gpu, &kernels, &case(4, 1, 2, 3)));
    let len = s.shape.cache_len;
    assert!(s.layer.decode_ops(&gpu, len).is_err());
    // More tokens than the io buffers hold.
    assert!(s.layer.prefill_ops(&gpu, 0, 4).is_err());
    assert!(s.layer.prefill_ops(&gpu, len - 2, 3).is_err());
    // A cache past the binding limit.
    let huge = AttentionShape {
        cache_len: 1 << 20,
        ..s.shape
    };
    assert!(LayerCache::new(&gpu, &huge, "huge").is_err());
}
