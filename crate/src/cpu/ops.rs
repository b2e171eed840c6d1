//! Element-wise and per-row operations of a transformer on host slices, f32 with f64 sums where
//! a sum can lose precision. Each takes its shapes as arguments and knows no model.

/// y = x * rsqrt(mean(x^2) + eps) * w, for each row of `w.len()` values of `x` (rows, d).
/// The weight is used as stored (a GGUF of Gemma has the `1 +` baked in).
pub fn rmsnorm(x: &[f32], w: &[f32], eps: f32, y: &mut [f32]) {
    let d = w.len();
    for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        let scale = rms_scale(xr, eps);
        for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
            *o = v * scale * g;
        }
    }
}

/// [`rmsnorm`] in place.
pub fn rmsnorm_in_place(x: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    for xr in x.chunks_exact_mut(d) {
        let scale = rms_scale(xr, eps);
        for (v, &g) in xr.iter_mut().zip(w) {
            *v *= scale * g;
        }
    }
}

/// h += rmsnorm(x) * w, row by row: the post-norm residual of Gemma 2 and 3.
pub fn add_rmsnorm(h: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
    let d = w.len();
    for (hr, xr) in h.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
        let scale = rms_scale(xr, eps);
        for ((o, &v), &g) in hr.iter_mut().zip(xr).zip(w) {
            *o += v * scale * g;
        }
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let ss: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    (1.0 / (ss / x.len() as f64 + f64::from(eps)).sqrt()) as f32
}

/// h += x.
pub fn add(h: &mut [f32], x: &[f32]) {
    for (o, &v) in h.iter_mut().zip(x) {
        *o += v;
    }
}

/// x *= s.
pub fn scale(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// GELU with the tanh approximation.
pub fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// gate = gelu_tanh(gate) * up: the gated MLP product.
pub fn gelu_mul(gate: &mut [f32], up: &[f32]) {
    for (g, &u) in gate.iter_mut().zip(up) {
        *g = gelu_tanh(*g) * u;
    }
}

/// x = cap * tanh(x / cap).
pub fn softcap(x: &mut [f32], cap: f32) {
    for v in x {
        *v = cap * (*v / cap).tanh();
    }
}

/// The inverse frequencies base^(-2i/d), i < d/2, of rotary embeddings over `d` dimensions,
/// times `pos_scale` (1, or 1 / factor of linear RoPE scaling).
pub fn rope_inv_freq(base: f32, d: usize, pos_scale: f32) -> Vec<f64> {
    (0..d / 2)
        .map(|i| f64::from(pos_scale) * f64::from(base).powf(-2.0 * i as f64 / d as f64))
        .collect()
}

/// Rotary position embedding with NeoX halves, in place on the `heads` heads of one token
/// (`x` is (heads, d)): the pairs (i, i + d/2) of each head rotate by pos * inv_freq[i].
pub fn rope(x: &mut [f32], pos: u32, inv_freq: &[f64]) {
    let half = inv_freq.len();
    let d = 2 * half;
    for (i, &f) in inv_freq.iter().enumerate() {
        let (s, c) = (f64::from(pos) * f).sin_cos();
        let (s, c) = (s as f32, c as f32);
        for head in x.chunks_exact_mut(d) {
            let (x0, x1) = (head[i], head[i + half]);
            head[i] = x0 * c - x1 * s;
            head[i + half] = x0 * s + x1 * c;
        }
    }
}

/// Index of the largest value (the lowest index among equals; NaN never wins).
pub fn argmax(x: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
}

/// The `k` largest values with their indices, largest first (lower index first among equals;
/// NaN left out).
pub fn top_k(x: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut all: Vec<(u32, f32)> = x
        .iter()
        .enumerate()
        .filter(|(_, v)| !v.is_nan())
        .map(|(i, &v)| (i as u32, v))
        .collect();
    let better = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let k = k.min(all.len());
    if k == 0 {
        return Vec::new();
    }
    if k < all.len() {
        all.select_nth_unstable_by(k - 1, better);
        all.truncate(k);
    }
    all.sort_unstable_by(better);
    all
}
