//! Quantized matrices on the host, computed on straight from their GGUF blocks.
//!
//! The blocks are candle-core's (`candle_core::quantized`): the same byte layout as ggml's, with
//! ggml's dot products against activations quantized to Q8_0 / Q8_K (AVX2 / AVX-512 natively,
//! simd128 in wasm) and candle's worker pool over the rows. candle's pool is std threads, which
//! wasm cannot start (it has none there): the shared-memory wasm build splits each product's rows
//! across rayon's pool on Web Workers instead ([`QMatrix::matmul_split`]). A matrix streams in
//! from the loader slice by slice into its block vector; nothing is dequantized but the one
//! embedding row a token needs. Q8_0 and Q5_0 matrices are kept as 8-bit rows with f32 scales
//! instead and computed by `q8.rs`, which splits its rows over rayon's pool itself (Q5_0's 5-bit
//! values widened losslessly: 64% more bytes for them, several times faster products; candle's
//! Q5_0 product has no SIMD path). Q4_K and Q6_K matrices stay in candle's blocks but their
//! products are `kquant.rs`'s, against 16-bit activations: candle's 8-bit ones moved the 270M's
//! top token at 4% of a long text's positions.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::k_quants::{
    self, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8_0,
};
use candle_core::quantized::{GgmlType as Block, QStorage, QTensor, QuantizedType};
use candle_core::{Device, Tensor};
use half::{bf16, f16};
use rayon::prelude::*;

use super::kquant::{self, KQuant};
use super::q8::{Q8Rows, Q5_0_BYTES, Q8_0_BYTES};
use crate::gguf::GgmlType;
use crate::Error;

fn candle_error(what: &str, e: candle_core::Error) -> Error {
    Error::Unsupported(format!("{what}: {e}"))
}

/// The bytes of a block vector, to be filled from the file.
///
/// Every block type candle defines here is `#[repr(C)]`, made only of `f16`, `u8` and `i8`
/// fields with no padding (candle asserts each size equals ggml's), like `f32`, `f16` and `bf16`
/// themselves: any byte pattern is a valid value, and the vector's bytes are exactly the file's.
fn bytes_mut<T: Block>(v: &mut [T]) -> &mut [u8] {
    let len = std::mem::size_of_val(v);
    // SAFETY: see above; the slice covers exactly the vector's initialized elements.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), len) }
}

/// A block vector being filled, of one of the types a GGUF weight can have.
enum Blocks {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    Q4_0(Vec<BlockQ4_0>),
    Q4_1(Vec<BlockQ4_1>),
    Q5_0(Vec<BlockQ5_0>),
    Q5_1(Vec<BlockQ5_1>),
    Q8_0(Vec<BlockQ8_0>),
    Q2K(Vec<BlockQ2K>),
    Q3K(Vec<BlockQ3K>),
    Q4K(Vec<BlockQ4K>),
    Q5K(Vec<BlockQ5K>),
    Q6K(Vec<BlockQ6K>),
}

macro_rules! each_blocks {
    ($self:expr, $v:ident => $body:expr) => {
        match $self {
            Blocks::F32($v) => $body,
            Blocks::F16($v) => $body,
            Blocks::BF16($v) => $body,
            Blocks::Q4_0($v) => $body,
            Blocks::Q4_1($v) => $body,
            Blocks::Q5_0($v) => $body,
            Blocks::Q5_1($v) => $body,
            Blocks::Q8_0($v) => $body,
            Blocks::Q2K($v) => $body,
            Blocks::Q3K($v) => $body,
            Blocks::Q4K($v) => $body,
            Blocks::Q5K($v) => $body,
            Blocks::Q6K($v) => $body,
        }
    };
}

