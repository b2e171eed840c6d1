//! Products with quantized weights: `shaders/matvec.wgsl` (decode, y = W x) and
//! `shaders/matmul.wgsl` (prefill, Y = X W^T), one pipeline per weight type, dequantizing in
//! registers. A weight split into pieces (larger than one binding) gets one dispatch per
//! piece, each writing its own rows of the output.

use super::op::need_floats;
use super::weights::{dequant_shader, matvec_libs, WeightPiece, WeightTensor};
use super::{fold_workgroups, Enable, Gpu, Op, PipelineDesc};
use crate::Error;

/// Columns per matmul k-step and per `dot32` call: every weight type's blocks are a multiple.
pub const COL_MULTIPLE: u32 = 32;
/// Rows x tokens of one matmul workgroup (matmul.wgsl's `TILE_ROWS`, `TILE_TOKENS`).
pub const MATMUL_TILE_ROWS: u32 = 64;
pub const MATMUL_TILE_TOKENS: u32 = 32;

/// How matvec.wgsl spreads rows over threads (its `WG` and `ROW_THREADS` overrides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatvecShape {
    /// Threads per workgroup, at most 256.
    pub workgroup: u32,
    /// Threads sharing one row: a power of two dividing `workgroup`.
    pub row_threads: u32,
    /// Rows per thread, 1..=4 (more than 1 only with one thread a row): each block of x a
    /// thread loads serves that many rows.
    pub rows_per_thread: u32,
}

impl MatvecShape {
    /// One thread per row: fastest on CPU adapters, where a "thread" is a SIMD lane and the
    /// cross-lane reduction costs more than it saves. Four rows a thread: each x load serves
    /// four rows (the Q8_0 LM head of the 270M took 39-47 ms a token against 52 with two, in
    /// `bench --profile` runs interleaved on lavapipe).
    pub const CPU: MatvecShape = MatvecShape {
        workgroup: 64,
        row_threads: 1,
        rows_per_thread: 4,
    };
    /// A warp per row, 8 rows per workgroup: neighbouring threads read neighbouring 32-weight
    /// runs of the same row, so the row streams through the caches once.
    pub const GPU: MatvecShape = MatvecShape {
        workgroup: 256,
        row_threads: 32,
        rows_per_thread: 1,
    };

    /// The shape for this device: [`MatvecShape::CPU`] on CPU adapters (wgpu's
    /// `DeviceType::Cpu`: lavapipe, SwiftShader, WARP natively, and in the browser the fallback
    /// adapter, which wgpu reports from `GPUAdapterInfo.isFallbackAdapter`),
    /// [`MatvecShape::GPU`] everywhere else. The adapter's name plays no part: browsers may
    /// leave it empty.
    pub fn for_gpu(gpu: &Gpu) -> MatvecShape {
        MatvecShape::for_cpu_adapter(gpu.caps.cpu)
    }

    pub fn for_cpu_adapter(cpu: bool) -> MatvecShape {
        if cpu {
            MatvecShape::CPU
        } else {
            MatvecShape::GPU
        }
    }

    fn check(&self) -> Result<(), Error> {
        let ok = self.workgroup > 0
            && self.workgroup <= 256
            && self.row_threads.is_power_of_two()
            && self.workgroup % self.row_threads == 0
            && (1..=4).contains(&self.rows_per_thread)
            && (self.row_threads == 1 || self.rows_per_thread == 1);
        if ok {
            Ok(())
        } else {
            Err(Error::Unsupported(format!("matvec shape {self:?}")))
        }
    }

    fn rows_per_group(&self) -> u32 {
        self.workgroup / self.row_threads.max(1) * self.rows_per_thread
    }

