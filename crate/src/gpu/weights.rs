//! Weight matrices on the GPU: rows padded to 16 bytes, split by whole rows into pieces that
//! each fit one binding, uploaded incrementally as the loader streams the file.
//!
//! Most types keep GGUF's block layout. Three whose blocks are not a multiple of 16 bytes are
//! regrouped within each row at upload, eight blocks at a time, so that every field a kernel
//! reads starts on a word and the quants on 16 bytes (one `vec4<u32>` load on the kernels'
//! `weights4` view, where a lane otherwise pays a load per word, as on CPU adapters, or re-joins
//! words split by a 2-byte offset). The same bytes (Q6_K's quant bits reordered); a last group
//! of `m < 8` blocks keeps the same offsets and is padded:
//! - Q8_0 (34-byte blocks): a group is the 8 f16 scales (16 bytes), then the 8 x 32 quants.
//! - Q5_0 (22): the 8 f16 scales (16), the 8 u32 fifth-bit words (32), the 8 x 16 nibble bytes.
//! - Q6_K (210): the 8 f16 super-scales (16), then per block its 16 scales and its 6-bit values
//!   as four runs of 64 weights, 48 bytes each (208; [`push_q6_k_runs`] has the order, in which
//!   each run is three `vec4<u32>` and a matvec loads every byte once).
//!
//! The `dequant_<type>.wgsl` libraries read this layout ([`gpu_row_bytes`] gives its size).

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

/// Blocks per regrouped group (see the module note).
const GROUP_BLOCKS: usize = 8;

/// GPU rows start on this many bytes: a `vec4<u32>`.
pub const ROW_ALIGN: u64 = 16;

/// How a type's blocks are regrouped: (bytes of the group header, bytes per block after it), or
/// `None` for GGUF's layout.
fn regrouping(ty: GgmlType) -> Option<(usize, usize)> {
    match ty {
        GgmlType::Q8_0 => Some((16, 32)),
        GgmlType::Q5_0 => Some((48, 16)),
        GgmlType::Q6K => Some((16, 208)),
        _ => None,
    }
}

/// Bytes of one row of `cols` weights in the GPU layout, before padding to [`ROW_ALIGN`].
pub fn gpu_row_bytes(ty: GgmlType, cols: u64) -> Option<u64> {
    let gguf = ty.row_bytes(cols)?;
    let Some((header, per_block)) = regrouping(ty) else {
        return Some(gguf);
    };
    let blocks = cols / ty.block_len();
    let (full, rest) = (blocks / GROUP_BLOCKS as u64, blocks % GROUP_BLOCKS as u64);
    let group = (header + GROUP_BLOCKS * per_block) as u64;
    let last = if rest == 0 {
        0
    } else {
        header as u64 + rest * per_block as u64
    };
    Some(full * group + last)
}

/// A row of Q5_0 blocks as Q8_0 blocks holding the same weights.
fn q5_0_row_as_q8_0(row: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.len() / 22 * 34);
    for block in row.chunks_exact(22) {
        let block: &[u8; 22] = block.try_into().expect("chunks_exact(22)");
        out.extend_from_slice(&block[..2]);
        out.extend(crate::gguf::q5_0_values(block).map(|v| v as u8));
    }
    out
}

/// Appends a Q6_K block's 6-bit values as dequant_q6_k.wgsl's four runs of 64 weights: per run,
/// 32 bytes of low nibbles (byte `l`: weight `l` low, weight `32 + l` high) and 16 bytes of high
/// bit pairs (bits `2s..2s + 1` of byte `4m + c`: weight `32 (s / 2) + 16 (s % 2) + 4m + c`).
fn push_q6_k_runs(b: &[u8; 210], out: &mut Vec<u8>) {
    // GGUF: weight w is in half h = w / 128, quarter r = (w % 128) / 32, at l = w % 32; its low
    // bits are nibble r / 2 of ql[64h + 32 (r % 2) + l], its high bits 2r, 2r + 1 of qh[32h + l].
    // Run j is quarters 2 (j % 2) and 2 (j % 2) + 1 of half j / 2: nibble j % 2 of the half's ql
    // bytes 0..31 and 32..63.
    for run in 0..4 {
        let (h, r0) = (run / 2, 2 * (run % 2));
        let ql = &b[64 * h..64 * h + 64];
        let qh = &b[128 + 32 * h..160 + 32 * h];
        let nib = 2 * r0;
        out.extend((0..32).map(|l| ((ql[l] >> nib) & 15) | (((ql[32 + l] >> nib) & 15) << 4)));
        out.extend((0..16).map(|byte| {
            (0..4).fold(0u8, |acc, s| {
                acc | (((qh[16 * (s % 2) + byte] >> (2 * (r0 + s / 2))) & 3) << (2 * s))
            })
        }));
    }
}

