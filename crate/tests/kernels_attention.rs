//! Attention kernels and the KV cache write against a plain f64 CPU reference:
//! softmax(q k^T * scale [soft-capped] + mask) v per head, kv head = head / (n_heads / n_kv_heads).
//! Odd lengths, windows shorter than the sequence, soft-cap on and off, MQA and GQA, prefill
//! on top of an existing cache, at WebGPU's default limits.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::attention::{
    AttentionIo, AttentionKernels, AttentionLayer, AttentionScratch, AttentionShape, LayerCache,
};
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::testing::{assert_close, Rng};

fn device() -> Gpu {
    pollster::block_on(Gpu::new(GpuOptions::for_tests())).expect("a wgpu adapter (lavapipe)")
}

/// softmax attention for queries at positions pos..pos+n over `k`/`v` laid out
/// (n_kv_heads, cache_len, head_dim), position j in slot j % cache_len; returns
/// (n, n_heads, head_dim).
fn attention_ref(
    s: &AttentionShape,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    pos: usize,
    n: usize,
) -> Vec<f32> {
    let (nh, nkv, hd, len) = (
        s.n_heads as usize,
        s.n_kv_heads as usize,
        s.head_dim as usize,
        s.cache_len as usize,
    );
    let group = nh / nkv;
    let mut out = vec![0f32; n * nh * hd];
    for qi in 0..n {
        let qpos = pos + qi;
        for h in 0..nh {
            let kvh = h / group;
            let qrow = &q[(qi * nh + h) * hd..][..hd];
            let mut scores: Vec<(usize, f64)> = Vec::new();
            for j in 0..=qpos {
                if let Some(w) = s.window {
                    if qpos - j >= w as usize {
                        continue;
                    }
                }
                let krow = &k[(kvh * len + j % len) * hd..][..hd];
                let dot: f64 = qrow
                    .iter()
                    .zip(krow)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let mut sc = dot * s.scale as f64;
                if let Some(c) = s.softcap {
                    let c = c as f64;
                    sc = c * (sc / c).tanh();
                }
                scores.push((j, sc));
            }
            let m = scores.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = scores.iter().map(|x| (x.1 - m).exp()).sum();
            for d in 0..hd {
                let acc: f64 = scores
                    .iter()
                    .map(|&(j, sc)| (sc - m).exp() * v[(kvh * len + j % len) * hd + d] as f64)
                    .sum();
                out[(qi * nh + h) * hd + d] = (acc / total) as f32;
            }
        }
    }
    out
}

/// The cache after storing `rows` ((n, n_kv_heads, head_dim)) at positions pos..pos+n
/// (slots (pos + t) % cache_len).
fn cache_after_write(s: &AttentionShape, cache: &[f32], rows: &[f32], pos: usize) -> Vec<f32> {
    let (nkv, hd, len) = (
        s.n_kv_heads as usize,
        s.head_dim as usize,
        s.cache_len as usize,
    );
    let mut c = cache.to_vec();
    for (t, token) in rows.chunks(nkv * hd).enumerate() {
        for (h, row) in token.chunks(hd).enumerate() {
            c[(h * len + (pos + t) % len) * hd..][..hd].copy_from_slice(row);
        }
    }
    c
}

#[derive(Clone, Copy, Debug)]
struct Case {
    n_heads: u32,
    n_kv_heads: u32,
    head_dim: u32,
    /// Position of the first new token; the cache already holds 0..pos.
    pos: u32,
    /// New tokens (prefill) or 1 (decode).
    n: u32,
    window: Option<u32>,
    softcap: Option<f32>,
    /// Standard deviation of q: large values make the softmax peaky and push the soft-cap.
    q_std: f32,
    /// Cache slots; by default every position up to pos + n, plus some.
    slots: Option<u32>,
    seed: u64,
}

struct Setup {
    shape: AttentionShape,
    q: Vec<f32>,
    k_new: Vec<f32>,
    v_new: Vec<f32>,
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    layer: AttentionLayer,
    io: [wgpu::Buffer; 4],
    cache: LayerCache,
}

