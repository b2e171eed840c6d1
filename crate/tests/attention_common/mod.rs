//! Attention test cases shared by the native tests (kernels_attention.rs, on lavapipe) and the
//! browser tests (web_kernels.rs): a plain f64 CPU reference, softmax(q k^T * scale
//! [soft-capped] + mask) v per head with kv head = head / (n_heads / n_kv_heads), and async
//! runners that push a case through the bound attention ops. A case runs on the cache type and
//! decode layout of the [`Variant`] it is given: with an f16 cache the reference sees the keys
//! and values rounded to half by the `half` crate, the rest of the arithmetic as in f32.
#![allow(dead_code)]

use gemma_web::gpu::attention::{
    AttentionIo, AttentionKernels, AttentionLayer, AttentionLayout, AttentionScratch,
    AttentionShape, KvDtype, LayerCache,
};
use gemma_web::gpu::Gpu;
use gemma_web::testing::{assert_close, Rng};

/// softmax attention for queries at positions pos..pos+n over `k`/`v` laid out
/// (n_kv_heads, cache_len, head_dim), position j in slot j % cache_len; returns
/// (n, n_heads, head_dim).
pub fn attention_ref(
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

/// The cache types `gpu` runs: f32, and f16 where it has shader-f16.
pub fn kv_types(gpu: &Gpu) -> Vec<KvDtype> {
    let mut v = vec![KvDtype::F32];
    if gpu.caps.f16 {
        v.push(KvDtype::F16);
    }
    v
}

/// The decode layouts `gpu` runs: tiles, and rows where its subgroups hold 4 or more
/// invocations (whatever the adapter type, so lavapipe runs both).
pub fn layouts(gpu: &Gpu) -> Vec<AttentionLayout> {
    let mut v = vec![AttentionLayout::Tiles];
    if gpu.caps.subgroups && gpu.caps.subgroup_min_size >= 4 {
        v.push(AttentionLayout::Rows {
            lanes: gpu.caps.subgroup_min_size.min(8),
        });
    }
    v
}

/// How a case runs: the cache's element type and the decode kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Variant {
    pub kv: KvDtype,
    pub layout: AttentionLayout,
}

/// Every cache type with every decode layout `gpu` runs.
pub fn variants(gpu: &Gpu) -> Vec<Variant> {
    let mut v = Vec::new();
    for layout in layouts(gpu) {
        for kv in kv_types(gpu) {
            v.push(Variant { kv, layout });
        }
    }
    v
}

/// The attention kernels in `layout` for layers shaped like `shape`.
pub async fn kernels_for(
    gpu: &Gpu,
    shape: &AttentionShape,
    layout: AttentionLayout,
) -> AttentionKernels {
    match AttentionKernels::load(gpu, shape, layout).await {
        Ok(k) => k,
        Err(e) => panic!("attention kernels for {shape:?}, {layout:?}: {e}"),
    }
}

/// `x` as a cache of type `kv` holds it: rounded to the nearest half (clamped to the largest
/// finite one, as the kernels store it) for f16.
pub fn stored(kv: KvDtype, x: &[f32]) -> Vec<f32> {
    match kv {
        KvDtype::F32 => x.to_vec(),
        KvDtype::F16 => x
            .iter()
            .map(|&v| half::f16::from_f32(v.clamp(-65504.0, 65504.0)).to_f32())
            .collect(),
    }
}

/// The bytes of a cache of type `kv` holding `x`.
pub fn cache_bytes(kv: KvDtype, x: &[f32]) -> Vec<u8> {
    match kv {
        KvDtype::F32 => bytemuck::cast_slice(x).to_vec(),
        KvDtype::F16 => x
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect(),
    }
}

