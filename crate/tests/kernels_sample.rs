//! Sampling on the GPU (penalty, top-k, temperature, top-p, counter-based draws) against the
//! CPU `Sampler`: the penalty kernel value by value, the selects' kept set token by token
//! against a sort, and the draws by their distribution, a chi-square over thousands of seeded draws compared with the exact
//! truncated softmax (computed here in f64) and with as many draws of the CPU sampler.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::sample::{Draw, GpuSampling, SampleOps, SelectState};
use gemma_web::gpu::{Gpu, GpuOptions};
use gemma_web::model::{Output, Sampler, SamplingParams};
use gemma_web::testing::Rng;
use pollster::block_on;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

const VOCAB: usize = 1003;
const DRAWS: u32 = 6000;

/// Logits with a peaked head (so top-p cuts somewhere inside the 64 candidates) and a NaN.
fn logits(seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    let mut v: Vec<f32> = (0..VOCAB).map(|_| r.normal() * 1.5).collect();
    v[17] = f32::NAN;
    v[500] = 6.0;
    v[501] = 5.5;
    v[3] = -7.0;
    v
}

fn penalized(l: &[f32], recent: &[u32], penalty: f32) -> Vec<f32> {
    let mut out = l.to_vec();
    let mut ids = recent.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let x = &mut out[id as usize];
        *x = if *x > 0.0 { *x / penalty } else { *x * penalty };
    }
    out
}

