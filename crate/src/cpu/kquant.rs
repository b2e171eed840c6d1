//! Products with Q4_K and Q6_K matrices (the bulk of a Q4_K_M file) straight from their GGUF
//! blocks, against activations quantized to 16 bits.
//!
//! ggml (and candle, which follows it) quantizes activations to 8 bits per 256 values (Q8_K) for
//! these products. On the 270M model that rounding alone moved the top token away from the exact
//! product's at 4% of the positions of a long text (teacher-forced, against the GPU engine's f32
//! activations; with the weights dequantized to f32 the two engines agreed everywhere). Here each
//! block of 256 activations gets an f32 scale amax / 32767 and i16 values, 256 times finer, and
//! the integer sums are exact: products of small integers and i16 summed in i32 per 16 values.
//! In wasm this costs little over 8 bits (simd128 has no 8-bit dot product; both widen to i16
//! and use `i32x4.dot_i16x8_s`). With AVX2 `vpmaddwd` takes 16 products an instruction where
//! `vpmaddubsw` takes 32: natively this kernel is about 2x slower than candle's on a decode
//! matvec and 2-4x on a 64-token block (`cargo test --lib kquant_speed -- --ignored
//! --nocapture`, with the crate at opt-level 3); splitting the activations into two bytes for
//! `vpmaddubsw` would win that back.
//!
//! A row's block is unpacked once into 256 small integers and then meets every token of the
//! product while it is in L1; rows are split across rayon's pool, as in `q8.rs`.
//!
//! Block layouts (ggml's `block_q4_K`, `block_q6_K`):
//! - Q4_K, 144 bytes: d (f16), dmin (f16), 12 bytes of 6-bit scales and mins of 8 sub-blocks of
//!   32, then 128 bytes of 4-bit values: for each 64 values, 32 bytes whose low nibbles are the
//!   first 32 and high nibbles the next 32. Weight = d * scale * q - dmin * min.
//! - Q6_K, 210 bytes: 128 bytes of low nibbles, 64 of high 2-bit pairs, 16 i8 scales of
//!   sub-blocks of 16, d (f16). Weight = d * scale * (q - 32), q in 0..64.

use half::f16;

use super::q8::quantize_i16;
use crate::Error;

/// Values per block.
pub const QK_K: usize = 256;
pub const Q4_K_BYTES: usize = 144;
pub const Q6_K_BYTES: usize = 210;
/// Values per sub-block sum.
const SUB: usize = 16;
/// Rows of one parallel work item.
const ROWS_PER_TASK: usize = 32;

/// The two block types computed here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KQuant {
    Q4K,
    Q6K,
}

impl KQuant {
    pub fn block_bytes(self) -> usize {
        match self {
            KQuant::Q4K => Q4_K_BYTES,
            KQuant::Q6K => Q6_K_BYTES,
        }
    }
}

/// Activations quantized per 256 values to i16 (scale amax / 32767), with the sum of each 16
/// quantized values (exact in f32: at most 16 * 32767).
pub struct Acts16 {
    quants: Vec<i16>,
    scales: Vec<f32>,
    sums: Vec<f32>,
}

impl Acts16 {
    pub fn quantize(x: &[f32]) -> Acts16 {
        let (quants, scales) = quantize_i16(x, QK_K);
        let sums = quants
            .chunks_exact(SUB)
            .map(|c| c.iter().map(|&q| i32::from(q)).sum::<i32>() as f32)
            .collect();
        Acts16 {
            quants,
            scales,
            sums,
        }
    }
}

/// One block unpacked: its 256 values (0..16 for Q4_K, 0..64 for Q6_K) in activation order as
/// i16, and per 16 values the multiplier of their integer sum with x and the one of x's sum that
/// is subtracted (Q4_K: d * scale and dmin * min; Q6_K: d * scale and d * scale * 32). A block's
/// product with x (scale xd) is xd * sum_g (scale_g * (q . x)_g - offset_g * sum(x)_g).
struct Unpacked {
    q: [i16; QK_K],
    scale: [f32; GROUPS],
    offset: [f32; GROUPS],
}