/// The first `n` values of a cache buffer of type `kv`, widened to f32.
pub async fn read_cache(gpu: &Gpu, buf: &wgpu::Buffer, n: usize, kv: KvDtype) -> Vec<f32> {
    let bytes = gpu.read(buf, 0, n as u64 * kv.bytes()).await.unwrap();
    match kv {
        KvDtype::F32 => bytemuck::pod_collect_to_vec(&bytes),
        KvDtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// The cache after storing `rows` ((n, n_kv_heads, head_dim)) at positions pos..pos+n
/// (slots (pos + t) % cache_len).
pub fn cache_after_write(s: &AttentionShape, cache: &[f32], rows: &[f32], pos: usize) -> Vec<f32> {
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
pub struct Case {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    /// Position of the first new token; the cache already holds 0..pos.
    pub pos: u32,
    /// New tokens (prefill) or 1 (decode).
    pub n: u32,
    pub window: Option<u32>,
    pub softcap: Option<f32>,
    /// Standard deviation of q: large values make the softmax peaky and push the soft-cap.
    pub q_std: f32,
    /// Cache slots; by default every position up to pos + n, plus some.
    pub slots: Option<u32>,
    pub seed: u64,
}

pub struct Setup {
    pub shape: AttentionShape,
    pub q: Vec<f32>,
    pub k_new: Vec<f32>,
    pub v_new: Vec<f32>,
    pub k_cache: Vec<f32>,
    pub v_cache: Vec<f32>,
    pub layer: AttentionLayer,
    pub io: [wgpu::Buffer; 4],
    pub cache: LayerCache,
}

pub async fn setup(gpu: &Gpu, variant: Variant, c: &Case) -> Setup {
    let shape = AttentionShape {
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        // Slack past the last token: rows there are garbage that must never be read.
        cache_len: c.slots.unwrap_or(c.pos + c.n + 5),
        scale: 1.0 / (c.head_dim as f32).sqrt(),
        softcap: c.softcap,
        window: c.window,
        kv: variant.kv,
    };
    let kv = variant.kv;
    let kernels = kernels_for(gpu, &shape, variant.layout).await;
    let mut rng = Rng::new(c.seed);
    let (n, nh, nkv, hd) = (
        c.n as usize,
        c.n_heads as usize,
        c.n_kv_heads as usize,
        c.head_dim as usize,
    );
    let cache_floats = nkv * shape.cache_len as usize * hd;
    // Random everywhere, including the positions about to be written and the slack.
    let k_cache = stored(kv, &rng.vec_normal(cache_floats, 1.0));
    let v_cache = stored(kv, &rng.vec_normal(cache_floats, 1.0));
    let q = rng.vec_normal(n * nh * hd, c.q_std);
    let k_new = rng.vec_normal(n * nkv * hd, 1.0);
    let v_new = rng.vec_normal(n * nkv * hd, 1.0);

    let cache = LayerCache::new(gpu, &shape, "test").unwrap();
    gpu.write(&cache.k, 0, &cache_bytes(kv, &k_cache)).unwrap();
    gpu.write(&cache.v, 0, &cache_bytes(kv, &v_cache)).unwrap();
    let io = [
        gpu.storage_f32("q", &q).unwrap(),
        gpu.storage_f32("k_new", &k_new).unwrap(),
        gpu.storage_f32("v_new", &v_new).unwrap(),
        gpu.storage("out", (n * nh * hd * 4) as u64).unwrap(),
    ];
    let scratch = AttentionScratch::new(gpu, &shape).unwrap();
    let layer = gpu
        .scoped("attention layer", || {
            AttentionLayer::new(
                gpu,
                &kernels,
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
        })
        .await
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
pub async fn run_case(gpu: &Gpu, variant: Variant, c: &Case, prefill: bool) {
    let mut s = setup(gpu, variant, c).await;
    let kv = variant.kv;
    let name = format!(
        "{} on {variant:?}, {c:?}",
        if prefill { "prefill" } else { "decode" }
    );
    if prefill {
        let ops = s.layer.prefill_ops(gpu, c.pos, c.n).unwrap();
        gpu.run(&ops).unwrap();
    } else {
        assert_eq!(c.n, 1);
        let ops = s.layer.decode_ops(gpu, c.pos).unwrap();
        gpu.run(&ops).unwrap();
    }
    let k_new = stored(kv, &s.k_new);
    let v_new = stored(kv, &s.v_new);
    let k_expected = cache_after_write(&s.shape, &s.k_cache, &k_new, c.pos as usize);
    let v_expected = cache_after_write(&s.shape, &s.v_cache, &v_new, c.pos as usize);
    let k_got = read_cache(gpu, &s.cache.k, k_expected.len(), kv).await;
    let v_got = read_cache(gpu, &s.cache.v, v_expected.len(), kv).await;
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
    let got = gpu.read_f32(&s.io[3], expected.len()).await.unwrap();
    assert_close(&name, &expected, &got, 2e-5, 2e-4);
    gpu.check().unwrap();
}

pub fn case(n_heads: u32, n_kv_heads: u32, pos: u32, n: u32) -> Case {
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

/// The way the engine runs: bind once, then a prompt block, decode steps, another block and
/// more steps, with only the uniforms and the io rows rewritten in between. The reference keeps
/// the whole history by position, so a ring cache (fewer slots than positions) is checked
/// against what attention over the real history gives.
pub async fn run_stream(gpu: &Gpu, variant: Variant, slots: u32, seed: u64) {
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
    let mut s = setup(gpu, variant, &c).await;
    let kv = variant.kv;
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
        k_hist = cache_after_write(&logical, &k_hist, &stored(kv, &k), p);
        v_hist = cache_after_write(&logical, &v_hist, &stored(kv, &v), p);
        let expected = attention_ref(&logical, &q, &k_hist, &v_hist, p, nu);
        let got = gpu.read_f32(&s.io[3], expected.len()).await.unwrap();
        assert_close(
            &format!("{slots} slots on {variant:?}, block at {pos} of {n}"),
            &expected,
            &got,
            2e-5,
            2e-4,
        );
    }
    // The last `slots` positions (at most) sit in their slots.
    let k_got = read_cache(gpu, &s.cache.k, nkv * slots as usize * hd, kv).await;
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