impl Blocks {
    fn zeros(ty: GgmlType, n: usize) -> Blocks {
        fn z<T: Block>(n: usize) -> Vec<T> {
            vec![T::zeros(); n]
        }
        match ty {
            GgmlType::F32 => Blocks::F32(z(n)),
            GgmlType::F16 => Blocks::F16(z(n)),
            GgmlType::BF16 => Blocks::BF16(z(n)),
            GgmlType::Q4_0 => Blocks::Q4_0(z(n)),
            GgmlType::Q4_1 => Blocks::Q4_1(z(n)),
            GgmlType::Q5_0 => Blocks::Q5_0(z(n)),
            GgmlType::Q5_1 => Blocks::Q5_1(z(n)),
            GgmlType::Q8_0 => Blocks::Q8_0(z(n)),
            GgmlType::Q2K => Blocks::Q2K(z(n)),
            GgmlType::Q3K => Blocks::Q3K(z(n)),
            GgmlType::Q4K => Blocks::Q4K(z(n)),
            GgmlType::Q5K => Blocks::Q5K(z(n)),
            GgmlType::Q6K => Blocks::Q6K(z(n)),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        each_blocks!(self, v => bytes_mut(v))
    }

    fn into_storage(self) -> Box<dyn QuantizedType> {
        each_blocks!(self, v => Box::new(v))
    }
}

/// Dequantizes one row (`out.len()` weights) of type `ty` from its bytes.
fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    fn row<T: Block>(bytes: &[u8], out: &mut [f32]) {
        let mut blocks = vec![T::zeros(); out.len() / T::BLCK_SIZE];
        bytes_mut(&mut blocks).copy_from_slice(bytes);
        T::to_float(&blocks, out);
    }
    match ty {
        GgmlType::F32 => row::<f32>(bytes, out),
        GgmlType::F16 => row::<f16>(bytes, out),
        GgmlType::BF16 => row::<bf16>(bytes, out),
        GgmlType::Q4_0 => row::<BlockQ4_0>(bytes, out),
        GgmlType::Q4_1 => row::<BlockQ4_1>(bytes, out),
        GgmlType::Q5_0 => row::<BlockQ5_0>(bytes, out),
        GgmlType::Q5_1 => row::<BlockQ5_1>(bytes, out),
        GgmlType::Q8_0 => row::<BlockQ8_0>(bytes, out),
        GgmlType::Q2K => row::<BlockQ2K>(bytes, out),
        GgmlType::Q3K => row::<BlockQ3K>(bytes, out),
        GgmlType::Q4K => row::<BlockQ4K>(bytes, out),
        GgmlType::Q5K => row::<BlockQ5K>(bytes, out),
        GgmlType::Q6K => row::<BlockQ6K>(bytes, out),
    }
}

/// Rayon tasks per pool thread in a split matmul: a few more than threads, so that a worker the
/// browser runs slower than the others does not hold the whole product back.
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
const SPLITS_PER_THREAD: usize = 4;