    /// The pipeline constants of matvec.wgsl for this shape.
    fn constants(&self) -> [(&'static str, f64); 3] {
        [
            ("WG", f64::from(self.workgroup)),
            ("ROW_THREADS", f64::from(self.row_threads)),
            ("ROW_REPEAT", f64::from(self.rows_per_thread)),
        ]
    }

    /// Parses `WORKGROUP,ROW_THREADS,ROWS_PER_THREAD` (the bench's `--matvec-shape`), or the
    /// names `cpu` and `gpu`.
    pub fn parse(text: &str) -> Result<MatvecShape, Error> {
        let bad = || {
            Error::Unsupported(format!(
                "matvec shape {text:?}: want cpu, gpu or WG,ROW_THREADS,ROWS_PER_THREAD"
            ))
        };
        let shape = match text.trim() {
            "cpu" => MatvecShape::CPU,
            "gpu" => MatvecShape::GPU,
            t => {
                let n: Vec<u32> = t
                    .split(',')
                    .map(|v| v.trim().parse::<u32>().map_err(|_| bad()))
                    .collect::<Result<_, _>>()?;
                let [workgroup, row_threads, rows_per_thread] = n[..] else {
                    return Err(bad());
                };
                MatvecShape {
                    workgroup,
                    row_threads,
                    rows_per_thread,
                }
            }
        };
        shape.check()?;
        Ok(shape)
    }
}

/// How matvec.wgsl sums the lanes of a row: the `row_sum_*.wgsl` library and the extension it
/// needs. Subgroup shuffles where the adapter's smallest subgroup holds a whole row's lanes (a
/// warp a row on NVIDIA and AMD), else a tree through workgroup memory with a barrier a step.
pub fn row_sum_lib(gpu: &Gpu, shape: MatvecShape) -> (&'static str, &'static [Enable]) {
    let caps = &gpu.caps;
    if shape.row_threads > 1 && caps.subgroups && caps.subgroup_min_size >= shape.row_threads {
        ("row_sum_subgroup", &[Enable::Subgroups])
    } else {
        ("row_sum_barrier", &[])
    }
}

/// Bytes of x a uniform binding holds (`matvec_x_uniform.wgsl`: 4096 vec4, WebGPU's default
/// `maxUniformBufferBindingSize`). Buffers meant as matvec inputs are made at least this large
/// ([`Gpu::activations`]).
pub const X_UNIFORM_BYTES: u64 = 65536;

/// How a matvec reads x: `matvec_x_storage.wgsl` or `matvec_x_uniform.wgsl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XBinding {
    Storage,
    /// Only with one thread per row (every lane reads the same x, which a uniform load serves
    /// in one gather on CPU adapters; a GPU's lanes of one row read different x, which a
    /// uniform (constant) cache serialises).
    Uniform,
}

impl XBinding {
    /// Uniform where the shape, the buffer (UNIFORM usage, at least [`X_UNIFORM_BYTES`]), the
    /// column count and the device allow it, else storage.
    pub fn choose(gpu: &Gpu, x: &wgpu::Buffer, cols: u32, shape: MatvecShape) -> XBinding {
        let fits = x.usage().contains(wgpu::BufferUsages::UNIFORM)
            && x.size() >= X_UNIFORM_BYTES
            && u64::from(cols) * 4 <= X_UNIFORM_BYTES
            && u64::from(gpu.device.limits().max_uniform_buffer_binding_size) >= X_UNIFORM_BYTES;
        if shape.row_threads == 1 && fits {
            XBinding::Uniform
        } else {
            XBinding::Storage
        }
    }

    fn lib(self) -> &'static str {
        match self {
            XBinding::Storage => "matvec_x_storage",
            XBinding::Uniform => "matvec_x_uniform",
        }
    }

    fn resource(self, x: &wgpu::Buffer) -> wgpu::BindingResource<'_> {
        match self {
            XBinding::Storage => x.as_entire_binding(),
            XBinding::Uniform => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: x,
                offset: 0,
                size: wgpu::BufferSize::new(X_UNIFORM_BYTES),
            }),
        }
    }
}

/// One matvec dispatch: weights, x (as `xb` says), y, params, and the weights again as
/// `weights4` (their `vec4<u32>` view, see `shaders/weights.wgsl`).
async fn matvec_op(
    gpu: &Gpu,
    label: &str,
    pipeline: &wgpu::ComputePipeline,
    [weights, x, y, params]: [&wgpu::Buffer; 4],
    xb: XBinding,
    groups: [u32; 3],
) -> Result<Op, Error> {
    let resources = [
        weights.as_entire_binding(),
        xb.resource(x),
        y.as_entire_binding(),
        params.as_entire_binding(),
        weights.as_entire_binding(),
    ];
    gpu.scoped(label, || gpu.op(label, pipeline, &resources, groups))
        .await
}

