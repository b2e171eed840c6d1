//! Weight matrices on the GPU: rows padded to 4 bytes, split by whole rows into pieces that
//! each fit one binding, uploaded incrementally as the loader streams the file.

use super::Gpu;
use crate::gguf::GgmlType;
use crate::Error;

/// The WGSL library (`shaders/<name>.wgsl`) holding `dequant8` for `ty`.
pub fn dequant_shader(ty: GgmlType) -> &'static str {
    match ty {
        GgmlType::F32 => "dequant_f32",
        GgmlType::F16 => "dequant_f16",
        GgmlType::BF16 => "dequant_bf16",
        GgmlType::Q4_0 => "dequant_q4_0",
        GgmlType::Q4_1 => "dequant_q4_1",
        GgmlType::Q5_0 => "dequant_q5_0",
        GgmlType::Q5_1 => "dequant_q5_1",
        GgmlType::Q8_0 => "dequant_q8_0",
        GgmlType::Q2K => "dequant_q2_k",
        GgmlType::Q3K => "dequant_q3_k",
        GgmlType::Q4K => "dequant_q4_k",
        GgmlType::Q5K => "dequant_q5_k",
        GgmlType::Q6K => "dequant_q6_k",
    }
}

/// Rows `first_row .. first_row + rows` of a weight, in one buffer, row r at byte
/// `(r - first_row) * row_stride_bytes`.
#[derive(Clone, Debug)]
pub struct WeightPiece {
    pub buffer: wgpu::Buffer,
    pub first_row: u32,
    pub rows: u32,
}

/// A `rows x cols` weight of type `ty` (GGUF's dims[1] x dims[0]); each row holds
/// `row_bytes` bytes of blocks followed by zero padding up to `row_stride_bytes`.
#[derive(Clone, Debug)]
pub struct WeightTensor {
    pub name: String,
    pub ty: GgmlType,
    pub rows: u32,
    pub cols: u32,
    pub row_bytes: u32,
    pub row_stride_bytes: u32,
    pub pieces: Vec<WeightPiece>,
}

impl WeightTensor {
    /// The piece holding `row`, and its index.
    pub fn piece_of_row(&self, row: u32) -> Option<(usize, &WeightPiece)> {
        self.pieces
            .iter()
            .enumerate()
            .find(|(_, p)| row >= p.first_row && row - p.first_row < p.rows)
    }

    /// Bytes held on the GPU.
    pub fn gpu_bytes(&self) -> u64 {
        self.pieces.iter().map(|p| p.buffer.size()).sum()
    }
}

/// An upload in progress: feed it the tensor's bytes in file order, in chunks of any size,
/// then [`WeightUpload::finish`]. Holds at most one staging chunk plus one partial row.
pub struct WeightUpload<'g> {
    gpu: &'g Gpu,
    tensor: WeightTensor,
    /// Row the next complete row will be.
    next_row: u32,
    /// Bytes of a row not yet complete.
    partial: Vec<u8>,
    /// Padded rows waiting to be written, starting at row `staged_from`.
    staged: Vec<u8>,
    staged_from: u32,
}

/// How many bytes of padded rows are gathered before one queue write.
const STAGING_BYTES: usize = 4 << 20;

impl Gpu {
    /// Starts uploading a `rows x cols` weight of type `ty`. Pieces are at most
    /// `min(max binding, max buffer)` bytes, or `max_piece_bytes` when given (tests use it to
    /// split small weights). Buffers are created now, inside error scopes, so a weight that
    /// does not fit fails before any byte is read.
    pub async fn begin_weight(
        &self,
        name: &str,
        ty: GgmlType,
        rows: u32,
        cols: u32,
        max_piece_bytes: Option<u64>,
    ) -> Result<WeightUpload<'_>, Error> {
        let row_bytes = ty.row_bytes(u64::from(cols)).ok_or_else(|| {
            Error::BadModel(format!(
                "{name}: {cols} columns is not a whole number of {} blocks",
                ty.name()
            ))
        })?;
        let stride = row_bytes
            .checked_add(3)
            .map(|v| v & !3)
            .ok_or_else(|| Error::BadModel(format!("{name}: row too large")))?;
        let limit = self.caps.max_binding.min(self.caps.max_buffer);
        let limit = max_piece_bytes.map_or(limit, |m| m.min(limit)) & !3;
        let rows_per_piece = if stride == 0 { 0 } else { limit / stride };
        if rows == 0 || rows_per_piece == 0 {
            return Err(Error::Unsupported(format!(
                "{name}: a row of {stride} bytes does not fit a binding of {limit} bytes (or no rows)"
            )));
        }
        let row_bytes_u32 = u32::try_from(row_bytes)
            .map_err(|_| Error::Unsupported(format!("{name}: row of {row_bytes} bytes")))?;
        let stride_u32 = u32::try_from(stride)
            .map_err(|_| Error::Unsupported(format!("{name}: row of {stride} bytes")))?;
        let rows_per_piece = u32::try_from(rows_per_piece).unwrap_or(u32::MAX);

