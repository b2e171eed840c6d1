//! Attention kernels and the KV cache write against a plain f64 CPU reference:
//! softmax(q k^T * scale [soft-capped] + mask) v per head, kv head = head / (n_heads / n_kv_heads).
//! Odd lengths, windows shorter than the sequence, soft-cap on and off, MQA and GQA, prefill
//! on top of an existing cache, at WebGPU's default limits; on an f32 cache, and on an f16
//! cache where the adapter has shader-f16 (lavapipe has); in both layouts (tiles, and rows in
//! subgroups, which lavapipe has).
#![cfg(not(target_arch = "wasm32"))]

mod attention_common;

use attention_common::{
    cache_bytes, case, kernels_for, layouts, read_cache, run_case, run_stream, setup, stored,
    variants, Case, Variant,
};
use gemma_web::gpu::attention::{
    AttentionIo, AttentionKernels, AttentionLayer, AttentionLayout, AttentionScratch,
    AttentionShape, KvDtype, LayerCache,
};
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::testing::assert_close;
use gemma_web::Error;

fn device() -> Gpu {
    pollster::block_on(Gpu::new(GpuOptions {
        allow_f16: true,
        allow_subgroups: true,
        ..GpuOptions::for_tests()
    }))
    .expect("a wgpu adapter (lavapipe)")
}

const F32_TILES: Variant = Variant {
    kv: KvDtype::F32,
    layout: AttentionLayout::Tiles,
};

#[test]
fn prefill_matches_reference() {
    let gpu = device();
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
    for v in variants(&gpu) {
        for c in &cases {
            pollster::block_on(run_case(&gpu, v, c, true));
        }
    }
}

#[test]
fn decode_matches_reference() {
    let gpu = device();
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
    assert!(layouts(&gpu).len() == 2 || !gpu.caps.subgroups);
    for v in variants(&gpu) {
        for c in &cases {
            pollster::block_on(run_case(&gpu, v, c, false));
        }
    }
}

#[test]
fn streams_of_blocks_and_steps_reuse_the_bound_layer() {
    let gpu = device();
    for v in variants(&gpu) {
        // Every position has its own slot.
        pollster::block_on(run_stream(&gpu, v, 75, 30));
        // Sliding-window ring: window 24 + block 11 - 1 = 34 slots for 70 positions.
        pollster::block_on(run_stream(&gpu, v, 34, 31));
    }
    // A ring one slot short of that is refused, not silently wrong.
    let c = Case {
        window: Some(24),
        slots: Some(33),
        ..case(8, 4, 0, 11)
    };
    let mut s = pollster::block_on(setup(&gpu, F32_TILES, &c));
    assert!(s.layer.prefill_ops(&gpu, 40, 11).is_err());
    assert!(s.layer.prefill_ops(&gpu, 40, 10).is_ok());
}

#[test]
fn oversized_requests_are_errors_not_panics() {
    let gpu = device();
    let mut s = pollster::block_on(setup(&gpu, F32_TILES, &case(4, 1, 2, 3)));
    let kernels = pollster::block_on(kernels_for(&gpu, &s.shape, AttentionLayout::Tiles));
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
    // The f32 kernels of 4 heads bound to a layer of `shape`: refused.
    let refused = |shape: AttentionShape| {
        let cache = LayerCache::new(&gpu, &shape, "other").unwrap();
        let scratch = AttentionScratch::new(&gpu, &shape).unwrap();
        let io = AttentionIo {
            q: &s.io[0],
            k_new: &s.io[1],
            v_new: &s.io[2],
            out: &s.io[3],
        };
        let err = AttentionLayer::new(&gpu, &kernels, shape, io, &cache, &scratch, "l");
        assert!(
            matches!(err, Err(Error::Unsupported(_))),
            "{shape:?}: {err:?}"
        );
    };
    // A cache of the other type.
    if gpu.caps.f16 {
        refused(AttentionShape {
            kv: KvDtype::F16,
            ..s.shape
        });
    }
    // An f16 cache on a device without shader-f16.
    let plain = pollster::block_on(Gpu::new(GpuOptions::for_tests())).unwrap();
    let half = AttentionShape {
        kv: KvDtype::F16,
        ..s.shape
    };
    assert!(matches!(
        pollster::block_on(AttentionKernels::load(
            &plain,
            &half,
            AttentionLayout::Tiles
        )),
        Err(Error::Unsupported(_))
    ));
    // The rows layout on a device without subgroups.
    assert!(matches!(
        pollster::block_on(AttentionKernels::load(
            &plain,
            &s.shape,
            AttentionLayout::Rows { lanes: 8 }
        )),
        Err(Error::Unsupported(_))
    ));
    // Other heads.
    refused(AttentionShape {
        n_heads: 8,
        ..s.shape
    });
    assert!(matches!(
        LayerCache::new(&plain, &half, "half"),
        Err(Error::Unsupported(_))
    ));
}