/// Appends one GGUF row of `ty` to `out` in the GPU layout (unpadded).
fn push_gpu_row(ty: GgmlType, row: &[u8], out: &mut Vec<u8>) {
    let Some((header, per_block)) = regrouping(ty) else {
        out.extend_from_slice(row);
        return;
    };
    let bb = ty.block_bytes() as usize;
    for group in row.chunks(GROUP_BLOCKS * bb) {
        let start = out.len();
        out.resize(start + header, 0);
        for (j, b) in group.chunks_exact(bb).enumerate() {
            match ty {
                GgmlType::Q8_0 => {
                    // d f16 @0, quants @2.
                    out[start + 2 * j..start + 2 * j + 2].copy_from_slice(&b[..2]);
                    out.extend_from_slice(&b[2..34]);
                }
                GgmlType::Q5_0 => {
                    // d f16 @0, qh u32 @2, nibbles @6.
                    out[start + 2 * j..start + 2 * j + 2].copy_from_slice(&b[..2]);
                    out[start + 16 + 4 * j..start + 20 + 4 * j].copy_from_slice(&b[2..6]);
                    out.extend_from_slice(&b[6..22]);
                }
                _ => {
                    // Q6_K: ql @0, qh @128, scales @192, d f16 @208.
                    out[start + 2 * j..start + 2 * j + 2].copy_from_slice(&b[208..210]);
                    out.extend_from_slice(&b[192..208]);
                    push_q6_k_runs(b.try_into().expect("chunks_exact(210)"), out);
                }
            }
        }
        debug_assert_eq!(
            out.len() - start,
            header + group.len() / bb * per_block,
            "{ty:?} group"
        );
    }
}

/// The WGSL libraries a matvec of `ty` reads its weights through: `weights`, the type's, and for
/// types whose weights share no fields `dot_no_head` (the `RUN`, `Head`, `head256`, `dot_run`
/// and `dequant32h` that matvec.wgsl and matmul_rows.wgsl call, over the type's `dot32` and
/// `dequant8`).
pub fn matvec_libs(ty: GgmlType) -> Vec<&'static str> {
    let own_head = matches!(
        ty,
        GgmlType::Q8_0 | GgmlType::Q5_0 | GgmlType::Q4K | GgmlType::Q6K
    );
    let mut libs = vec!["weights", dequant_shader(ty)];
    if !own_head {
        libs.push("dot_no_head");
    }
    libs
}

/// Rows `first_row .. first_row + rows` of a weight, in one buffer, row r at byte
/// `(r - first_row) * row_stride_bytes`.
#[derive(Clone, Debug)]
pub struct WeightPiece {
    pub buffer: wgpu::Buffer,
    pub first_row: u32,
    pub rows: u32,
}

/// A `rows x cols` weight of type `ty` (GGUF's dims[1] x dims[0]); each row holds its blocks
/// in the GPU layout (see the module note) followed by zero padding up to `row_stride_bytes`.
/// `row_bytes` is the size of a row in the file.
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
    /// The type of the bytes pushed (the tensor's may be wider, see [`Gpu::begin_weight_as`]).
    file_ty: GgmlType,
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
        self.begin_weight_as(name, ty, ty, rows, cols, max_piece_bytes)
            .await
    }

    /// [`Gpu::begin_weight`] of a file's `file_ty` rows held on the GPU as `gpu_ty`: the same
    /// type, or Q5_0 widened to Q8_0 (exactly: same scales, the 5-bit values as i8), so that
    /// a Q5_0 weight stacks with a Q8_0 one into one matvec.
    pub async fn begin_weight_as(
        &self,
        name: &str,
        file_ty: GgmlType,
        ty: GgmlType,
        rows: u32,
        cols: u32,
        max_piece_bytes: Option<u64>,
    ) -> Result<WeightUpload<'_>, Error> {
        if file_ty != ty && (file_ty, ty) != (GgmlType::Q5_0, GgmlType::Q8_0) {
            return Err(Error::Unsupported(format!(
                "{name}: {file_ty} held as {ty}"
            )));
        }
        let row_bytes = file_ty.row_bytes(u64::from(cols)).ok_or_else(|| {
            Error::BadModel(format!(
                "{name}: {cols} columns is not a whole number of {} blocks",
                file_ty.name()
            ))
        })?;
        let stride = gpu_row_bytes(ty, u64::from(cols))
            .and_then(|b| b.checked_next_multiple_of(ROW_ALIGN))
            .ok_or_else(|| Error::BadModel(format!("{name}: row too large")))?;
        let limit = self.caps.max_binding.min(self.caps.max_buffer);
        let limit = max_piece_bytes.map_or(limit, |m| m.min(limit)) & !(ROW_ALIGN - 1);
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
            file_ty,
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
        let start = self.staged.len();
        if self.file_ty == self.tensor.ty {
            push_gpu_row(self.tensor.ty, row, &mut self.staged);
        } else {
            push_gpu_row(self.tensor.ty, &q5_0_row_as_q8_0(row), &mut self.staged);
        }
        let stride = self.tensor.row_stride_bytes as usize;
        self.staged.resize(start + stride, 0);
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