/// The tokens top-k and top-p keep, most likely first, with their weights
/// exp((logit - max) / temperature), in f64.
fn kept(l: &[f32], p: &GpuSampling) -> Vec<(usize, f64)> {
    let mut idx: Vec<usize> = (0..l.len()).filter(|&i| !l[i].is_nan()).collect();
    idx.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
    if p.top_k > 0 {
        idx.truncate(p.top_k as usize);
    }
    let top = f64::from(l[idx[0]]);
    let w: Vec<f64> = idx
        .iter()
        .map(|&i| ((f64::from(l[i]) - top) / f64::from(p.temperature)).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut keep = w.len();
    let mut acc = 0.0;
    for (j, x) in w.iter().enumerate() {
        acc += x / total;
        if acc >= f64::from(p.top_p) {
            keep = j + 1;
            break;
        }
    }
    idx.into_iter().zip(w).take(keep).collect()
}

/// The exact probability of every token under top-k, temperature and top-p, in f64.
fn exact(l: &[f32], p: &GpuSampling) -> Vec<f64> {
    let kept = kept(l, p);
    let mass: f64 = kept.iter().map(|k| k.1).sum();
    let mut probs = vec![0.0; l.len()];
    for (i, w) in kept {
        probs[i] = w / mass;
    }
    probs
}

/// Pearson's chi-square of `counts` against `probs` over the bins expecting at least 5 draws
/// (the rest pooled), with its degrees of freedom. A draw outside the support is infinite.
fn chi_square(counts: &[u32], probs: &[f64], n: u32) -> (f64, usize) {
    let n = f64::from(n);
    let (mut chi, mut bins, mut pool_e, mut pool_o) = (0.0, 0usize, 0.0, 0.0);
    for (&c, &p) in counts.iter().zip(probs) {
        if p == 0.0 && c > 0 {
            return (f64::INFINITY, 1);
        }
        let e = p * n;
        if e >= 5.0 {
            chi += (f64::from(c) - e).powi(2) / e;
            bins += 1;
        } else {
            pool_e += e;
            pool_o += f64::from(c);
        }
    }
    if pool_e > 0.0 {
        chi += (pool_o - pool_e).powi(2) / pool_e.max(1e-9);
        bins += 1;
    }
    (chi, bins.saturating_sub(1).max(1))
}

/// Two-sample chi-square (GPU vs CPU counts, same number of draws each).
fn chi_square_two(a: &[u32], b: &[u32]) -> (f64, usize) {
    let (mut chi, mut bins) = (0.0, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        if x + y >= 10 {
            let (x, y) = (f64::from(x), f64::from(y));
            chi += (x - y).powi(2) / (x + y);
            bins += 1;
        }
    }
    (chi, bins.saturating_sub(1).max(1))
}

/// Far in the tail of chi-square(df) (about 5 standard deviations): fails on a wrong
/// distribution, not on chance.
fn limit(df: usize) -> f64 {
    df as f64 + 5.0 * (2.0 * df as f64).sqrt() + 10.0
}

fn gpu_draws(g: &Gpu, l: &[f32], p: &GpuSampling, recent: &[u32], counter: u64) -> Vec<Draw> {
    gpu_run(g, l, p, recent, counter, DRAWS).0
}

/// `draws` draws over `l`, and the select state after them.
fn gpu_run(
    g: &Gpu,
    l: &[f32],
    p: &GpuSampling,
    recent: &[u32],
    counter: u64,
    draws: u32,
) -> (Vec<Draw>, SelectState) {
    let buf = g.storage_f32("logits", l).unwrap();
    let mut ops = block_on(SampleOps::new(g, &buf, l.len() as u32, draws)).unwrap();
    let mut ids = recent.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let list = ops.set(g, p, &ids, counter, draws).unwrap();
    g.run(&list).unwrap();
    let bytes = block_on(g.read(&ops.out, 0, u64::from(draws) * 16)).unwrap();
    let state = block_on(g.read(&ops.state, 0, 64)).unwrap();
    (
        bytemuck::pod_collect_to_vec(&bytes),
        bytemuck::pod_read_unaligned(&state),
    )
}

#[test]
fn penalty_kernel_divides_positive_and_multiplies_negative_logits() {
    let g = gpu();
    let l = logits(1);
    let recent = [500u32, 3, 3, 999, 500, 17];
    let buf = g.storage_f32("logits", &l).unwrap();
    let mut ops = block_on(SampleOps::new(&g, &buf, VOCAB as u32, 1)).unwrap();
    let p = GpuSampling {
        temperature: 1.0,
        top_k: 64,
        top_p: 1.0,
        penalty: 1.7,
        seed: 1,
    };
    let mut ids = recent.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let list = ops.set(&g, &p, &ids, 0, 1).unwrap();
    g.run(&list[..1]).unwrap();
    let got = block_on(g.read_f32(&buf, VOCAB)).unwrap();
    let want = penalized(&l, &recent, 1.7);
    for i in 0..VOCAB {
        assert!(
            got[i] == want[i] || (got[i].is_nan() && want[i].is_nan()),
            "token {i}: {} vs {}",
            got[i],
            want[i]
        );
    }
}

#[test]
fn draws_follow_the_cpu_samplers_distribution() {
    let g = gpu();
    let recent = [500u32, 12, 12, 12, 640];
    for (seed, temperature, top_k, top_p, penalty) in [
        (1u64, 1.0f32, 64u32, 1.0f32, 1.0f32),
        (2, 0.7, 40, 0.9, 1.0),
        (3, 1.3, 7, 1.0, 1.0),
        (4, 1.0, 64, 0.95, 1.5),
        // Every token, a top-k above 64, top-p alone and after a top-k, with the penalty.
        (7, 1.0, 0, 1.0, 1.0),
        (8, 2.0, 0, 1.0, 1.0),
        (9, 1.2, 300, 1.0, 1.0),
        (10, 1.5, 0, 0.8, 1.0),
        (11, 1.8, 200, 0.9, 1.3),
        // A few tokens hold the mass: the noise must be Gumbel's exactly (with many tokens
        // in play, other noise laws come close to the softmax too).
        (12, 0.3, 0, 1.0, 1.0),
    ] {
        let l = logits(seed);
        let p = GpuSampling {
            temperature,
            top_k,
            top_p,
            penalty,
            seed,
        };
        let draws = gpu_draws(&g, &l, &p, &recent, 1 << 33);
        let pl = if penalty != 1.0 {
            penalized(&l, &recent, penalty)
        } else {
            l.clone()
        };
        let probs = exact(&pl, &p);
        let mut gpu_counts = vec![0u32; VOCAB];
        for d in &draws {
            assert!((d.id as usize) < VOCAB, "{d:?}");
            gpu_counts[d.id as usize] += 1;
            // The draw reports its logit and its probability.
            assert_eq!(d.logit, pl[d.id as usize]);
            assert!(
                (f64::from(d.prob) - probs[d.id as usize]).abs() < 1e-4,
                "{d:?}"
            );
        }
        let (chi, df) = chi_square(&gpu_counts, &probs, DRAWS);
        assert!(
            chi < limit(df),
            "case {seed}: GPU chi-square {chi:.1} over {df} bins"
        );

        // The CPU sampler on the same logits and context.
        let mut s = Sampler::new(SamplingParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty: penalty,
            seed,
        })
        .unwrap();
        let out = Output::Logits(l.clone());
        let mut cpu_counts = vec![0u32; VOCAB];
        for _ in 0..DRAWS {
            cpu_counts[s.sample(&out, &recent).unwrap() as usize] += 1;
        }
        let (chi, df) = chi_square_two(&gpu_counts, &cpu_counts);
        assert!(
            chi < limit(df),
            "case {seed}: GPU vs CPU chi-square {chi:.1} over {df} bins"
        );
    }
}