/// The fused decode (per-head norms, RoPE and the cache write inside the attention dispatch)
/// gives what qk_rope_kv.wgsl followed by the decode passes gives, which the tests above and
/// kernels_fused.rs check against f64 references: the output and both caches, with and without
/// the q/k norm, MQA and GQA, one split and many, a window over a ring that wraps, linear RoPE
/// scaling, head dims 64, 100 and 256, on each cache type and in each layout. In the tiles
/// layout exactly the same bits (its norm sums as head_norm_rope.wgsl does); in rows the norm's
/// squares add up across the subgroup in another order, so within rounding.
#[test]
fn fused_decode_equals_qk_rope_kv_then_decode() {
    let g = device();
    for v in variants(&g) {
        fused_decode_cases(&g, v);
    }
}

fn fused_decode_cases(g: &Gpu, variant: Variant) {
    let Variant { kv, layout } = variant;
    use gemma_web::gpu::attention::{FusedDecodeIo, FusedRope};
    use gemma_web::gpu::kernels::{self, QkRopeKvIo, QkRopeKvParams};
    use gemma_web::testing::Rng;
    // (heads, kv heads, head_dim, cache slots, window, position, q/k norm, RoPE scale)
    let cases = [
        (4u32, 1u32, 256u32, 700u32, None, 37u32, true, 1.0f32),
        (8, 4, 64, 700, None, 650, false, 1.0),
        (4, 1, 100, 520, Some(512), 1300, true, 1.0),
        (8, 1, 64, 5000, None, 4500, true, 0.125),
        (2, 2, 256, 9, Some(9), 0, true, 1.0),
    ];
    for (i, &(nh, nkv, hd, slots, window, pos, norm, pos_scale)) in cases.iter().enumerate() {
        let shape = AttentionShape {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            cache_len: slots,
            scale: 1.0 / (hd as f32).sqrt(),
            softcap: None,
            window,
            kv,
        };
        let kernels = pollster::block_on(kernels_for(g, &shape, layout));
        let rope = FusedRope {
            base: 10_000.0,
            pos_scale,
            eps: 1e-6,
        };
        let mut r = Rng::new(100 + i as u64);
        let (qd, kvd) = ((nh * hd) as usize, (nkv * hd) as usize);
        let qkv = r.vec_normal(qd + 2 * kvd, 2.0);
        let nw = r.vec_uniform(2 * hd as usize, 0.5, 1.5);
        let cache0 = stored(kv, &r.vec_normal(kvd * slots as usize, 1.0));
        let qkv_b = g.storage_f32("qkv", &qkv).unwrap();
        let nw_b = g.storage_f32("qk_norm", &nw).unwrap();
        let mut outs = Vec::new();
        for fused in [false, true] {
            let cache = LayerCache::new(g, &shape, "c").unwrap();
            g.write(&cache.k, 0, &cache_bytes(kv, &cache0)).unwrap();
            g.write(&cache.v, 0, &cache_bytes(kv, &cache0)).unwrap();
            let scratch = AttentionScratch::new(g, &shape).unwrap();
            let q = g.storage("q", (qd * 4) as u64).unwrap();
            let kv_new = g.storage("kv", (kvd * 4) as u64).unwrap();
            let out = g.storage("out", (qd * 4) as u64).unwrap();
            let io = AttentionIo {
                q: &q,
                k_new: &kv_new,
                v_new: &kv_new,
                out: &out,
            };
            let mut layer =
                AttentionLayer::new(g, &kernels, shape, io, &cache, &scratch, "l").unwrap();
            let mut qk = pollster::block_on(kernels::qk_rope_kv(
                g,
                &QkRopeKvIo {
                    qkv: &qkv_b,
                    norm_w: norm.then_some(&nw_b),
                    q: &q,
                    k_cache: &cache.k,
                    v_cache: &cache.v,
                    kv,
                },
                QkRopeKvParams {
                    n_tokens: 1,
                    n_heads: nh,
                    n_kv_heads: nkv,
                    head_dim: hd,
                    cache_len: slots,
                    pos: 0,
                    base: rope.base,
                    eps: rope.eps,
                    pos_scale: rope.pos_scale,
                    ..Default::default()
                },
                1,
            ))
            .unwrap();
            if fused {
                let io = FusedDecodeIo {
                    qkv: &qkv_b,
                    qk_norm: norm.then_some(&nw_b),
                    rope,
                };
                pollster::block_on(layer.bind_fused_decode(g, io, &cache, &scratch)).unwrap();
                assert!(layer.has_fused_decode());
                let ops = layer.fused_decode_ops(g, pos).unwrap().unwrap();
                g.run(&ops).unwrap();
            } else {
                let first = qk.set(g, pos, 1).unwrap().clone();
                g.run(&[&first]).unwrap();
                let ops = layer.attend_decode_ops(g, pos).unwrap();
                g.run(&ops).unwrap();
            }
            let n = cache0.len();
            outs.push((
                pollster::block_on(g.read_f32(&out, qd)).unwrap(),
                pollster::block_on(read_cache(g, &cache.k, n, kv)),
                pollster::block_on(read_cache(g, &cache.v, n, kv)),
            ));
        }
        let name = format!(
            "case {i}, {variant:?}: {nh}/{nkv} heads, hd {hd}, pos {pos}, window {window:?}"
        );
        assert!(outs[0].0.iter().all(|v| v.is_finite()), "{name}");
        if layout == AttentionLayout::Tiles {
            assert_eq!(outs[0].0, outs[1].0, "{name}: output");
            assert_eq!(outs[0].1, outs[1].1, "{name}: k cache");
        } else {
            // A key a hair off may round to the neighbouring half: one half ulp on f16.
            let rel = if kv == KvDtype::F16 { 1e-3 } else { 1e-5 };
            assert_close(
                &format!("{name}: output"),
                &outs[0].0,
                &outs[1].0,
                2e-5,
                1e-4,
            );
            assert_close(
                &format!("{name}: k cache"),
                &outs[0].1,
                &outs[1].1,
                1e-6,
                rel,
            );
        }
        assert_eq!(outs[0].2, outs[1].2, "{name}: v cache");
        assert_ne!(outs[1].1, cache0, "{name}: the key was stored");
    }
    // More query heads a kv head than one workgroup takes: not fused, a typed error.
    let shape = AttentionShape {
        n_heads: 16,
        n_kv_heads: 1,
        head_dim: 64,
        cache_len: 8,
        scale: 0.125,
        softcap: None,
        window: None,
        kv,
    };
    let kernels = pollster::block_on(kernels_for(g, &shape, layout));
    let cache = LayerCache::new(g, &shape, "c").unwrap();
    let scratch = AttentionScratch::new(g, &shape).unwrap();
    let b = g.storage("b", 16 * 64 * 4 * 4).unwrap();
    let io = AttentionIo {
        q: &b,
        k_new: &b,
        v_new: &b,
        out: &b,
    };
    let mut layer = AttentionLayer::new(g, &kernels, shape, io, &cache, &scratch, "l").unwrap();
    let fused = FusedDecodeIo {
        qkv: &b,
        qk_norm: None,
        rope: FusedRope {
            base: 1e4,
            pos_scale: 1.0,
            eps: 1e-6,
        },
    };
    let err = pollster::block_on(layer.bind_fused_decode(g, fused, &cache, &scratch));
    assert!(matches!(err, Err(Error::Unsupported(_))), "{err:?}");
    assert!(!layer.has_fused_decode());
}
