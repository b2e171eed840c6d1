//! Test support shared by native and browser kernel tests: a tolerance checker that names the
//! first mismatches, and a seeded generator for test data (no clock, no OS randomness, so the
//! same seed gives the same data on every target).

use crate::rng::SplitMix64;

/// The largest error of `y` (m, rows), products of `x` (m, cols) with `w` (rows, cols), against
/// the exact ones in f64, relative to each product's sum of |w x| (infinite for a NaN).
pub fn worst_product_error(
    w: &[f32],
    x: &[f32],
    y: &[f32],
    rows: usize,
    cols: usize,
    m: usize,
) -> f64 {
    let mut worst = 0f64;
    for t in 0..m {
        let xt = &x[t * cols..(t + 1) * cols];
        for r in 0..rows {
            let wr = &w[r * cols..(r + 1) * cols];
            let exact: f64 = wr
                .iter()
                .zip(xt)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            let scale: f64 = wr
                .iter()
                .zip(xt)
                .map(|(&a, &b)| f64::from((a * b).abs()))
                .sum();
            let e = (f64::from(y[t * rows + r]) - exact).abs() / scale.max(1e-30);
            worst = if e.is_nan() {
                f64::INFINITY
            } else {
                worst.max(e)
            };
        }
    }
    worst
}

/// Checks `|expected - actual| <= abs + rel * |expected|` elementwise (NaN never passes) and
/// that the lengths agree. On failure the message names the first few mismatching indices
/// with expected and actual values, how many mismatched, and the worst error.
pub fn check_close(
    name: &str,
    expected: &[f32],
    actual: &[f32],
    abs: f32,
    rel: f32,
) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "{name}: length mismatch: expected {} values, got {}",
            expected.len(),
            actual.len()
        ));
    }
    let mut bad = Vec::new();
    let mut count = 0usize;
    let mut worst = (0usize, 0f32);
    for (i, (&e, &a)) in expected.iter().zip(actual).enumerate() {
        let err = (e - a).abs();
        let tol = abs + rel * e.abs();
        // Written so NaN in either fails.
        if !(err <= tol) {
            count += 1;
            if bad.len() < 8 {
                bad.push(format!(
                    "[{i}] expected {e} got {a} (|err| {err:.3e} > tol {tol:.3e})"
                ));
            }
            if !(err <= worst.1) {
                worst = (i, err);
            }
        }
    }
    if count == 0 {
        return Ok(());
    }
    Err(format!(
        "{name}: {count} of {} values out of tolerance (abs {abs:e}, rel {rel:e}); worst at [{}] |err| {:.3e}; first: {}",
        expected.len(),
        worst.0,
        worst.1,
        bad.join(", ")
    ))
}

/// [`check_close`] that panics with its message: for tests only.
#[track_caller]
pub fn assert_close(name: &str, expected: &[f32], actual: &[f32], abs: f32, rel: f32) {
    if let Err(msg) = check_close(name, expected, actual, abs, rel) {
        panic!("{msg}");
    }
}

/// RoPE (NeoX pairing, HF's rotate_half) in f64: the pairs (i, i + d/2) of each of `heads` heads
/// of each token rotate by pos * base^(-2i/d). `x` is (tokens, heads, d).
pub fn rope_reference(x: &[f32], positions: &[u32], heads: usize, d: usize, base: f64) -> Vec<f32> {
    rope_reference_scaled(x, positions, heads, d, base, 1.0)
}

/// [`rope_reference`] with linear RoPE scaling, from its definition: the angle of pair i at
/// position p is (p / factor) * base^(-2i/d), in f64.
pub fn rope_reference_scaled(
    x: &[f32],
    positions: &[u32],
    heads: usize,
    d: usize,
    base: f64,
    factor: f64,
) -> Vec<f32> {
    let mut out = x.to_vec();
    let half = d / 2;
    for (t, &pos) in positions.iter().enumerate() {
        for h in 0..heads {
            let o = (t * heads + h) * d;
            for i in 0..half {
                let theta = f64::from(pos) / factor * base.powf(-2.0 * i as f64 / d as f64);
                let (s, c) = theta.sin_cos();
                let (x0, x1) = (f64::from(x[o + i]), f64::from(x[o + i + half]));
                out[o + i] = (x0 * c - x1 * s) as f32;
                out[o + i + half] = (x0 * s + x1 * c) as f32;
            }
        }
    }
    out
}

/// Seeded test data, the same on every target.
#[derive(Clone, Debug)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed ^ 0x5851_f42d_4c95_7f2d))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in [0, n); 0 when n is 0.
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            ((u64::from(self.next_u32()) * u64::from(n)) >> 32) as u32
        }
    }

    /// Approximately standard normal (sum of 4 uniforms, rescaled): enough for test data.
    pub fn normal(&mut self) -> f32 {
        let s: f32 = (0..4).map(|_| self.unit()).sum();
        (s - 2.0) * 1.732_050_8
    }

    pub fn vec_uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    pub fn vec_normal(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * scale).collect()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_close_reports_first_mismatch_and_nan() {
        assert!(check_close("ok", &[1.0, 2.0], &[1.0005, 2.0], 1e-3, 0.0).is_ok());
        let e = check_close("x", &[1.0, 2.0, 3.0], &[1.0, 2.5, 3.0], 1e-3, 1e-3).unwrap_err();
        assert!(e.contains("[1] expected 2 got 2.5"), "{e}");
        assert!(check_close("nan", &[1.0], &[f32::NAN], 1.0, 1.0).is_err());
        assert!(check_close("len", &[1.0], &[], 1.0, 1.0).is_err());
        // Relative part scales with |expected|.
        assert!(check_close("rel", &[1000.0], &[1000.9], 0.0, 1e-3).is_ok());
        assert!(check_close("rel", &[1.0], &[1.9], 0.0, 1e-3).is_err());
    }

    #[test]
    fn rng_is_deterministic_and_spread() {
        let a: Vec<u32> = {
            let mut r = Rng::new(7);
            (0..4).map(|_| r.next_u32()).collect()
        };
        let mut r = Rng::new(7);
        assert_eq!(a, (0..4).map(|_| r.next_u32()).collect::<Vec<_>>());
        let mut r = Rng::new(1);
        let v = r.vec_uniform(10000, -1.0, 1.0);
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.05 && v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!((0..1000).all(|_| r.below(13) < 13));
    }
}