#[test]
fn a_wrong_distribution_fails_the_check() {
    // The check is not vacuous: draws at temperature 1 against the distribution at 0.7.
    let g = gpu();
    let l = logits(5);
    let p = GpuSampling {
        temperature: 1.0,
        top_k: 64,
        top_p: 1.0,
        penalty: 1.0,
        seed: 5,
    };
    let draws = gpu_draws(&g, &l, &p, &[], 0);
    let mut counts = vec![0u32; VOCAB];
    for d in &draws {
        counts[d.id as usize] += 1;
    }
    let wrong = exact(
        &l,
        &GpuSampling {
            temperature: 0.7,
            ..p
        },
    );
    let (chi, df) = chi_square(&counts, &wrong, DRAWS);
    assert!(chi > limit(df), "chi-square {chi:.1} over {df} bins");
}

#[test]
fn draws_depend_on_seed_and_counter_only() {
    let g = gpu();
    let l = logits(6);
    let p = GpuSampling {
        temperature: 1.0,
        top_k: 64,
        top_p: 1.0,
        penalty: 1.0,
        seed: 77,
    };
    let ids = |p: &GpuSampling, c: u64| -> Vec<u32> {
        gpu_draws(&g, &l, p, &[], c).iter().map(|d| d.id).collect()
    };
    let a = ids(&p, 10);
    assert_eq!(a, ids(&p, 10));
    // Draw j of counter c is draw j - 1 of counter c + 1.
    assert_eq!(a[1..], ids(&p, 11)[..a.len() - 1]);
    assert_ne!(a, ids(&GpuSampling { seed: 78, ..p }, 10));
    // Temperature 0 (greedy after the penalty) always takes the best.
    let greedy = GpuSampling {
        temperature: 0.0,
        top_k: 1,
        ..p
    };
    let best = (0..VOCAB)
        .filter(|&i| !l[i].is_nan())
        .max_by(|&a, &b| l[a].partial_cmp(&l[b]).unwrap().then(b.cmp(&a)))
        .unwrap() as u32;
    assert!(ids(&greedy, 3).iter().all(|&id| id == best));
}

/// Logits full of exact ties (a few distinct values over many tokens), so every boundary the
/// selects look for falls inside a run of equal logits, and some NaN and -inf.
fn tied_logits(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n)
        .map(|i| match i % 97 {
            5 => f32::NAN,
            6 => f32::NEG_INFINITY,
            _ => (r.normal() * 2.0).round() * 0.5,
        })
        .collect()
}

