//! Projections y = W x bound once at load: `shaders/matvec.wgsl` for one token (decode) and
//! `shaders/matmul.wgsl` for a block of tokens (prefill), one op per piece of a split weight,
//! each piece writing its rows at its offset in y.

use crate::gpu::{dequant_shader, fold_workgroups, Gpu, Op, PipelineDesc, WeightTensor};
use crate::Error;

/// matmul.wgsl's tile: rows x tokens per workgroup.
const MATMUL_TILE_ROWS: u32 = 64;
const MATMUL_TILE_TOKENS: u32 = 32;

/// Workgroup shape of matvec.wgsl for this adapter: CPU adapters (lavapipe, SwiftShader) want
/// one thread per row, GPUs a warp per row so neighbouring threads read neighbouring bytes.
#[derive(Clone, Copy, Debug)]
pub struct MatvecShape {
    pub wg: u32,
    pub row_threads: u32,
}

impl MatvecShape {
    pub fn for_adapter(gpu: &Gpu) -> Self {
        let name = gpu.caps.adapter_name.to_lowercase();
        let cpu = ["llvmpipe", "lavapipe", "swiftshader", "software"]
            .iter()
            .any(|n| name.contains(n));
        if cpu {
            MatvecShape {
                wg: 64,
                row_threads: 1,
            }
        } else {
            MatvecShape {
                wg: 256,
                row_threads: 32,
            }
        }
    }
}

/// One weight bound to its input and output for both decode and prefill.
#[derive(Debug)]
pub struct Linear {
    pub rows: u32,
    pub cols: u32,
    /// matvec.wgsl per piece: x row 0 -> y row 0.
    one: Vec<Op>,
    /// matmul.wgsl per piece for up to `max_tokens` rows of x -> rows of y.
    many: Vec<Op>,
    max_tokens: u32,
}

impl Linear {
    /// Binds `w` to read x (tokens x cols, f32) and write y (tokens x rows, f32). `max_tokens`
    /// is the most rows a prefill block has; 0 binds decode only.
    pub async fn new(
        gpu: &Gpu,
        w: &WeightTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        max_tokens: u32,
        shape: MatvecShape,
    ) -> Result<Self, Error> {
        let tokens = u64::from(max_tokens.max(1));
        if x.size() < tokens * u64::from(w.cols) * 4 || y.size() < tokens * u64::from(w.rows) * 4 {
            return Err(Error::Unsupported(format!(
                "{}: activation buffers too small for {tokens} tokens",
                w.name
            )));
        }
        let libs = ["weights", dequant_shader(w.ty)];
        let matvec = gpu
            .pipeline(&PipelineDesc {
                kernel: "matvec",
                libs: &libs,
                constants: &[
                    ("WG", f64::from(shape.wg)),
                    ("ROW_THREADS", f64::from(shape.row_threads)),
                ],
                ..Default::default()
            })
            .await?;
        let matmul = if max_tokens > 1 {
            Some(
                gpu.pipeline(&PipelineDesc {
                    kernel: "matmul",
                    libs: &libs,
                    ..Default::default()
                })
                .await?,
            )
        } else {
            None
        };
        let rows_per_group = shape.wg / shape.row_threads.max(1);
        let mut one = Vec::with_capacity(w.pieces.len());
        let mut many = Vec::with_capacity(w.pieces.len());
        for piece in &w.pieces {
            let params = [piece.rows, w.cols, w.row_stride_bytes, piece.first_row];
            let uniform = gpu.uniform_u32(&format!("{} matvec", w.name), &params)?;
            let groups = fold_workgroups(piece.rows.div_ceil(rows_per_group.max(1)));
            let label = format!("{} matvec", w.name);
            one.push(
                gpu.scoped(&label, || {
                    gpu.op_buffers(&label, &matvec, &[&piece.buffer, x, y, &uniform], groups)
                })
                .await?,
            );
            if let Some(matmul) = &matmul {
                let params = [
                    max_tokens,
                    piece.rows,
                    w.cols,
                    w.row_stride_bytes,
                    piece.first_row,
                    w.rows,
                    0,
                    0,
                ];
                let uniform = gpu.uniform_u32(&format!("{} matmul", w.name), &params)?;
                let x_groups = piece.rows.div_ceil(MATMUL_TILE_ROWS);
                if x_groups > crate::gpu::MAX_WORKGROUPS_PER_DIM {
                    return Err(Error::Unsupported(format!(
                        "{}: {} rows in one piece",
                        w.name, piece.rows
                    )));
                }
                let label = format!("{} matmul", w.name);
                many.push(
                    gpu.scoped(&label, || {
                        gpu.op_buffers(
                            &label,
                            matmul,
                            &[&piece.buffer, x, y, &uniform],
                            [x_groups, 1, 1],
                        )
                    })
                    .await?,
                );
            }
        }
        Ok(Linear {
            rows: w.rows,
            cols: w.cols,
            one,
            many,
            max_tokens,
        })
    }

    /// Records y = W x for the first `n` token rows (1 <= n <= max_tokens).
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, n: u32) {
        if n <= 1 || self.many.is_empty() {
            for op in &self.one {
                op.record(pass);
            }
            return;
        }
        // The matmul is bound for max_tokens rows; dispatching only the token tiles that hold
        // the first n rows computes those (rows past n within the last tile are scratch).
        let tiles = n.min(self.max_tokens).div_ceil(MATMUL_TILE_TOKENS);
        for op in &self.many {
            pass.set_pipeline(&op.pipeline);
            pass.set_bind_group(0, &op.bind_group, &[]);
            pass.dispatch_workgroups(op.workgroups[0], tiles, 1);
        }
    }
}