fn check_cols(what: &str, w: &WeightTensor) -> Result<(), Error> {
    if w.cols == 0 || w.cols % COL_MULTIPLE != 0 || w.row_stride_bytes % 16 != 0 {
        return Err(Error::Unsupported(format!(
            "{what} {}: {} columns (needs a multiple of {COL_MULTIPLE}), row stride {}",
            w.name, w.cols, w.row_stride_bytes
        )));
    }
    // Byte offsets inside a piece are u32 in the kernels.
    for p in &w.pieces {
        if u64::from(p.rows) * u64::from(w.row_stride_bytes) > u64::from(u32::MAX) {
            return Err(Error::Unsupported(format!(
                "{what} {}: piece too large",
                w.name
            )));
        }
    }
    Ok(())
}

/// The matvec pipeline for weight type of `w`, `shape` and x binding; `glu` for the fused MLP
/// input ([`matvec_glu`]).
pub async fn matvec_pipeline(
    gpu: &Gpu,
    w: &WeightTensor,
    shape: MatvecShape,
    xb: XBinding,
    glu: bool,
) -> Result<wgpu::ComputePipeline, Error> {
    shape.check()?;
    let (row_sum, enables) = row_sum_lib(gpu, shape);
    let glu_constant = [("GLU", 1.0)];
    gpu.pipeline(&PipelineDesc {
        kernel: "matvec",
        libs: &[matvec_libs(w.ty), vec![xb.lib(), row_sum]].concat(),
        constants: &[
            &shape.constants()[..],
            if glu { &glu_constant[..] } else { &[] },
        ]
        .concat(),
        enables,
        ..Default::default()
    })
    .await
}

/// `y[y_offset .. y_offset + w.rows] = W x` with `x` of `w.cols` f32: one op per piece of `w`,
/// to be recorded in order (they write disjoint rows, so any order is correct).
pub async fn matvec(
    gpu: &Gpu,
    w: &WeightTensor,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    y_offset: u32,
) -> Result<Vec<Op>, Error> {
    matvec_shaped(gpu, w, x, y, y_offset, MatvecShape::for_gpu(gpu)).await
}

/// The fused MLP input in one dispatch: `w` holds the gate rows then as many up rows (one
/// piece, see [`Gpu::concat_rows`]); `y[r] = gelu_tanh(gate_r . x) * (up_r . x)`. One row a
/// thread at most: a thread already walks two rows (gate and up), and four made lavapipe's
/// code 4-5x slower (84 ms a token against 18 for the 270M's 18 layers, `bench --profile`).
pub async fn matvec_glu(
    gpu: &Gpu,
    w: &WeightTensor,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    shape: MatvecShape,
) -> Result<Op, Error> {
    check_cols("matvec_glu", w)?;
    shape.check()?;
    let shape = MatvecShape {
        rows_per_thread: 1,
        ..shape
    };
    let [piece] = w.pieces.as_slice() else {
        return Err(Error::Unsupported(format!(
            "matvec_glu {}: {} pieces",
            w.name,
            w.pieces.len()
        )));
    };
    if w.rows % 2 != 0 {
        return Err(Error::Unsupported(format!(
            "matvec_glu {}: odd rows",
            w.name
        )));
    }
    let half = w.rows / 2;
    need_floats("matvec_glu x", x, u64::from(w.cols))?;
    need_floats("matvec_glu y", y, u64::from(half))?;
    let xb = XBinding::choose(gpu, x, w.cols, shape);
    let pipeline = matvec_pipeline(gpu, w, shape, xb, true).await?;
    let params = gpu.uniform_u32("matvec_glu params", &[half, w.cols, w.row_stride_bytes, 0])?;
    let groups = fold_workgroups(half.div_ceil(shape.rows_per_group()));
    matvec_op(
        gpu,
        "matvec_glu",
        &pipeline,
        [&piece.buffer, x, y, &params],
        xb,
        groups,
    )
    .await
}