fn setup(gpu: &Gpu, kernels: &AttentionKernels, c: &Case) -> Setup {
    let shape = AttentionShape {
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        // Slack past the last token: rows there are garbage that must never be read.
        cache_len: c.slots.unwrap_or(c.pos + c.n + 5),
        scale: 1.0 / (c.head_dim as f32).sqrt(),
        softcap: c.softcap,
        window: c.window,
    };
    let mut rng = Rng::new(c.seed);
    let (n, nh, nkv, hd) = (
        c.n as usize,
        c.n_heads as usize,
        c.n_kv_heads as usize,
        c.head_dim as usize,
    );
    let cache_floats = nkv * shape.cache_len as usize * hd;
    // Random everywhere, including the positions about to be written and the slack.
    let k_cache = rng.vec_normal(cache_floats, 1.0);
    let v_cache = rng.vec_normal(cache_floats, 1.0);
    let q = rng.vec_normal(n * nh * hd, c.q_std);
    let k_new = rng.vec_normal(n * nkv * hd, 1.0);
    let v_new = rng.vec_normal(n * nkv * hd, 1.0);

    let cache = LayerCache::new(gpu, &shape, "test").unwrap();
    gpu.write(&cache.k, 0, bytemuck::cast_slice(&k_cache))
        .unwrap();
    gpu.write(&cache.v, 0, bytemuck::cast_slice(&v_cache))
        .unwrap();
    let io = [
        gpu.storage_f32("q", &q).unwrap(),
        gpu.storage_f32("k_new", &k_new).unwrap(),
        gpu.storage_f32("v_new", &v_new).unwrap(),
        gpu.storage("out", (n * nh * hd * 4) as u64).unwrap(),
    ];
    let scratch = AttentionScratch::new(gpu, &shape).unwrap();
    let layer = pollster::block_on(gpu.scoped("attention layer", || {
        AttentionLayer::new(
            gpu,
            kernels,
            shape,
            AttentionIo {
                q: &io[0],
                k_new: &io[1],
                v_new: &io[2],
                out: &io[3],
            },
            &cache,
            &scratch,
            "test",
        )
    }))
    .unwrap()
    .unwrap();
    Setup {
        shape,
        q,
        k_new,
        v_new,
        k_cache,
        v_cache,
        layer,
        io,
        cache,
    }
}

/// Runs the case through kv write + prefill (n > 1 or `prefill`) or kv write + decode, and
/// checks both the cache and the attention output.
fn run_case(gpu: &Gpu, kernels: &AttentionKernels, c: &Case, prefill: bool) {
    let mut s = setup(gpu, kernels, c);
    let name = format!("{} {c:?}", if prefill { "prefill" } else { "decode" });
    if prefill {
        let ops = s.layer.prefill_ops(gpu, c.pos, c.n).unwrap();
        gpu.run(&ops).unwrap();
    } else {
        assert_eq!(c.n, 1);
        let ops = s.layer.decode_ops(gpu, c.pos).unwrap();
        gpu.run(&ops).unwrap();
    }
    let k_expected = cache_after_write(&s.shape, &s.k_cache, &s.k_new, c.pos as usize);
    let v_expected = cache_after_write(&s.shape, &s.v_cache, &s.v_new, c.pos as usize);
    let k_got = pollster::block_on(gpu.read_f32(&s.cache.k, k_expected.len())).unwrap();
    let v_got = pollster::block_on(gpu.read_f32(&s.cache.v, v_expected.len())).unwrap();
    assert_close(&format!("k cache, {name}"), &k_expected, &k_got, 0.0, 0.0);
    assert_close(&format!("v cache, {name}"), &v_expected, &v_got, 0.0, 0.0);

    let expected = attention_ref(
        &s.shape,
        &s.q,
        &k_expected,
        &v_expected,
        c.pos as usize,
        c.n as usize,
    );
    let got = pollster::block_on(gpu.read_f32(&s.io[3], expected.len())).unwrap();
    assert_close(&name, &expected, &got, 2e-5, 2e-4);
    gpu.check().unwrap();
}

fn case(n_heads: u32, n_kv_heads: u32, pos: u32, n: u32) -> Case {
    Case {
        n_heads,
        n_kv_heads,
        head_dim: 256,
        pos,
        n,
        window: None,
        softcap: None,
        q_std: 1.0,
        slots: None,
        seed: 1,
    }
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
        run_case(&gpu, &kernels, c, true);
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
        run_case(&gpu, &kernels, c, false);
    }
}