/// Groups of [`SUB`] values in a block.
const GROUPS: usize = QK_K / SUB;

impl Unpacked {
    fn new() -> Self {
        Unpacked {
            q: [0; QK_K],
            scale: [0.0; GROUPS],
            offset: [0.0; GROUPS],
        }
    }

    #[inline(always)]
    fn fill(&mut self, ty: KQuant, b: &[u8]) {
        let half = |i: usize| f16::from_le_bytes([b[i], b[i + 1]]).to_f32();
        match ty {
            KQuant::Q4K => {
                let (d, dmin) = (half(0), half(2));
                let s = &b[4..16];
                for j in 0..8 {
                    let (sc, m) = if j < 4 {
                        (s[j] & 63, s[j + 4] & 63)
                    } else {
                        (
                            (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
                            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
                        )
                    };
                    for k in 0..2 {
                        self.scale[2 * j + k] = d * f32::from(sc);
                        self.offset[2 * j + k] = dmin * f32::from(m);
                    }
                }
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                {
                    // SAFETY: a Q4_K block is 144 bytes (checked by the caller's chunking).
                    return unsafe { simd::unpack_q4k_simd128(&mut self.q, b) };
                }
                #[allow(unreachable_code)]
                let qs = &b[16..144];
                for j in 0..4 {
                    let (src, dst) = (&qs[32 * j..32 * j + 32], &mut self.q[64 * j..64 * j + 64]);
                    for i in 0..32 {
                        dst[i] = i16::from(src[i] & 0xF);
                        dst[32 + i] = i16::from(src[i] >> 4);
                    }
                }
            }
            KQuant::Q6K => {
                let d = half(208);
                for (g, &s) in b[192..208].iter().enumerate() {
                    let s = d * f32::from(s as i8);
                    self.scale[g] = s;
                    self.offset[g] = 32.0 * s;
                }
                #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
                {
                    // SAFETY: a Q6_K block is 210 bytes (checked by the caller's chunking).
                    return unsafe { simd::unpack_q6k_simd128(&mut self.q, b) };
                }
                #[allow(unreachable_code)]
                for h in 0..2 {
                    let ql = &b[64 * h..64 * h + 64];
                    let qh = &b[128 + 32 * h..128 + 32 * h + 32];
                    let dst = &mut self.q[128 * h..128 * h + 128];
                    for l in 0..32 {
                        dst[l] = i16::from((ql[l] & 0xF) | ((qh[l] & 3) << 4));
                        dst[32 + l] = i16::from((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
                        dst[64 + l] = i16::from((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
                        dst[96 + l] = i16::from((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
                    }
                }
            }
        }
    }
}

/// y (m, rows) = x (m, cols) times the matrix transposed, for a matrix given as its GGUF bytes
/// (`rows` rows of `cols / 256` blocks of `ty`).
pub fn matmul(
    ty: KQuant,
    data: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    m: usize,
    y: &mut [f32],
) -> Result<(), Error> {
    let nb = cols / QK_K;
    let row_bytes = nb * ty.block_bytes();
    if !cols.is_multiple_of(QK_K)
        || data.len() < rows * row_bytes
        || x.len() < m * cols
        || y.len() < m * rows
    {
        return Err(Error::Unsupported(format!(
            "a {rows} x {cols} {ty:?} product of {m} tokens with {} bytes",
            data.len()
        )));
    }
    let acts = Acts16::quantize(&x[..m * cols]);
    let path = Path::detect();
    // `out` is (rows of the task, m).
    let task = |first_row: usize, out: &mut [f32]| {
        let job = Rows {
            ty,
            data,
            row_bytes,
            nb,
            first_row,
            acts: &acts,
            m,
        };
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Path::detect` found AVX2 and FMA.
            Path::Avx2 => unsafe { job.run_avx2(out) },
            _ => job.run(path, out),
        }
    };
    super::rows_in_parallel(rows, m, ROWS_PER_TASK, y, task);
    Ok(())
}

/// The SIMD a product takes on this machine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Plain,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Path {
    fn detect() -> Path {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Path::Avx2;
            }
        }
        Path::Plain
    }
}

/// One parallel task: rows first_row.. of a product, each against every token.
struct Rows<'a> {
    ty: KQuant,
    data: &'a [u8],
    row_bytes: usize,
    nb: usize,
    first_row: usize,
    acts: &'a Acts16,
    m: usize,
}

impl Rows<'_> {
    /// Fills `out` (rows of the task, m): each row's block is unpacked once for every token.
    /// Inlined into each SIMD entry point so that everything in it is compiled for that SIMD.
    #[inline(always)]
    fn run(&self, path: Path, out: &mut [f32]) {
        let (m, nb, a) = (self.m, self.nb, self.acts);
        let mut u = Unpacked::new();
        let mut acc = vec![[0f32; 8]; m];
        for (i, out) in out.chunks_exact_mut(m).enumerate() {
            let r = self.first_row + i;
            let row = &self.data[r * self.row_bytes..(r + 1) * self.row_bytes];
            acc.iter_mut().for_each(|a| *a = [0.0; 8]);
            for (b, block) in row.chunks_exact(self.ty.block_bytes()).enumerate() {
                u.fill(self.ty, block);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let xb = t * nb + b;
                    let (xq, xsums, xd) = (
                        &a.quants[xb * QK_K..(xb + 1) * QK_K],
                        &a.sums[xb * GROUPS..(xb + 1) * GROUPS],
                        a.scales[xb],
                    );
                    Self::add(path, acc, &u, xq, xsums, xd);
                }
            }
            for (o, a) in out.iter_mut().zip(&acc) {
                *o = a.iter().sum();
            }
        }
    }

    /// One block's product with one token's block, on `path`.
    #[inline(always)]
    fn add(path: Path, acc: &mut [f32; 8], u: &Unpacked, xq: &[i16], xsums: &[f32], xd: f32) {
        debug_assert!(xq.len() == QK_K && xsums.len() == GROUPS);
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: this path is taken only where AVX2 and FMA are (`Path::detect`).
            Path::Avx2 => unsafe { simd::add_block_avx2(acc, u, xq, xsums, xd) },
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            // SAFETY: whole blocks.
            Path::Plain => unsafe { simd::add_block_simd128(acc, u, xq, xsums, xd) },
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            Path::Plain => add_block_scalar(acc, u, xq, xsums, xd),
        }
    }

    /// # Safety
    /// AVX2 and FMA must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, out: &mut [f32]) {
        self.run(Path::Avx2, out)
    }
}

#[cfg_attr(
    all(target_arch = "wasm32", target_feature = "simd128"),
    allow(dead_code)
)]
/// One block's product with one block of activations (`xq`, its sums per 16, scale `xd`) added
/// to `acc`: exact integer sums per 16 values, scaled in f32.
fn add_block_scalar(acc: &mut [f32; 8], u: &Unpacked, xq: &[i16], xsums: &[f32], xd: f32) {
    let mut block = 0f32;
    for g in 0..GROUPS {
        let isum: i32 = u.q[g * SUB..(g + 1) * SUB]
            .iter()
            .zip(&xq[g * SUB..(g + 1) * SUB])
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        block += u.scale[g] * isum as f32 - u.offset[g] * xsums[g];
    }
    acc[0] += xd * block;
}

mod simd {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    #[allow(unused_imports)]
    use super::{Unpacked, GROUPS, SUB};

    /// # Safety
    /// AVX2 and FMA must be available; `xq` holds 256 values and `xsums` 16.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn add_block_avx2(
        acc: &mut [f32; 8],
        u: &Unpacked,
        xq: &[i16],
        xsums: &[f32],
        xd: f32,
    ) {
        let (qp, xp) = (u.q.as_ptr(), xq.as_ptr());
        let mut block = _mm256_setzero_ps();
        for g in 0..GROUPS {
            // 16 values below 64 times 16 i16, summed in pairs: |lane| <= 2 * 63 * 32767.
            let p = _mm256_madd_epi16(
                _mm256_loadu_si256(qp.add(g * SUB) as *const __m256i),
                _mm256_loadu_si256(xp.add(g * SUB) as *const __m256i),
            );
            block = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(u.scale[g]), block);
        }
        let (op, sp) = (u.offset.as_ptr(), xsums.as_ptr());
        let off = _mm256_fmadd_ps(
            _mm256_loadu_ps(op),
            _mm256_loadu_ps(sp),
            _mm256_mul_ps(_mm256_loadu_ps(op.add(8)), _mm256_loadu_ps(sp.add(8))),
        );
        let a = _mm256_fmadd_ps(
            _mm256_set1_ps(xd),
            _mm256_sub_ps(block, off),
            _mm256_loadu_ps(acc.as_ptr()),
        );
        _mm256_storeu_ps(acc.as_mut_ptr(), a);
    }

    /// [`Unpacked::fill`]'s values of a Q4_K block, 16 bytes at a time (LLVM leaves the plain
    /// loop scalar in wasm).
    ///
    /// # Safety
    /// `b` holds a whole Q4_K block (144 bytes).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline]
    pub unsafe fn unpack_q4k_simd128(q: &mut [i16; super::QK_K], b: &[u8]) {
        use std::arch::wasm32::*;
        debug_assert!(b.len() >= super::Q4_K_BYTES);
        let (qs, dst) = (b.as_ptr().add(16), q.as_mut_ptr());
        let mask = u8x16_splat(0x0F);
        let store16 = |at: *mut i16, v: v128| {
            v128_store(at as *mut v128, u16x8_extend_low_u8x16(v));
            v128_store(at.add(8) as *mut v128, u16x8_extend_high_u8x16(v));
        };
        for j in 0..4 {
            for h in 0..2 {
                let v = v128_load(qs.add(32 * j + 16 * h) as *const v128);
                store16(dst.add(64 * j + 16 * h), v128_and(v, mask));
                store16(dst.add(64 * j + 32 + 16 * h), u8x16_shr(v, 4));
            }
        }
    }

    /// [`Unpacked::fill`]'s values of a Q6_K block, 16 at a time.
    ///
    /// # Safety
    /// `b` holds a whole Q6_K block (210 bytes).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline]
    pub unsafe fn unpack_q6k_simd128(q: &mut [i16; super::QK_K], b: &[u8]) {
        use std::arch::wasm32::*;
        debug_assert!(b.len() >= super::Q6_K_BYTES);
        let (p, dst) = (b.as_ptr(), q.as_mut_ptr());
        let (low4, low2) = (u8x16_splat(0x0F), u8x16_splat(3));
        let store16 = |at: *mut i16, v: v128| {
            v128_store(at as *mut v128, u16x8_extend_low_u8x16(v));
            v128_store(at.add(8) as *mut v128, u16x8_extend_high_u8x16(v));
        };
        for h in 0..2 {
            for l in [0usize, 16] {
                let a = v128_load(p.add(64 * h + l) as *const v128);
                let c = v128_load(p.add(64 * h + 32 + l) as *const v128);
                let hi = v128_load(p.add(128 + 32 * h + l) as *const v128);
                let bits = |k: u32| i8x16_shl(v128_and(u8x16_shr(hi, 2 * k), low2), 4);
                let d = dst.add(128 * h + l);
                store16(d, v128_or(v128_and(a, low4), bits(0)));
                store16(d.add(32), v128_or(v128_and(c, low4), bits(1)));
                store16(d.add(64), v128_or(u8x16_shr(a, 4), bits(2)));
                store16(d.add(96), v128_or(u8x16_shr(c, 4), bits(3)));
            }
        }
    }

    /// # Safety
    /// `xq` holds 256 values and `xsums` 16.
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[inline]
    pub unsafe fn add_block_simd128(
        acc: &mut [f32; 8],
        u: &Unpacked,
        xq: &[i16],
        xsums: &[f32],
        xd: f32,
    ) {
        use std::arch::wasm32::*;
        let (qp, xp) = (u.q.as_ptr(), xq.as_ptr());
        let mut block = f32x4_splat(0.0);
        for g in 0..GROUPS {
            let at = |k: usize| {
                (
                    qp.add(g * SUB + k) as *const v128,
                    xp.add(g * SUB + k) as *const v128,
                )
            };
            let ((q0, x0), (q1, x1)) = (at(0), at(8));
            let p = i32x4_add(
                i32x4_dot_i16x8(v128_load(q0), v128_load(x0)),
                i32x4_dot_i16x8(v128_load(q1), v128_load(x1)),
            );
            block = f32x4_add(
                block,
                f32x4_mul(f32x4_convert_i32x4(p), f32x4_splat(u.scale[g])),
            );
        }
        let (op, sp) = (
            u.offset.as_ptr() as *const v128,
            xsums.as_ptr() as *const v128,
        );
        let mut off = f32x4_splat(0.0);
        for k in 0..GROUPS / 4 {
            off = f32x4_add(off, f32x4_mul(v128_load(op.add(k)), v128_load(sp.add(k))));
        }
        let ap = acc.as_mut_ptr() as *mut v128;
        let a = f32x4_add(
            v128_load(ap),
            f32x4_mul(f32x4_splat(xd), f32x4_sub(block, off)),
        );
        v128_store(ap, a);
    }
}

/// The largest error of [`matmul`]'s products against the exact ones (f64, candle's dequantized
/// weights), relative to each product's sum of |w x|, over random Q4_K and Q6_K matrices (odd row
/// counts, several blocks, 1, 3 and 17 tokens, activations with outliers). The native unit test
/// and the browser's kernel tests (`crate/tests/web_kernels.rs`, simd128) both run it; with
/// 16-bit activations it stays below 1e-3 (about 2e-4 at worst), with 8-bit ones it is about 1e-2.
pub fn worst_relative_error(seed: u64) -> Result<f64, Error> {
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let err = |e: candle_core::Error| Error::Unsupported(format!("check: {e}"));
    let mut rng = crate::rng::SplitMix64::new(seed);
    let mut normal = || {
        // Sum of uniforms: near-normal, enough here.
        (0..4).map(|_| rng.unit_f64() as f32).sum::<f32>() - 2.0
    };
    let mut worst = 0f64;
    for (ty, dt) in [(KQuant::Q4K, GgmlDType::Q4K), (KQuant::Q6K, GgmlDType::Q6K)] {
        for (rows, cols, m) in [(37, 3 * QK_K, 1), (65, QK_K, 3), (3, 2 * QK_K, 17)] {
            let w: Vec<f32> = (0..rows * cols).map(|_| normal()).collect();
            let q = QTensor::quantize(
                &Tensor::from_slice(&w, (rows, cols), &Device::Cpu).map_err(err)?,
                dt,
            )
            .map_err(err)?;
            let wd = q
                .dequantize(&Device::Cpu)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(err)?;
            let mut x: Vec<f32> = (0..m * cols).map(|_| normal()).collect();
            for i in (7..x.len()).step_by(97) {
                x[i] *= 40.0;
            }
            let mut y = vec![0f32; m * rows];
            matmul(ty, &q.data().map_err(err)?, rows, cols, &x, m, &mut y)?;
            worst = worst.max(crate::testing::worst_product_error(
                &wd, &x, &y, rows, cols, m,
            ));
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::Rng;
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    fn quantized(ty: KQuant, w: &[f32], rows: usize, cols: usize) -> QTensor {
        let dt = match ty {
            KQuant::Q4K => GgmlDType::Q4K,
            KQuant::Q6K => GgmlDType::Q6K,
        };
        QTensor::quantize(
            &Tensor::from_slice(w, (rows, cols), &Device::Cpu).unwrap(),
            dt,
        )
        .unwrap()
    }

    /// Products within 1e-3 of the sum of |w x| of the exact ones (8-bit activations miss it).
    #[test]
    fn products_equal_the_exact_ones_of_the_dequantized_weights() {
        for seed in [5, 6] {
            let e = worst_relative_error(seed).unwrap();
            assert!(
                e <= 1e-3,
                "seed {seed}: worst error {e:e} of the sum of |w x|"
            );
        }
    }

    /// The SIMD path this machine takes gives the plain one's block products, at the extremes
    /// of both ranges.
    #[test]
    fn simd_blocks_equal_the_plain_ones() {
        let mut rng = Rng::new(9);
        let mut u = Unpacked::new();
        let mut xq = vec![0i16; QK_K];
        for (q, x) in u.q.iter_mut().zip(&mut xq) {
            *q = rng.below(64) as i16;
            *x = (rng.below(65535) as i32 - 32767) as i16;
        }
        (u.q[0], xq[0], u.q[1], xq[1]) = (63, 32767, 63, -32767);
        for g in 0..GROUPS {
            u.scale[g] = rng.uniform(-0.01, 0.01);
            u.offset[g] = rng.uniform(0.0, 0.01);
        }
        let xsums: Vec<f32> = xq
            .chunks_exact(SUB)
            .map(|c| c.iter().map(|&v| i32::from(v)).sum::<i32>() as f32)
            .collect();
        let (mut a, mut b) = ([0f32; 8], [0.5f32; 8]);
        add_block_scalar(&mut a, &u, &xq, &xsums, 1e-3);
        let path = Path::detect();
        Rows::add(path, &mut b, &u, &xq, &xsums, 1e-3);
        let (want, got) = (a.iter().sum::<f32>() + 4.0, b.iter().sum::<f32>());
        assert!(
            (want - got).abs() <= 1e-5 * want.abs().max(1.0),
            "{got} vs {want}"
        );
    }

    /// Not a test: a 270M layer's gate projection (Q4_K) and down projection (Q6_K) against
    /// candle's kernels, timed (`cargo test --lib kquant_speed -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn kquant_speed() {
        use candle_core::quantized::QMatMul;
        use candle_core::Module;
        for (ty, rows, cols) in [(KQuant::Q4K, 4096, 1024), (KQuant::Q6K, 1024, 4096)] {
            for m in [1, 64] {
                let w: Vec<f32> = (0..rows * cols)
                    .map(|i| ((i % 977) as f32 - 488.0) / 500.0)
                    .collect();
                let q = quantized(ty, &w, rows, cols);
                let data = q.data().unwrap().to_vec();
                let theirs = QMatMul::from_qtensor(q).unwrap();
                let x: Vec<f32> = (0..m * cols).map(|i| (i as f32 * 0.37).sin()).collect();
                let xt = Tensor::from_slice(&x, (m, cols), &Device::Cpu).unwrap();
                let mut y = vec![0f32; m * rows];
                for _ in 0..3 {
                    let t = std::time::Instant::now();
                    matmul(ty, &data, rows, cols, &x, m, &mut y).unwrap();
                    let a = t.elapsed().as_secs_f64();
                    let t = std::time::Instant::now();
                    let _ = theirs.forward(&xt).unwrap();
                    let b = t.elapsed().as_secs_f64();
                    eprintln!(
                        "{ty:?} {rows} x {cols}, {m} tokens: ours {:.2} ms, candle {:.2} ms",
                        a * 1e3,
                        b * 1e3
                    );
                }
            }
        }
    }
}