/// [`matvec`] with an explicit thread layout (benchmarks and tests of both layouts).
pub async fn matvec_shaped(
    gpu: &Gpu,
    w: &WeightTensor,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    y_offset: u32,
    shape: MatvecShape,
) -> Result<Vec<Op>, Error> {
    check_cols("matvec", w)?;
    need_floats("matvec x", x, u64::from(w.cols))?;
    need_floats("matvec y", y, u64::from(y_offset) + u64::from(w.rows))?;
    let xb = XBinding::choose(gpu, x, w.cols, shape);
    let pipeline = matvec_pipeline(gpu, w, shape, xb, false).await?;
    let mut ops = Vec::with_capacity(w.pieces.len());
    for piece in &w.pieces {
        let params = gpu.uniform_u32(
            "matvec params",
            &[
                piece.rows,
                w.cols,
                w.row_stride_bytes,
                y_offset + piece.first_row,
            ],
        )?;
        let groups = fold_workgroups(piece.rows.div_ceil(shape.rows_per_group()));
        let op = matvec_op(
            gpu,
            "matvec",
            &pipeline,
            [&piece.buffer, x, y, &params],
            xb,
            groups,
        )
        .await?;
        ops.push(op);
    }
    Ok(ops)
}

/// How a prefill product spreads its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulLayout {
    /// `matmul.wgsl`: workgroup tiles of [`MATMUL_TILE_ROWS`] rows x [`MATMUL_TILE_TOKENS`]
    /// tokens staged through workgroup memory (GPUs).
    Tiles,
    /// `matmul_rows.wgsl`: one thread [`ROWS_PER_LANE`] rows, [`ROWS_TOKENS`] tokens a
    /// dispatch, each token's X row read through a uniform window (CPU adapters, where every
    /// storage or workgroup-memory load is a loop over the SIMD lanes).
    Rows,
}

/// Tokens per `matmul_rows.wgsl` dispatch (its `TOKENS`): each reads its X row through its own
/// uniform binding.
pub const ROWS_TOKENS: u32 = 8;
/// Weight rows per thread of `matmul_rows.wgsl` (its `ROWS`, at most 4): each activation a
/// thread loads serves that many rows. On lavapipe the 270M's prefill matmuls took 53-59 ms a
/// token with 4, 67-70 with 3, 78-88 with 2 and 116 with 1 (`bench --profile`, 64 tokens,
/// runs interleaved).
pub const ROWS_PER_LANE: u32 = 4;

/// Where token `tok`'s X row (of `cols` f32) lies for `matmul_rows.wgsl`: the byte offset of its
/// uniform window (a multiple of `align`) and the row's first vec4 within the window.
fn row_window(tok: u32, cols: u32, align: u64) -> (u64, u32) {
    let start = u64::from(tok) * u64::from(cols) * 4;
    let offset = start / align * align;
    (offset, ((start - offset) / 16) as u32)
}

/// Prefill products `Y = X W^T` bound to fixed buffers for up to `max_n` tokens: X is
/// (n, w.cols), Y is (n, y_stride) with W's rows at columns `y_offset..`. The token count is
/// set per call with [`Matmul::set_n`], which rewrites the pieces' uniforms.
pub struct Matmul {
    ops: Vec<Op>,
    params: Vec<wgpu::Buffer>,
    words: Vec<[u32; 16]>,
    max_n: u32,
    /// With [`MatmulLayout::Rows`] the ops run block by block of [`ROWS_TOKENS`], each block one
    /// op per piece.
    layout: MatmulLayout,
}