/// The blocks of a matrix from candle's bytes of them.
fn blocks_of<T: Block>(bytes: &[u8]) -> Result<&[T], Error> {
    let size = std::mem::size_of::<T>();
    if bytes.len() % size != 0 || bytes.as_ptr().align_offset(std::mem::align_of::<T>()) != 0 {
        return Err(Error::Unsupported(format!(
            "{} bytes of blocks of {size} bytes, not aligned for them",
            bytes.len()
        )));
    }
    // SAFETY: the bytes are those of candle's `Vec<T>` (`QuantizedType::as_ptr`), whole blocks
    // and aligned (checked); any byte pattern is a valid block (see `bytes_mut`).
    Ok(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// y (m, n) = x (m, k) times the (n, k) blocks in `bytes` transposed, the n rows in pieces of
/// whole 4-row groups on rayon's pool, each through candle's `k_quants::matmul` on its slice.
fn split_matmul<T: Block>(
    bytes: &[u8],
    (m, k, n): (usize, usize, usize),
    x: &[f32],
    y: &mut [f32],
    pieces: usize,
) -> Result<(), Error> {
    let blocks = blocks_of::<T>(bytes)?;
    let row_blocks = k / T::BLCK_SIZE;
    if blocks.len() != n * row_blocks || x.len() != m * k || y.len() != m * n {
        return Err(Error::Unsupported(format!(
            "a split {m} x {k} x {n} matmul over {} blocks",
            blocks.len()
        )));
    }
    let err = |e| candle_error("quantized matmul", e);
    let chunk = n.div_ceil(pieces.max(1)).next_multiple_of(4);
    if m == 1 {
        // One token: each piece writes its own stretch of y.
        return y
            .par_chunks_mut(chunk)
            .zip(blocks.par_chunks(chunk * row_blocks))
            .try_for_each(|(y, w)| k_quants::matmul((1, k, y.len()), x, w, y).map_err(err));
    }
    // A block of tokens: each piece's columns of y are strided, so it fills its own (m, rows)
    // buffer, copied into place after.
    let parts = blocks
        .par_chunks(chunk * row_blocks)
        .map(|w| {
            let rows = w.len() / row_blocks;
            let mut part = vec![0f32; m * rows];
            k_quants::matmul((m, k, rows), x, w, &mut part).map_err(err)?;
            Ok(part)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    for (j, part) in parts.iter().enumerate() {
        let rows = part.len() / m;
        for (t, src) in part.chunks_exact(rows).enumerate() {
            y[t * n + j * chunk..][..rows].copy_from_slice(src);
        }
    }
    Ok(())
}

/// A (rows, cols) weight matrix in its GGUF blocks; row r holds output r's weights.
pub struct QMatrix {
    /// The type in the file.
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    weights: Weights,
}

/// Where a matrix's products are computed.
enum Weights {
    /// candle-core's blocks and kernels (Q2_K, Q3_K, Q5_K, the float types, Q4_0/Q4_1/Q5_1).
    Candle(Arc<QTensor>),
    /// Q4_K and Q6_K in candle's blocks, computed by `kquant.rs`.
    K(KQuant, Arc<QTensor>),
    /// Q8_0 and Q5_0 as 8-bit rows (`q8.rs`).
    Q8(Arc<Q8Rows>),
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "QMatrix[{} x {} {}]", self.rows, self.cols, self.ty)
    }
}

/// What a [`QMatrixBuilder`] fills.
enum Filling {
    Blocks(Blocks),
    /// 8-bit rows, decoded block by block as the bytes come: `pending` holds the start of a
    /// block cut by the end of a slice.
    Q8 {
        rows: Q8Rows,
        block_bytes: usize,
        pending: Vec<u8>,
    },
}

/// A [`QMatrix`] being streamed in: `push` the tensor's bytes in file order, then `finish`.
pub struct QMatrixBuilder {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    filling: Filling,
    /// Bytes of the tensor in the file, and how many were pushed.
    len: usize,
    filled: usize,
}

impl QMatrixBuilder {
    /// A matrix of `rows` rows of `cols` weights of type `ty`.
    pub fn new(ty: GgmlType, rows: u64, cols: u64) -> Result<Self, Error> {
        let bad = || Error::BadModel(format!("a {rows} x {cols} {ty} matrix"));
        let row_bytes = ty.row_bytes(cols).ok_or_else(bad)?;
        let len = rows.checked_mul(row_bytes).ok_or_else(bad)?;
        let len = usize::try_from(len).map_err(|_| bad())?;
        let (rows, cols) = (
            usize::try_from(rows).map_err(|_| bad())?,
            usize::try_from(cols).map_err(|_| bad())?,
        );
        if rows == 0 || cols == 0 {
            return Err(bad());
        }
        // candle's dot products of these types take blocks in pairs (asserted in debug builds).
        let paired = matches!(ty, GgmlType::Q4_1 | GgmlType::Q5_1);
        if paired && (cols / ty.block_len() as usize) % 2 == 1 {
            return Err(Error::Unsupported(format!(
                "a {ty} matrix with an odd number of blocks per row ({cols} weights) on the CPU"
            )));
        }
        let filling = match ty {
            GgmlType::Q8_0 | GgmlType::Q5_0 => Filling::Q8 {
                rows: Q8Rows::new(rows, cols)?,
                block_bytes: if ty == GgmlType::Q8_0 {
                    Q8_0_BYTES
                } else {
                    Q5_0_BYTES
                },
                pending: Vec::new(),
            },
            _ => {
                let n_blocks = rows * (cols / ty.block_len() as usize);
                let mut blocks = Blocks::zeros(ty, n_blocks);
                if blocks.bytes_mut().len() != len {
                    return Err(Error::Unsupported(format!(
                        "{ty} blocks of a different size than ggml's"
                    )));
                }
                Filling::Blocks(blocks)
            }
        };
        Ok(QMatrixBuilder {
            ty,
            rows,
            cols,
            filling,
            len,
            filled: 0,
        })
    }

    /// Bytes the whole matrix takes in the file.
    pub fn byte_len(&mut self) -> usize {
        self.len
    }

    /// The next bytes of the tensor.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        let end = self.filled + bytes.len();
        if end > self.len {
            return Err(Error::BadModel(format!(
                "{end} bytes pushed into a {}-byte matrix",
                self.len
            )));
        }
        match &mut self.filling {
            Filling::Blocks(blocks) => {
                blocks.bytes_mut()[self.filled..end].copy_from_slice(bytes);
            }
            Filling::Q8 {
                rows,
                block_bytes,
                pending,
            } => {
                let bs = *block_bytes;
                if !pending.is_empty() {
                    let take = (bs - pending.len()).min(bytes.len());
                    pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if pending.len() == bs {
                        rows.push_block(pending)?;
                        pending.clear();
                    }
                }
                let mut blocks = bytes.chunks_exact(bs);
                for block in &mut blocks {
                    rows.push_block(block)?;
                }
                pending.extend_from_slice(blocks.remainder());
            }
        }
        self.filled = end;
        Ok(())
    }

    pub fn finish(self) -> Result<QMatrix, Error> {
        if self.filled != self.len {
            return Err(Error::BadModel(format!(
                "a {}-byte matrix got {} bytes",
                self.len, self.filled
            )));
        }
        let weights = match self.filling {
            Filling::Q8 { rows, .. } if rows.is_full() => Weights::Q8(Arc::new(rows)),
            Filling::Q8 { .. } => {
                return Err(Error::BadModel("an 8-bit matrix missing blocks".into()))
            }
            Filling::Blocks(blocks) => {
                let storage = QStorage::Cpu(blocks.into_storage());
                let tensor = QTensor::new(storage, (self.rows, self.cols))
                    .map_err(|e| candle_error("quantized matrix", e))?;
                let tensor = Arc::new(tensor);
                match self.ty {
                    GgmlType::Q4K => Weights::K(KQuant::Q4K, tensor),
                    GgmlType::Q6K => Weights::K(KQuant::Q6K, tensor),
                    _ => Weights::Candle(tensor),
                }
            }
        };
        Ok(QMatrix {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            weights,
        })
    }
}

impl QMatrix {
    /// A matrix from all its bytes at once (tests, small tensors).
    pub fn from_bytes(ty: GgmlType, rows: u64, cols: u64, bytes: &[u8]) -> Result<Self, Error> {
        let mut b = QMatrixBuilder::new(ty, rows, cols)?;
        b.push(bytes)?;
        b.finish()
    }

    /// Bytes the weights take in memory.
    pub fn byte_len(&self) -> u64 {
        match &self.weights {
            Weights::Candle(t) | Weights::K(_, t) => t.storage_size_in_bytes() as u64,
            Weights::Q8(q) => q.byte_len(),
        }
    }

    /// Checks the sizes, then computes an 8-bit matrix's product in `q8.rs` or a Q4_K / Q6_K
    /// one in `kquant.rs` (both split over rayon's pool by rows themselves) and returns `None`,
    /// or returns candle's tensor for the caller's product.
    fn product_or_tensor(
        &self,
        x: &[f32],
        m: usize,
        y: &mut [f32],
    ) -> Result<Option<&Arc<QTensor>>, Error> {
        if x.len() < m * self.cols || y.len() < m * self.rows {
            return Err(Error::Unsupported(format!(
                "{m} rows through {self:?} with x of {} and y of {} values",
                x.len(),
                y.len()
            )));
        }
        match &self.weights {
            Weights::Q8(q) => {
                q.matmul(x, m, y);
                Ok(None)
            }
            Weights::K(k, t) => {
                let data = t.data().map_err(|e| candle_error("matrix bytes", e))?;
                kquant::matmul(*k, &data, self.rows, self.cols, x, m, y)?;
                Ok(None)
            }
            Weights::Candle(t) => Ok(Some(t)),
        }
    }

    /// y (m, rows) = x (m, cols) times the matrix transposed: `m` tokens at once.
    ///
    /// 8-bit rows: `q8.rs`, Q4_K / Q6_K: `kquant.rs`, both on rayon's pool. candle's types: natively and in the single-threaded
    /// wasm build on candle's pool (none in wasm); in the shared-memory wasm build with more than
    /// one rayon thread, split across rayon's.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), Error> {
        let Some(tensor) = self.product_or_tensor(x, m, y)? else {
            return Ok(());
        };
        #[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
        {
            let threads = rayon::current_num_threads();
            if threads > 1 {
                return self.matmul_split(x, m, y, threads * SPLITS_PER_THREAD);
            }
        }
        let err = |e| candle_error("quantized matmul", e);
        let xs =
            Tensor::from_slice(&x[..m * self.cols], (m, self.cols), &Device::Cpu).map_err(err)?;
        let ys = xs.apply_op1_no_bwd(tensor.as_ref()).map_err(err)?;
        let (storage, layout) = ys.storage_and_layout();
        let candle_core::Storage::Cpu(cpu) = &*storage else {
            return Err(Error::Unsupported("matmul output off the CPU".into()));
        };
        let out = cpu.as_slice::<f32>().map_err(err)?;
        let start = layout.start_offset();
        y[..m * self.rows].copy_from_slice(&out[start..start + m * self.rows]);
        Ok(())
    }

    /// [`matmul`](Self::matmul) of candle's types with the matrix's rows cut into about `pieces`
    /// ranges (multiples of 4 rows, so candle's 4-row groups stay the same), run as rayon tasks, each through
    /// candle's kernel on its own slice of blocks. Each output is the same dot product as in the
    /// unsplit kernel, so the result equals `pieces = 1` bit for bit. In wasm candle's kernel is
    /// single-threaded, so the pieces are the only parallelism; natively each piece would also
    /// use candle's pool (which is why native runs [`matmul`](Self::matmul) unsplit).
    pub fn matmul_split(
        &self,
        x: &[f32],
        m: usize,
        y: &mut [f32],
        pieces: usize,
    ) -> Result<(), Error> {
        let Some(tensor) = self.product_or_tensor(x, m, y)? else {
            return Ok(());
        };
        let data = tensor.data().map_err(|e| candle_error("matrix bytes", e))?;
        let (x, y) = (&x[..m * self.cols], &mut y[..m * self.rows]);
        let shape = (m, self.cols, self.rows);
        match self.ty {
            GgmlType::F32 => split_matmul::<f32>(&data, shape, x, y, pieces),
            GgmlType::F16 => split_matmul::<f16>(&data, shape, x, y, pieces),
            GgmlType::BF16 => split_matmul::<bf16>(&data, shape, x, y, pieces),
            GgmlType::Q4_0 => split_matmul::<BlockQ4_0>(&data, shape, x, y, pieces),
            GgmlType::Q4_1 => split_matmul::<BlockQ4_1>(&data, shape, x, y, pieces),
            GgmlType::Q5_0 => split_matmul::<BlockQ5_0>(&data, shape, x, y, pieces),
            GgmlType::Q5_1 => split_matmul::<BlockQ5_1>(&data, shape, x, y, pieces),
            GgmlType::Q8_0 => split_matmul::<BlockQ8_0>(&data, shape, x, y, pieces),
            GgmlType::Q2K => split_matmul::<BlockQ2K>(&data, shape, x, y, pieces),
            GgmlType::Q3K => split_matmul::<BlockQ3K>(&data, shape, x, y, pieces),
            GgmlType::Q4K => split_matmul::<BlockQ4K>(&data, shape, x, y, pieces),
            GgmlType::Q5K => split_matmul::<BlockQ5K>(&data, shape, x, y, pieces),
            GgmlType::Q6K => split_matmul::<BlockQ6K>(&data, shape, x, y, pieces),
        }
    }

    /// Row `r`, dequantized into `out` (`cols` values): an embedding lookup.
    pub fn row(&self, r: usize, out: &mut [f32]) -> Result<(), Error> {
        if r >= self.rows || out.len() != self.cols {
            return Err(Error::Unsupported(format!(
                "row {r} of {self:?} into {} values",
                out.len()
            )));
        }
        let tensor = match &self.weights {
            Weights::Q8(q) => {
                q.row(r, out);
                return Ok(());
            }
            Weights::Candle(t) | Weights::K(_, t) => t,
        };
        let row_bytes = self.byte_len() as usize / self.rows;
        let data: Cow<'_, [u8]> = tensor.data().map_err(|e| candle_error("matrix bytes", e))?;
        dequantize_row(self.ty, &data[r * row_bytes..(r + 1) * row_bytes], out);
        Ok(())
    }
}

