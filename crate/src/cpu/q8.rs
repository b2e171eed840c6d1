//! Products with 8-bit weights: Q8_0 matrices (Gemma's tied LM head in most GGUFs) and Q5_0 ones
//! widened to 8 bits (the layers whose width is not a multiple of 256, where the k-quant files
//! fall back to Q5_0). In the 270M model they are 80% of the bytes read per token.
//!
//! ggml's Q8_0 block is an f16 scale and 32 int8 values. Here a matrix keeps the int8 values of
//! each row contiguous and the scales apart as f32, converted once at load: a browser has no
//! hardware f16 conversion, and converting two scales per block in software cost more than the
//! block's dot product. Activations are quantized to 16 bits per 32 values (ggml uses 8, which
//! costs the model's top token at some positions; see [`Acts`]), and each block's integer sum is
//! exact. Each row
//! meets every token of a block while it is in L1; rows are split across rayon's pool (the worker
//! pool of the shared-memory wasm build; one thread otherwise). On this project's machines the
//! LM head product takes 0.55-0.6x the time of candle's Q8_0 kernel, a 64-token block 0.5x
//! (`cargo test --lib lm_head_speed -- --ignored --nocapture`).

use half::f16;

use crate::Error;

/// Values per block.
pub const QK: usize = 32;
/// Bytes of a ggml Q8_0 block: f16 scale, 32 int8.
pub const Q8_0_BYTES: usize = 34;
/// Bytes of a ggml Q5_0 block: f16 scale, 32 high bits, 16 bytes of low nibbles.
pub const Q5_0_BYTES: usize = 22;

/// Rows of one parallel work item.
const ROWS_PER_TASK: usize = 64;

/// A (rows, cols) matrix of 8-bit weights: row r's int8 values at `r * cols`, the scale of its
/// block b at `r * cols / 32 + b`.
pub struct Q8Rows {
    pub rows: usize,
    pub cols: usize,
    quants: Vec<i8>,
    scales: Vec<f32>,
    /// Blocks decoded so far by [`Q8Rows::push_block`].
    filled: usize,
}

impl Q8Rows {
    /// An empty matrix to be filled block by block (`cols` a multiple of 32).
    pub fn new(rows: usize, cols: usize) -> Result<Self, Error> {
        if cols == 0 || rows == 0 || cols % QK != 0 {
            return Err(Error::BadModel(format!(
                "a {rows} x {cols} matrix of 32-value blocks"
            )));
        }
        let n = rows
            .checked_mul(cols)
            .ok_or_else(|| Error::BadModel(format!("a {rows} x {cols} matrix")))?;
        Ok(Q8Rows {
            rows,
            cols,
            quants: vec![0; n],
            scales: vec![0.0; n / QK],
            filled: 0,
        })
    }

    /// Whether every block was pushed.
    pub fn is_full(&self) -> bool {
        self.filled == self.scales.len()
    }

    /// Decodes the next block, in file order, from a Q8_0 (34 bytes) or Q5_0 (22 bytes) block.
    pub fn push_block(&mut self, block: &[u8]) -> Result<(), Error> {
        let b = self.filled;
        if b >= self.scales.len() {
            return Err(Error::BadModel("more blocks than the matrix holds".into()));
        }
        let q = &mut self.quants[b * QK..(b + 1) * QK];
        self.scales[b] = f16::from_le_bytes([block[0], block[1]]).to_f32();
        match block.len() {
            Q8_0_BYTES => {
                for (d, &s) in q.iter_mut().zip(&block[2..]) {
                    *d = s as i8;
                }
            }
            Q5_0_BYTES => {
                let block: &[u8; Q5_0_BYTES] = block.try_into().map_err(|_| {
                    Error::BadModel(format!("a Q5_0 block of {} bytes", block.len()))
                })?;
                q.copy_from_slice(&crate::gguf::q5_0_values(block));
            }
            n => return Err(Error::Unsupported(format!("an 8-bit block of {n} bytes"))),
        }
        self.filled += 1;
        Ok(())
    }

    /// Bytes held.
    pub fn byte_len(&self) -> u64 {
        (self.quants.len() + 4 * self.scales.len()) as u64
    }

    /// Row `r`, dequantized into `out` (`cols` values).
    pub fn row(&self, r: usize, out: &mut [f32]) {
        let nb = self.cols / QK;
        let q = &self.quants[r * self.cols..(r + 1) * self.cols];
        let s = &self.scales[r * nb..(r + 1) * nb];
        for ((o, q), &d) in out.chunks_exact_mut(QK).zip(q.chunks_exact(QK)).zip(s) {
            for (o, &q) in o.iter_mut().zip(q) {
                *o = d * f32::from(q);
            }
        }
    }

