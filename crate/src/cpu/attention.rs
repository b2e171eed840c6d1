//! Causal multi-head attention over a KV cache on the host: grouped KV heads, an optional
//! sliding window (a ring of slots) and an optional soft-cap of the scores.

use rayon::prelude::*;

/// The shape of one layer's attention.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    pub n_heads: usize,
    /// Query head h reads KV head h / (n_heads / n_kv_heads).
    pub n_kv_heads: usize,
    pub head_dim: usize,
    /// Multiplies q.k before the softmax.
    pub scale: f32,
    /// s -> cap * tanh(s / cap) before the mask.
    pub softcap: Option<f32>,
    /// Key j is visible to query i when 0 <= i - j < window; `None`: every earlier key.
    pub window: Option<u32>,
}

impl AttentionShape {
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }

    /// Slots a cache needs for `context` positions filled in blocks of up to `block` tokens:
    /// a sliding layer keeps window + block - 1 (the first query of a block still sees the
    /// window before it while the block's own keys are stored), a global one every position.
    pub fn slots_needed(&self, context: u32, block: u32) -> usize {
        let all = context as usize;
        match self.window {
            Some(w) => (w as usize + block.max(1) as usize - 1).min(all),
            None => all,
        }
    }
}

/// Keys and values of one layer, allocated once: position p lives in slot p % slots.
#[derive(Debug)]
pub struct KvCache {
    /// (slots, kv_heads, head_dim).
    k: Vec<f32>,
    v: Vec<f32>,
    slots: usize,
    kv_dim: usize,
}

impl KvCache {
    pub fn new(shape: &AttentionShape, slots: usize) -> Self {
        let n = slots.max(1) * shape.kv_dim();
        KvCache {
            k: vec![0.0; n],
            v: vec![0.0; n],
            slots: slots.max(1),
            kv_dim: shape.kv_dim(),
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    pub fn bytes(&self) -> u64 {
        (self.k.len() + self.v.len()) as u64 * 4
    }

    /// Stores the keys and values (each (n, kv_heads, head_dim)) of `n` tokens at positions
    /// `pos..`.
    pub fn store(&mut self, pos: u32, k: &[f32], v: &[f32]) {
        let d = self.kv_dim;
        for (t, (kr, vr)) in k.chunks_exact(d).zip(v.chunks_exact(d)).enumerate() {
            let slot = (pos as usize + t) % self.slots;
            self.k[slot * d..(slot + 1) * d].copy_from_slice(kr);
            self.v[slot * d..(slot + 1) * d].copy_from_slice(vr);
        }
    }
}

/// 8 independent sums, so the compiler can keep them in one vector register.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Work (query heads times keys) below which one thread does it all.
const PARALLEL_WORK: usize = 1 << 14;

/// Attention of the queries `q` ((n, n_heads, head_dim)) of `n` tokens at positions `pos..`
/// over `cache`, which must already hold their own keys and values; writes `out` (same shape
/// as `q`).
pub fn attend(shape: &AttentionShape, cache: &KvCache, q: &[f32], pos: u32, out: &mut [f32]) {
    let hd = shape.head_dim;
    let group = shape.n_heads / shape.n_kv_heads.max(1);
    let kv_dim = cache.kv_dim;
    let one = |(i, o): (usize, &mut [f32])| {
        let (t, h) = (i / shape.n_heads, i % shape.n_heads);
        let p = pos as usize + t;
        let first = match shape.window {
            Some(w) => (p + 1).saturating_sub(w as usize),
            None => 0,
        };
        let qh = &q[i * hd..(i + 1) * hd];
        let kvh = (h / group.max(1)) * hd;
        let slot = |j: usize| (j % cache.slots) * kv_dim + kvh;
        let mut scores: Vec<f32> = (first..=p)
            .map(|j| {
                let s = shape.scale * dot(qh, &cache.k[slot(j)..slot(j) + hd]);
                match shape.softcap {
                    Some(cap) => cap * (s / cap).tanh(),
                    None => s,
                }
            })
            .collect();
        // Softmax, then the weighted sum of the values.
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f32;
        for s in &mut scores {
            *s = (*s - max).exp();
            total += *s;
        }
        o.fill(0.0);
        for (j, &w) in (first..=p).zip(&scores) {
            let w = w / total;
            for (x, &v) in o.iter_mut().zip(&cache.v[slot(j)..slot(j) + hd]) {
                *x += w * v;
            }
        }
    };
    let n_rows = out.len() / hd;
    let keys = shape.window.map_or(pos as usize + n_rows, |w| w as usize);
    if n_rows * keys < PARALLEL_WORK {
        out.chunks_exact_mut(hd).enumerate().for_each(one);
    } else {
        out.par_chunks_exact_mut(hd).enumerate().for_each(one);
    }
}