        let mut specs = Vec::new();
        let mut first = 0u32;
        while first < rows {
            let n = rows_per_piece.min(rows - first);
            specs.push((first, n));
            first += n;
        }
        let pieces = self
            .scoped(&format!("allocating {name}"), || {
                specs
                    .iter()
                    .enumerate()
                    .map(|(i, &(first_row, n))| {
                        let buffer = self.storage(
                            &format!("{name}#{i}"),
                            u64::from(n) * u64::from(stride_u32),
                        )?;
                        Ok(WeightPiece {
                            buffer,
                            first_row,
                            rows: n,
                        })
                    })
                    .collect::<Result<Vec<_>, Error>>()
            })
            .await??;
        Ok(WeightUpload {
            gpu: self,
            tensor: WeightTensor {
                name: name.to_string(),
                ty,
                rows,
                cols,
                row_bytes: row_bytes_u32,
                row_stride_bytes: stride_u32,
                pieces,
            },
            next_row: 0,
            partial: Vec::new(),
            staged: Vec::new(),
            staged_from: 0,
        })
    }

    /// The rows of `parts` stacked, in order, into one weight in one buffer (copied on the
    /// GPU), so that Q, K and V, or gate and up, run as one dispatch. `None` when they differ
    /// in type or columns, are split in pieces, or together exceed one binding.
    pub async fn concat_rows(
        &self,
        name: &str,
        parts: &[&WeightTensor],
    ) -> Result<Option<WeightTensor>, Error> {
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        let same = parts.iter().all(|w| {
            w.ty == first.ty
                && w.cols == first.cols
                && w.row_stride_bytes == first.row_stride_bytes
                && w.pieces.len() == 1
        });
        let rows: u64 = parts.iter().map(|w| u64::from(w.rows)).sum();
        let bytes = rows * u64::from(first.row_stride_bytes);
        if !same || bytes > self.caps.max_binding.min(self.caps.max_buffer) {
            return Ok(None);
        }
        let buffer = self
            .scoped(&format!("allocating {name}"), || self.storage(name, bytes))
            .await??;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("concat rows"),
            });
        let mut at = 0u64;
        for w in parts {
            let len = u64::from(w.rows) * u64::from(w.row_stride_bytes);
            encoder.copy_buffer_to_buffer(&w.pieces[0].buffer, 0, &buffer, at, len);
            at += len;
        }
        self.submit(encoder.finish())?;
        Ok(Some(WeightTensor {
            name: name.to_string(),
            ty: first.ty,
            rows: rows as u32,
            cols: first.cols,
            row_bytes: first.row_bytes,
            row_stride_bytes: first.row_stride_bytes,
            pieces: vec![WeightPiece {
                buffer,
                first_row: 0,
                rows: rows as u32,
            }],
        }))
    }

    /// A whole weight from bytes already in memory (tests, small tensors).
    pub async fn upload_weight(
        &self,
        name: &str,
        ty: GgmlType,
        rows: u32,
        cols: u32,
        bytes: &[u8],
        max_piece_bytes: Option<u64>,
    ) -> Result<WeightTensor, Error> {
        let mut up = self
            .begin_weight(name, ty, rows, cols, max_piece_bytes)
            .await?;
        up.push(bytes)?;
        up.finish().await
    }
}

impl WeightUpload<'_> {
    /// Rows complete so far.
    pub fn rows_done(&self) -> u32 {
        self.next_row
    }

    /// Bytes still expected.
    pub fn bytes_left(&self) -> u64 {
        let t = &self.tensor;
        u64::from(t.rows - self.next_row) * u64::from(t.row_bytes) - self.partial.len() as u64
    }

    /// Appends the next `bytes` of the tensor (any length; rows may straddle calls).
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        if bytes.len() as u64 > self.bytes_left() {
            return Err(Error::BadModel(format!(
                "{}: {} bytes more than the tensor holds",
                self.tensor.name,
                bytes.len() as u64 - self.bytes_left()
            )));
        }
        let row_bytes = self.tensor.row_bytes as usize;
        while !bytes.is_empty() {
            if self.partial.is_empty() && bytes.len() >= row_bytes {
                let (row, rest) = bytes.split_at(row_bytes);
                self.stage_row(row)?;
                bytes = rest;
            } else {
                let want = row_bytes - self.partial.len();
                let (take, rest) = bytes.split_at(want.min(bytes.len()));
                self.partial.extend_from_slice(take);
                bytes = rest;
                if self.partial.len() == row_bytes {
                    let row = std::mem::take(&mut self.partial);
                    self.stage_row(&row)?;
                }
            }
        }
        Ok(())
    }

    fn stage_row(&mut self, row: &[u8]) -> Result<(), Error> {
        if self.staged.is_empty() {
            self.staged_from = self.next_row;
        }
        self.staged.extend_from_slice(row);
        let stride = self.tensor.row_stride_bytes as usize;
        self.staged
            .resize(self.staged.len() + stride - row.len(), 0);
        self.next_row += 1;
        let piece_ends = self
            .tensor
            .piece_of_row(self.next_row - 1)
            .is_some_and(|(_, p)| p.first_row + p.rows == self.next_row);
        if piece_ends || self.staged.len() >= STAGING_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let t = &self.tensor;
        let (_, piece) = t
            .piece_of_row(self.staged_from)
            .ok_or_else(|| Error::BadModel(format!("{}: row out of range", t.name)))?;
        let offset = u64::from(self.staged_from - piece.first_row) * u64::from(t.row_stride_bytes);
        self.gpu.write(&piece.buffer, offset, &self.staged)?;
        // Hand the queued writes to the GPU now, so staging memory does not pile up until the
        // whole model is loaded.
        self.gpu.queue.submit(std::iter::empty());
        self.staged.clear();
        Ok(())
    }

    /// Checks every byte arrived and the GPU accepted the writes.
    pub async fn finish(mut self) -> Result<WeightTensor, Error> {
        self.flush()?;
        if self.next_row != self.tensor.rows || !self.partial.is_empty() {
            return Err(Error::BadModel(format!(
                "{}: {} bytes missing",
                self.tensor.name,
                self.bytes_left()
            )));
        }
        self.gpu.check()?;
        Ok(self.tensor)
    }
}