    /// y (m, rows) = x (m, cols) times the matrix transposed.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) {
        let (rows, cols) = (self.rows, self.cols);
        let nb = cols / QK;
        let acts = Acts::quantize(&x[..m * cols]);
        // Row by row, each row against every token while it sits in L1 (rows interleaved in
        // fours measured 2-3x slower: the streams fight). `out` is (rows of the task, m).
        let task = |first_row: usize, out: &mut [f32]| {
            for (i, out) in out.chunks_exact_mut(m).enumerate() {
                let r = first_row + i;
                let (wq, ws) = (
                    &self.quants[r * cols..(r + 1) * cols],
                    &self.scales[r * nb..(r + 1) * nb],
                );
                for (t, o) in out.iter_mut().enumerate() {
                    *o = dot(
                        wq,
                        ws,
                        &acts.quants[t * cols..(t + 1) * cols],
                        &acts.scales[t * nb..(t + 1) * nb],
                    );
                }
            }
        };
        super::rows_in_parallel(rows, m, ROWS_PER_TASK, y, task);
    }
}

/// Activations quantized per 32 values to 16 bits: scale d = amax / 32767, values round(x / d).
/// ggml rounds them to 8 bits (and d to f16) for these products; on the 270M that moved the top
/// token at about 1% of a long text's positions against the exact product, 16 bits do not.
pub struct Acts {
    quants: Vec<i16>,
    scales: Vec<f32>,
}

impl Acts {
    pub fn quantize(x: &[f32]) -> Acts {
        let (quants, scales) = quantize_i16(x, QK);
        Acts { quants, scales }
    }
}

/// `x` quantized to i16 per `block` values (whole blocks): scale amax / 32767, values round(x /
/// scale). Returns the values and one f32 scale a block.
pub fn quantize_i16(x: &[f32], block: usize) -> (Vec<i16>, Vec<f32>) {
    let mut quants = vec![0i16; x.len()];
    let mut scales = vec![0f32; x.len() / block];
    for ((xb, qb), s) in x
        .chunks_exact(block)
        .zip(quants.chunks_exact_mut(block))
        .zip(&mut scales)
    {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 32767.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (q, &v) in qb.iter_mut().zip(xb) {
            // |v * id| <= 32767 up to rounding; the clamp keeps it in range.
            *q = (v * id).round().clamp(-32767.0, 32767.0) as i16;
        }
        *s = d;
    }
    (quants, scales)
}

/// One row's dot product with one token's activations (both whole blocks, one scale each).
fn dot(wq: &[i8], ws: &[f32], xq: &[i16], xs: &[f32]) -> f32 {
    debug_assert!(wq.len() == xq.len() && ws.len() == xs.len() && wq.len() == QK * ws.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked above); the slices are whole blocks.
            return unsafe { simd::dot_avx2(wq, ws, xq, xs) };
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        // SAFETY: the slices are whole blocks.
        return unsafe { simd::dot_simd128(wq, ws, xq, xs) };
    }
    #[allow(unreachable_code)]
    dot_scalar(wq, ws, xq, xs)
}

/// The plain version of [`dot`]: exact integer sums per block, scaled and summed in f32.
pub fn dot_scalar(wq: &[i8], ws: &[f32], xq: &[i16], xs: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, (wb, xb)) in wq.chunks_exact(QK).zip(xq.chunks_exact(QK)).enumerate() {
        let sum: i32 = wb
            .iter()
            .zip(xb)
            .map(|(&w, &x)| i32::from(w) * i32::from(x))
            .sum();
        acc += ws[b] * xs[b] * sum as f32;
    }
    acc
}

mod simd {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    use super::QK;