/// Outputs of [`QMatrix::matmul_split`] in `pieces` that differ in any bit from the unsplit
/// kernel's (`pieces = 1`), over random matrices of the types a Q4_K_M model holds (its Q4_K and
/// Q6_K go to `kquant.rs`, which splits by rows itself; Q5_K and Q4_0 through candle's kernel are
/// the pieces' real check) and a float one, with row counts that leave a ragged last piece
/// and a 1-3 row tail after candle's 4-row groups, for one token and for blocks of tokens. The native test
/// and the threaded wasm build's `splitMatmulMismatches` both run it.
pub fn split_mismatches(pieces: usize) -> Result<usize, Error> {
    fn random<T: Block>(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        rng: &mut crate::rng::SplitMix64,
    ) -> Result<QMatrix, Error> {
        let w: Vec<f32> = (0..rows * cols)
            .map(|_| rng.unit_f64() as f32 * 2.0 - 1.0)
            .collect();
        let mut blocks = vec![T::zeros(); rows * cols / T::BLCK_SIZE];
        T::from_float(&w, &mut blocks);
        QMatrix::from_bytes(ty, rows as u64, cols as u64, bytes_mut(&mut blocks))
    }
    let mut rng = crate::rng::SplitMix64::new(12);
    let mut mismatches = 0;
    for (ty, rows, cols) in [
        (GgmlType::Q4K, 1027, 512),
        (GgmlType::Q6K, 514, 768),
        (GgmlType::Q5K, 301, 256),
        (GgmlType::Q4_0, 66, 64),
        (GgmlType::F32, 37, 40),
    ] {
        let w = match ty {
            GgmlType::Q4K => random::<BlockQ4K>(ty, rows, cols, &mut rng)?,
            GgmlType::Q6K => random::<BlockQ6K>(ty, rows, cols, &mut rng)?,
            GgmlType::Q5K => random::<BlockQ5K>(ty, rows, cols, &mut rng)?,
            GgmlType::Q4_0 => random::<BlockQ4_0>(ty, rows, cols, &mut rng)?,
            _ => random::<f32>(ty, rows, cols, &mut rng)?,
        };
        for m in [1, 3, 17] {
            let x: Vec<f32> = (0..m * cols).map(|_| rng.unit_f64() as f32 - 0.5).collect();
            let (mut whole, mut split) = (vec![0f32; m * rows], vec![1f32; m * rows]);
            w.matmul_split(&x, m, &mut whole, 1)?;
            w.matmul_split(&x, m, &mut split, pieces)?;
            mismatches += whole
                .iter()
                .zip(&split)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
        }
    }
    Ok(mismatches)
}