#[test]
fn selects_keep_exactly_the_cpu_prefix() {
    // Against a sort: the kept set is the first top-k tokens in the sampler's order (logit
    // descending, lower index first) cut to the shortest prefix of mass top-p, token by
    // token, ties at the boundary included. Sizes that need 1, 2 and 3 index bytes, and
    // more than one workgroup of tokens.
    let g = gpu();
    for (n, top_k, top_p, temperature) in [
        (250usize, 0u32, 0.7f32, 1.0f32),
        (1003, 100, 1.0, 1.0),
        (1003, 333, 0.5, 0.6),
        (9000, 0, 0.9, 1.7),
        (9000, 4097, 1.0, 1.0),
        (70_001, 1000, 0.95, 1.0),
        (70_001, 70_500, 1.0, 1.0),
    ] {
        let l = tied_logits(n, n as u64 + u64::from(top_k));
        let p = GpuSampling {
            temperature,
            top_k,
            top_p,
            penalty: 1.0,
            seed: 3,
        };
        let (draws, state) = gpu_run(&g, &l, &p, &[], 0, 1);
        let want = kept(&l, &p);
        let case = format!("n {n} top-k {top_k} top-p {top_p}");
        assert_eq!(state.kept as usize, want.len(), "{case}: {state:?}");
        let keeps = |i: usize| {
            !l[i].is_nan() && state.keeps(SelectState::rank_key(l[i], i as u32, n as u32))
        };
        let mut set: Vec<usize> = want.iter().map(|k| k.0).collect();
        set.sort_unstable();
        let got: Vec<usize> = (0..n).filter(|&i| keeps(i)).collect();
        if got != set {
            let missing: Vec<_> = set.iter().filter(|i| !got.contains(i)).take(5).collect();
            let extra: Vec<_> = got.iter().filter(|i| !set.contains(i)).take(5).collect();
            panic!(
                "{case}: kept {} tokens, want {}; missing {missing:?}, extra {extra:?}; {state:?}",
                got.len(),
                set.len()
            );
        }
        let mass: f64 = want.iter().map(|k| k.1).sum();
        assert!(
            (state.kept_mass() - mass).abs() <= 1e-5 * mass,
            "{case}: mass {} vs {mass}",
            state.kept_mass()
        );
        assert!(keeps(draws[0].id as usize), "{case}: drew {:?}", draws[0]);
    }
}

#[test]
fn draws_on_a_gemma_sized_vocabulary() {
    // 262,144 tokens (Gemma 3's vocabulary): 64 workgroups a pass, three index bytes. The
    // draws land in the kept set with the probability the f64 reference gives them, and a
    // peaked distribution is drawn from in proportion.
    let g = gpu();
    let n = 262_144;
    let mut r = Rng::new(12);
    let mut l: Vec<f32> = (0..n).map(|_| r.normal() * 2.0 - 10.0).collect();
    l[100] = 8.0;
    l[200_000] = 8.0 + 2f32.ln();
    l[7] = f32::NAN;
    let p = GpuSampling {
        temperature: 1.0,
        top_k: 0,
        top_p: 0.9,
        penalty: 1.0,
        seed: 21,
    };
    let draws = 256;
    let (got, state) = gpu_run(&g, &l, &p, &[], 5, draws);
    let probs = exact(&l, &p);
    assert_eq!(state.kept, 2, "{state:?}");
    let mut counts = vec![0u32; n];
    for d in &got {
        assert!(probs[d.id as usize] > 0.0, "{d:?}");
        assert!(
            (f64::from(d.prob) - probs[d.id as usize]).abs() < 1e-4,
            "{d:?}"
        );
        counts[d.id as usize] += 1;
    }
    let (chi, df) = chi_square(&counts, &probs, draws);
    assert!(chi < limit(df), "chi-square {chi:.1} over {df} bins");
}