impl Matmul {
    /// [`Matmul::with_layout`] in the adapter's layout: [`MatmulLayout::Rows`] on CPU adapters
    /// when x allows it (an activations buffer, see [`Gpu::activations`]), else
    /// [`MatmulLayout::Tiles`].
    pub async fn new(
        gpu: &Gpu,
        w: &WeightTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        max_n: u32,
        y_offset: u32,
        y_stride: u32,
    ) -> Result<Matmul, Error> {
        let layout = if gpu.caps.cpu && rows_fit(gpu, x, w.cols, max_n) {
            MatmulLayout::Rows
        } else {
            MatmulLayout::Tiles
        };
        Matmul::with_layout(gpu, w, x, y, max_n, y_offset, y_stride, layout).await
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn with_layout(
        gpu: &Gpu,
        w: &WeightTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        max_n: u32,
        y_offset: u32,
        y_stride: u32,
        layout: MatmulLayout,
    ) -> Result<Matmul, Error> {
        check_cols("matmul", w)?;
        if max_n == 0 || u64::from(y_offset) + u64::from(w.rows) > u64::from(y_stride) {
            return Err(Error::Unsupported(format!(
                "matmul {}: {max_n} tokens, rows at {y_offset}.. of {y_stride}",
                w.name
            )));
        }
        let y_len = u64::from(max_n) * u64::from(y_stride);
        if y_len > u64::from(u32::MAX) {
            return Err(Error::Unsupported(format!(
                "matmul {}: output too large",
                w.name
            )));
        }
        need_floats("matmul x", x, u64::from(max_n) * u64::from(w.cols))?;
        need_floats("matmul y", y, y_len)?;
        let mut m = Matmul {
            ops: Vec::new(),
            params: Vec::new(),
            words: Vec::new(),
            max_n,
            layout,
        };
        let t = Target {
            w,
            x,
            y,
            y_offset,
            y_stride,
        };
        match layout {
            MatmulLayout::Tiles => m.bind_tiles(gpu, &t).await?,
            MatmulLayout::Rows => {
                if !rows_fit(gpu, x, w.cols, max_n) {
                    return Err(Error::Unsupported(format!(
                        "matmul {}: x ({} bytes, {:?}) cannot be read in uniform windows of {} columns",
                        w.name,
                        x.size(),
                        x.usage(),
                        w.cols
                    )));
                }
                m.bind_rows(gpu, &t).await?
            }
        }
        Ok(m)
    }

    async fn bind_tiles(&mut self, gpu: &Gpu, t: &Target<'_>) -> Result<(), Error> {
        let Target { w, x, y, .. } = *t;
        let pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "matmul",
                libs: &["weights", dequant_shader(w.ty)],
                ..Default::default()
            })
            .await?;
        for piece in &w.pieces {
            let words = t.piece_words(piece, self.max_n, 0);
            let params = gpu.uniform_u32("matmul params", &words)?;
            let groups = [
                piece.rows.div_ceil(MATMUL_TILE_ROWS),
                self.max_n.div_ceil(MATMUL_TILE_TOKENS),
                1,
            ];
            let op = gpu
                .bound_op("matmul", &pipeline, &[&piece.buffer, x, y, &params], groups)
                .await?;
            self.ops.push(op);
            self.params.push(params);
            self.words.push(words);
        }
        Ok(())
    }

    async fn bind_rows(&mut self, gpu: &Gpu, target: &Target<'_>) -> Result<(), Error> {
        let Target { w, x, y, .. } = *target;
        let tokens = ROWS_TOKENS;
        let shape = MatvecShape::CPU;
        let pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "matmul_rows",
                libs: &matvec_libs(w.ty),
                constants: &[
                    ("WG", f64::from(shape.workgroup)),
                    ("TOKENS", f64::from(tokens)),
                    ("ROWS", f64::from(ROWS_PER_LANE)),
                ],
                ..Default::default()
            })
            .await?;
        let align = u64::from(gpu.device.limits().min_uniform_buffer_offset_alignment).max(16);
        for tok0 in (0..self.max_n).step_by(tokens as usize) {
            // Token t's window; tokens past max_n read token tok0's (their sums are not stored).
            let windows: Vec<(u64, u32)> = (0..tokens)
                .map(|t| {
                    let tok = if tok0 + t < self.max_n {
                        tok0 + t
                    } else {
                        tok0
                    };
                    row_window(tok, w.cols, align)
                })
                .collect();
            for piece in &w.pieces {
                let mut words = target.piece_words(piece, tokens.min(self.max_n - tok0), tok0);
                for (t, &(_, first)) in windows.iter().enumerate() {
                    words[8 + t] = first;
                }
                let params = gpu.uniform_u32("matmul_rows params", &words)?;
                let window = |t: usize| {
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: x,
                        offset: windows[t].0,
                        size: wgpu::BufferSize::new(X_UNIFORM_BYTES),
                    })
                };
                // Bindings: weights, x0, y, params, weights4, x1..x7.
                let mut resources = vec![
                    piece.buffer.as_entire_binding(),
                    window(0),
                    y.as_entire_binding(),
                    params.as_entire_binding(),
                    piece.buffer.as_entire_binding(),
                ];
                resources.extend((1..tokens as usize).map(window));
                let groups = fold_workgroups(piece.rows.div_ceil(shape.workgroup * ROWS_PER_LANE));
                let op = gpu
                    .scoped("matmul_rows", || {
                        gpu.op("matmul_rows", &pipeline, &resources, groups)
                    })
                    .await?;
                self.ops.push(op);
                self.params.push(params);
                self.words.push(words);
            }
        }
        Ok(())
    }

    /// The layout these ops use.
    pub fn layout(&self) -> MatmulLayout {
        self.layout
    }

    /// The ops for `n` tokens (1..=max_n): record all of them.
    pub fn set_n(&mut self, gpu: &Gpu, n: u32) -> Result<&[Op], Error> {
        if n == 0 || n > self.max_n {
            return Err(Error::Unsupported(format!(
                "matmul of {n} tokens (bound for at most {})",
                self.max_n
            )));
        }
        match self.layout {
            MatmulLayout::Tiles => {
                for ((op, params), words) in
                    self.ops.iter_mut().zip(&self.params).zip(&mut self.words)
                {
                    words[0] = n;
                    gpu.write_u32(params, 0, words)?;
                    op.workgroups[1] = n.div_ceil(MATMUL_TILE_TOKENS);
                }
                Ok(&self.ops)
            }
            MatmulLayout::Rows => {
                // Blocks of `tokens` from token 0: the first ceil(n / tokens) blocks run, the
                // last with what is left.
                let mut used = 0;
                for (params, words) in self.params.iter().zip(&mut self.words) {
                    let tok0 = words[6];
                    if tok0 >= n {
                        break;
                    }
                    let count = ROWS_TOKENS.min(n - tok0);
                    if words[0] != count {
                        words[0] = count;
                        gpu.write_u32(params, 0, words)?;
                    }
                    used += 1;
                }
                Ok(&self.ops[..used])
            }
        }
    }
}