    /// # Safety
    /// AVX2 and FMA must be available; `wq` and `xq` hold `xs.len()` whole blocks, `ws` as
    /// many scales.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(wq: &[i8], ws: &[f32], xq: &[i16], xs: &[f32]) -> f32 {
        let (wp, sp, xp, xsp) = (wq.as_ptr(), ws.as_ptr(), xq.as_ptr(), xs.as_ptr());
        let mut acc = _mm256_setzero_ps();
        for b in 0..xs.len() {
            // 16 weights widened to i16 times 16 activations, summed in pairs (at most
            // 2 * 128 * 32767 a lane), twice a block.
            let half = |k: usize| {
                _mm256_madd_epi16(
                    _mm256_cvtepi8_epi16(
                        _mm_loadu_si128(wp.add(b * QK + 16 * k) as *const __m128i),
                    ),
                    _mm256_loadu_si256(xp.add(b * QK + 16 * k) as *const __m256i),
                )
            };
            let sums = _mm256_cvtepi32_ps(_mm256_add_epi32(half(0), half(1)));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(*sp.add(b) * *xsp.add(b)), sums, acc);
        }
        let s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// # Safety
    /// `wq` and `xq` hold `xs.len()` whole blocks, `ws` as many scales.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    pub unsafe fn dot_simd128(wq: &[i8], ws: &[f32], xq: &[i16], xs: &[f32]) -> f32 {
        use std::arch::wasm32::*;
        let (wp, xp) = (wq.as_ptr(), xq.as_ptr());
        let mut acc = f32x4_splat(0.0);
        for b in 0..xs.len() {
            let (w, x) = (wp.add(b * QK), xp.add(b * QK));
            let dot8 = |k: usize| {
                i32x4_dot_i16x8(
                    i16x8_load_extend_i8x8(w.add(8 * k)),
                    v128_load(x.add(8 * k) as *const v128),
                )
            };
            let s = i32x4_add(i32x4_add(dot8(0), dot8(1)), i32x4_add(dot8(2), dot8(3)));
            let d = f32x4_splat(*ws.get_unchecked(b) * *xs.get_unchecked(b));
            acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(s), d));
        }
        f32x4_extract_lane::<0>(acc)
            + f32x4_extract_lane::<1>(acc)
            + f32x4_extract_lane::<2>(acc)
            + f32x4_extract_lane::<3>(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, Rng};

    /// The SIMD path this machine takes gives the plain one's products (exact integer sums, f32
    /// scaling in another order), the -128 weight included.
    #[test]
    fn simd_dot_products_equal_the_plain_ones() {
        let mut rng = Rng::new(11);
        let (rows, cols) = (3, 7 * QK);
        let nb = cols / QK;
        let mut w = Q8Rows::new(rows, cols).unwrap();
        for b in 0..rows * nb {
            let mut block = vec![0u8; Q8_0_BYTES];
            block[..2].copy_from_slice(&f16::from_f32(rng.uniform(0.001, 0.1)).to_le_bytes());
            for v in &mut block[2..] {
                *v = (rng.uniform(0.0, 256.0) as u32).min(255) as u8;
            }
            if b == 3 {
                block[5] = 0x80; // -128
            }
            w.push_block(&block).unwrap();
        }
        assert!(w.is_full());
        let x = rng.vec_uniform(2 * cols, -4.0, 4.0);
        let acts = Acts::quantize(&x);
        for t in 0..2 {
            let (xq, xs) = (
                &acts.quants[t * cols..(t + 1) * cols],
                &acts.scales[t * nb..(t + 1) * nb],
            );
            let rows: Vec<(&[i8], &[f32])> = (0..rows)
                .map(|r| {
                    (
                        &w.quants[r * cols..(r + 1) * cols],
                        &w.scales[r * nb..(r + 1) * nb],
                    )
                })
                .collect();
            let want: Vec<f32> = rows.iter().map(|(q, s)| dot_scalar(q, s, xq, xs)).collect();
            let got: Vec<f32> = rows.iter().map(|(q, s)| dot(q, s, xq, xs)).collect();
            assert_close(&format!("token {t}"), &want, &got, 1e-5, 1e-5);
        }
    }

    /// Not a test: the 270M's LM head product against candle's Q8_0 kernel, timed
    /// (`cargo test --lib lm_head_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn lm_head_speed() {
        speed(262_144, 640, 1);
        // A layer's gate projection in a 64-token prefill block.
        speed(2048, 640, 64);
    }

    fn speed(rows: usize, cols: usize, m: usize) {
        use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
        use candle_core::{Device, Module, Tensor};
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i % 977) as f32 - 488.0) / 500.0)
            .collect();
        let q = QTensor::quantize(
            &Tensor::from_slice(&w, (rows, cols), &Device::Cpu).unwrap(),
            GgmlDType::Q8_0,
        )
        .unwrap();
        let ours = crate::cpu::QMatrix::from_bytes(
            crate::gguf::GgmlType::Q8_0,
            rows as u64,
            cols as u64,
            &q.data().unwrap(),
        )
        .unwrap();
        let theirs = QMatMul::from_qtensor(q).unwrap();
        let x: Vec<f32> = (0..m * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let xt = Tensor::from_slice(&x, (m, cols), &Device::Cpu).unwrap();
        let mut y = vec![0f32; m * rows];
        for _ in 0..4 {
            let t = std::time::Instant::now();
            ours.matmul(&x, m, &mut y).unwrap();
            let a = t.elapsed().as_secs_f64();
            let t = std::time::Instant::now();
            let _ = theirs.forward(&xt).unwrap();
            let b = t.elapsed().as_secs_f64();
            eprintln!(
                "{rows} x {cols}, {m} tokens: ours {:.2} ms, candle {:.2} ms, {} threads",
                a * 1e3,
                b * 1e3,
                rayon::current_num_threads()
            );
        }
    }
}