/// The way the engine runs: bind once, then a prompt block, decode steps, another block and
/// more steps, with only the uniforms and the io rows rewritten in between. The reference keeps
/// the whole history by position, so a ring cache (fewer slots than positions) is checked
/// against what attention over the real history gives.
fn run_stream(gpu: &Gpu, kernels: &AttentionKernels, slots: u32, seed: u64) {
    let window = 24u32;
    let max_block = 11u32;
    let c = Case {
        window: Some(window),
        softcap: Some(50.0),
        q_std: 10.0,
        slots: Some(slots),
        seed,
        ..case(8, 4, 0, max_block)
    };
    let mut s = setup(gpu, kernels, &c);
    let (nh, nkv, hd) = (8usize, 4usize, 256usize);
    let blocks = [(0u32, 11u32), (11, 1), (12, 1), (13, 1)]
        .into_iter()
        .chain((14..31).map(|p| (p, 1)))
        .chain([(31, 9)])
        .chain((40..70).map(|p| (p, 1)))
        .collect::<Vec<_>>();
    let total = 70usize;
    let logical = AttentionShape {
        cache_len: total as u32,
        ..s.shape
    };
    let mut k_hist = vec![0f32; nkv * total * hd];
    let mut v_hist = vec![0f32; nkv * total * hd];
    let mut rng = Rng::new(seed + 1000);
    for (pos, n) in blocks {
        let (p, nu) = (pos as usize, n as usize);
        let q = rng.vec_normal(nu * nh * hd, 10.0);
        let k = rng.vec_normal(nu * nkv * hd, 1.0);
        let v = rng.vec_normal(nu * nkv * hd, 1.0);
        gpu.write(&s.io[0], 0, bytemuck::cast_slice(&q)).unwrap();
        gpu.write(&s.io[1], 0, bytemuck::cast_slice(&k)).unwrap();
        gpu.write(&s.io[2], 0, bytemuck::cast_slice(&v)).unwrap();
        if n == 1 {
            let ops = s.layer.decode_ops(gpu, pos).unwrap();
            gpu.run(&ops).unwrap();
        } else {
            let ops = s.layer.prefill_ops(gpu, pos, n).unwrap();
            gpu.run(&ops).unwrap();
        }
        k_hist = cache_after_write(&logical, &k_hist, &k, p);
        v_hist = cache_after_write(&logical, &v_hist, &v, p);
        let expected = attention_ref(&logical, &q, &k_hist, &v_hist, p, nu);
        let got = pollster::block_on(gpu.read_f32(&s.io[3], expected.len())).unwrap();
        assert_close(
            &format!("{slots} slots, block at {pos} of {n}"),
            &expected,
            &got,
            2e-5,
            2e-4,
        );
    }
    // The last `slots` positions (at most) sit in their slots.
    let k_got = pollster::block_on(gpu.read_f32(&s.cache.k, nkv * slots as usize * hd)).unwrap();
    let len = slots as usize;
    for h in 0..nkv {
        for p in total.saturating_sub(len)..total {
            let want = &k_hist[(h * total + p) * hd..][..hd];
            let got = &k_got[(h * len + p % len) * hd..][..hd];
            assert_close(
                &format!("k of position {p}, kv head {h}"),
                want,
                got,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn streams_of_blocks_and_steps_reuse_the_bound_layer() {
    let gpu = device();
    let kernels = pollster::block_on(AttentionKernels::load(&gpu)).unwrap();
    // Every position has its own slot.
    run_stream(&gpu, &kernels, 75, 30);
    // Sliding-window ring: window 24 + block 11 - 1 = 34 slots for 70 positions.
    run_stream(&gpu, &kernels, 34, 31);
    // A ring one slot short of that is refused, not silently wrong.
    let c = Case {
        window: Some(24),
        slots: Some(33),
        ..case(8, 4, 0, 11)
    };
    let mut s = setup(&gpu, &kernels, &c);
    assert!(s.layer.prefill_ops(&gpu, 40, 11).is_err());
    assert!(s.layer.prefill_ops(&gpu, 40, 10).is_ok());
}

#[test]
fn oversized_requests_are_errors_not_panics() {
    let gpu = device();
    let kernels = pollster::block_on(AttentionKernels::load(&gpu)).unwrap();
    let mut s = setup(&gpu, &kernels, &case(4, 1, 2, 3));
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