/// What a [`Matmul`] binds: W, X, Y, and where W's rows go in Y's rows.
#[derive(Clone, Copy)]
struct Target<'a> {
    w: &'a WeightTensor,
    x: &'a wgpu::Buffer,
    y: &'a wgpu::Buffer,
    y_offset: u32,
    y_stride: u32,
}

impl Target<'_> {
    /// The uniform words both matmul kernels start with (`Params`: n, rows, cols, row_stride,
    /// y_offset, y_stride, tok0), for `piece`; the rest zero.
    fn piece_words(&self, piece: &WeightPiece, n: u32, tok0: u32) -> [u32; 16] {
        let mut words = [0u32; 16];
        words[..7].copy_from_slice(&[
            n,
            piece.rows,
            self.w.cols,
            self.w.row_stride_bytes,
            self.y_offset + piece.first_row,
            self.y_stride,
            tok0,
        ]);
        words
    }
}

/// Whether `matmul_rows.wgsl` can read x for `max_n` tokens of `cols`: x bindable as a uniform,
/// and each token's row inside a 64 KiB window that starts on the device's uniform offset
/// alignment and lies inside x. Checked token by token: a row of 16384 columns (Gemma 1 2B's
/// FFN) fills a whole window, which fits only because every such row starts on the alignment.
fn rows_fit(gpu: &Gpu, x: &wgpu::Buffer, cols: u32, max_n: u32) -> bool {
    let limits = gpu.device.limits();
    let align = u64::from(limits.min_uniform_buffer_offset_alignment).max(16);
    x.usage().contains(wgpu::BufferUsages::UNIFORM)
        && u64::from(limits.max_uniform_buffer_binding_size) >= X_UNIFORM_BYTES
        && (0..max_n).all(|tok| {
            let (offset, first) = row_window(tok, cols, align);
            u64::from(first) * 16 + u64::from(cols) * 4 <= X_UNIFORM_BYTES
                && offset + X_UNIFORM_BYTES <= x.size()
        })
}
