//! Sampling on the GPU (penalty, top-k, temperature, top-p, counter-based draws) against the
//! CPU `Sampler`: the penalty kernel value by value, and the draws by their distribution, a
//! chi-square over thousands of seeded draws compared with the exact truncated softmax
//! (computed here in f64) and with as many draws of the CPU sampler.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::sample::{Draw, GpuSampling, SampleOps};
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

/// The exact probability of every token under top-k, temperature and top-p, in f64.
fn exact(l: &[f32], p: &GpuSampling) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..l.len()).filter(|&i| !l[i].is_nan()).collect();
    idx.sort_by(|&a, &b| l[b].partial_cmp(&l[a]).unwrap().then(a.cmp(&b)));
    idx.truncate(p.top_k as usize);
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
    let kept: f64 = w[..keep].iter().sum();
    let mut probs = vec![0.0; l.len()];
    for j in 0..keep {
        probs[idx[j]] = w[j] / kept;
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
    let buf = g.storage_f32("logits", l).unwrap();
    let mut ops = block_on(SampleOps::new(g, &buf, VOCAB as u32, DRAWS)).unwrap();
    let mut ids = recent.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let list = ops.set(g, p, &ids, counter, DRAWS).unwrap();
    g.run(&list).unwrap();
    let bytes = block_on(g.read(&ops.out, 0, u64::from(DRAWS) * 16)).unwrap();
    bytemuck::pod_collect_to_vec(&bytes)
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
