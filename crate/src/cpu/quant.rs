//! Quantized matrices on the host, computed on straight from their GGUF blocks.
//!
//! The blocks are candle-core's (`candle_core::quantized`): the same byte layout as ggml's, with
//! ggml's dot products against activations quantized to Q8_0 / Q8_K (AVX2 / AVX-512 natively,
//! simd128 in wasm) and candle's worker pool over the rows. A matrix streams in from the loader
//! slice by slice into its block vector; nothing is dequantized but the one embedding row a token
//! needs. Q8_0 and Q5_0 matrices are kept as 8-bit rows with f32 scales instead and computed by
//! `q8.rs` (Q5_0's 5-bit values widened losslessly: 64% more bytes for them, several times faster
//! products; candle's Q5_0 product has no SIMD path).

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::k_quants::{
    BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1, BlockQ6K,
    BlockQ8_0,
};
use candle_core::quantized::{GgmlType as Block, QStorage, QTensor, QuantizedType};
use candle_core::{Device, Tensor};
use half::{bf16, f16};

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
    /// candle-core's blocks and kernels (the k-quants, the float types, Q4_0/Q4_1/Q5_1).
    Candle(Arc<QTensor>),
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
                Weights::Candle(Arc::new(tensor))
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
            Weights::Candle(t) => t.storage_size_in_bytes() as u64,
            Weights::Q8(q) => q.byte_len(),
        }
    }

    /// y (m, rows) = x (m, cols) times the matrix transposed: `m` tokens at once.
    pub fn matmul(&self, x: &[f32], m: usize, y: &mut [f32]) -> Result<(), Error> {
        if x.len() < m * self.cols || y.len() < m * self.rows {
            return Err(Error::Unsupported(format!(
                "{m} rows through {self:?} with x of {} and y of {} values",
                x.len(),
                y.len()
            )));
        }
        let tensor = match &self.weights {
            Weights::Q8(q) => {
                q.matmul(x, m, y);
                return Ok(());
            }
            Weights::Candle(t) => t,
        };
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
            Weights::Candle(t) => t,
        };
        let row_bytes = self.byte_len() as usize / self.rows;
        let data: Cow<'_, [u8]> = tensor.data().map_err(|e| candle_error("matrix bytes", e))?;
        dequantize_row(self.ty, &data[r * row_bytes..(r + 1) * row_bytes], out);
        Ok(())
    }
}
