//! `gemma-web bench-kernels`: the adapter's streaming-read bandwidth and, for every weight type,
//! the decode matvec's effective bandwidth (weight bytes / time) at Gemma 2B shapes, as a
//! fraction of it, and decode attention's (KV-cache bytes / time) over contexts of several lengths. Wall-clock timing over many dispatches in one submit, ended by waiting for
//! the queue; the median of several such runs. Weights are rotated through enough copies that
//! repeated runs cannot be served from the GPU's L2 cache.

use std::time::{Duration, Instant};

use crate::gguf::GgmlType;
use crate::gpu::attention::{
    AttentionIo, AttentionKernels, AttentionLayer, AttentionLayout, AttentionScratch,
    AttentionShape, KvDtype, LayerCache,
};
use crate::gpu::matvec::{matvec_shaped, MatvecShape};
use crate::gpu::{fold_workgroups, Gpu, GpuOptions, Op, PipelineDesc, WeightTensor};
use crate::testing::Rng;
use crate::Error;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Smaller shapes and the four types of the real model: for CPU adapters and smoke runs.
    pub quick: bool,
    /// Open the device at WebGPU's default limits (as the browser gets by default).
    pub default_limits: bool,
    /// Only these types (all when empty).
    pub types: Vec<GgmlType>,
    /// This thread layout instead of the adapter's (e.g. the GPU layout on lavapipe).
    pub shape: Option<MatvecShape>,
    /// Also time decode attention, on an f32 KV cache and on the one the engine picks.
    pub attention: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct MatvecResult {
    #[serde(rename = "type")]
    pub ty: String,
    pub rows: u32,
    pub cols: u32,
    pub pieces: usize,
    pub weight_bytes: u64,
    pub median_ms: f64,
    pub gb_per_s: f64,
    /// gb_per_s / the streaming-read bandwidth.
    pub fraction_of_stream: f64,
}

/// Decode attention (attention_decode.wgsl + attention_combine.wgsl) of one query over `keys`
/// cached keys and values.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AttentionResult {
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub keys: u32,
    pub kv_type: &'static str,
    /// `attention_decode_rows.wgsl` ("rows", CPU adapters) or `attention_decode.wgsl` ("tiles").
    pub layout: &'static str,
    /// Bytes of the keys and values read.
    pub kv_bytes: u64,
    pub median_ms: f64,
    pub gb_per_s: f64,
    pub fraction_of_stream: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub adapter: String,
    pub backend: String,
    pub tier: String,
    pub max_binding: u64,
    pub matvec_shape: String,
    pub timing: String,
    pub stream_bytes: u64,
    pub stream_gb_per_s: f64,
    pub matvec: Vec<MatvecResult>,
    pub attention: Vec<AttentionResult>,
}

/// Gemma 2B decode shapes (rows x cols): q/o projections, gate/up, down, LM head.
const FULL_SHAPES: [(u32, u32); 4] = [(2048, 2048), (16384, 2048), (2048, 16384), (256000, 2048)];
/// Small shapes for CPU adapters (columns a multiple of 256 for the K-quants): Gemma 3 270M's
/// ffn_down, and two squarer ones.
const QUICK_SHAPES: [(u32, u32); 3] = [(640, 2048), (2048, 2048), (4096, 1024)];
const QUICK_TYPES: [GgmlType; 5] = [
    GgmlType::Q4K,
    GgmlType::Q6K,
    GgmlType::Q8_0,
    GgmlType::Q5_0,
    GgmlType::F32,
];

/// Decode attention (heads, kv heads, head_dim, keys): Gemma 3 270M inside and past its 512
/// window, Gemma 2 2B and Gemma 1 2B at long contexts.
const ATTENTION_SHAPES: [(u32, u32, u32, u32); 4] = [
    (4, 1, 256, 512),
    (4, 1, 256, 4096),
    (8, 4, 256, 4096),
    (8, 1, 256, 8192),
];
const QUICK_ATTENTION_SHAPES: [(u32, u32, u32, u32); 2] = [(4, 1, 256, 512), (8, 4, 256, 2048)];

/// The measured time of one run should be at least this, so submit/wait overhead is noise.
const TARGET_RUN: Duration = Duration::from_millis(40);
/// Runs per measurement (the median is reported), and the time one measurement may take.
const MIN_RUNS: usize = 3;
const MAX_RUNS: usize = 7;
const MEASURE_BUDGET: Duration = Duration::from_millis(1500);

/// Offsets of the f16 scale fields inside a block: set to sane values so no denormals or NaNs
/// reach the arithmetic (CPU adapters slow down on denormals).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q2K => &[80, 82],
        GgmlType::Q3K => &[108],
        GgmlType::Q6K => &[208],
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => &[],
    }
}

/// `bytes` of valid, finite weight data of type `ty`: 64 random blocks repeated.
fn weight_bytes(ty: GgmlType, bytes: usize, rng: &mut Rng) -> Vec<u8> {
    let unit = match ty {
        GgmlType::F32 => 4,
        GgmlType::F16 | GgmlType::BF16 => 2,
        _ => ty.block_bytes() as usize,
    };
    let mut pattern = vec![0u8; unit * 64];
    for chunk in pattern.chunks_exact_mut(unit) {
        let v = ((rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.1;
        match ty {
            GgmlType::F32 => chunk.copy_from_slice(&v.to_le_bytes()),
            GgmlType::F16 => chunk.copy_from_slice(&half::f16::from_f32(v).to_le_bytes()),
            GgmlType::BF16 => chunk.copy_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
            _ => {
                for b in chunk.iter_mut() {
                    *b = rng.next_u32() as u8;
                }
                for &o in f16_fields(ty) {
                    chunk[o..o + 2]
                        .copy_from_slice(&half::f16::from_f32(0.01 + v.abs()).to_le_bytes());
                }
            }
        }
    }
    pattern.iter().copied().cycle().take(bytes).collect()
}

/// Wall-clock seconds per repetition of `ops_for(i)` for i in 0..reps, recorded in one pass
/// and one submit: the median over several runs.
fn time_ops<'a>(gpu: &Gpu, ops_for: &dyn Fn(usize) -> &'a [Op]) -> Result<f64, Error> {
    let run = |reps: usize| -> Result<Duration, Error> {
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("bench"),
            });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("bench"),
                timestamp_writes: None,
            });
            for i in 0..reps {
                for op in ops_for(i) {
                    op.record(&mut pass);
                }
            }
        }
        let commands = encoder.finish();
        let start = Instant::now();
        gpu.submit(commands)?;
        gpu.wait_idle()?;
        Ok(start.elapsed())
    };
    // Warm-up (pipeline compilation on first use, page faults), then size the runs.
    let one = run(1)?.max(Duration::from_micros(1));
    let reps = (TARGET_RUN.as_secs_f64() / one.as_secs_f64())
        .ceil()
        .clamp(1.0, 1000.0) as usize;
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < MIN_RUNS || (times.len() < MAX_RUNS && started.elapsed() < MEASURE_BUDGET) {
        times.push(run(reps)?.as_secs_f64() / reps as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

async fn stream_bandwidth(gpu: &Gpu, bytes: u64, rng: &mut Rng) -> Result<f64, Error> {
    let n_vec4 = u32::try_from(bytes / 16)
        .map_err(|_| Error::Unsupported(format!("stream buffer of {bytes} bytes")))?;
    let data: Vec<u8> = (0..u64::from(n_vec4) * 4)
        .flat_map(|_| rng.next_u32().to_le_bytes())
        .collect();
    let src = gpu.storage_init("stream src", &data)?;
    drop(data);
    let sink = gpu.storage("stream sink", 16)?;
    let params = gpu.uniform_u32("stream params", &[n_vec4, 0x9e37_79b9, 0, 0])?;
    // 64 vec4 per thread: plenty of threads in flight for a GPU, few enough for a CPU.
    let groups = fold_workgroups(n_vec4.div_ceil(256 * 64));
    // The faster of the two access patterns is the adapter's streaming bandwidth.
    let mut best = f64::INFINITY;
    for thread_runs in [0.0, 1.0] {
        let pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "stream_read",
                constants: &[("THREAD_RUNS", thread_runs)],
                ..Default::default()
            })
            .await?;
        let op = gpu
            .scoped("stream_read", || {
                gpu.op_buffers("stream_read", &pipeline, &[&src, &sink, &params], groups)
            })
            .await?;
        let ops = [op];
        best = best.min(time_ops(gpu, &|_| &ops)?);
    }
    let secs = best;
    src.destroy();
    Ok(bytes as f64 / secs / 1e9)
}

async fn matvec_bandwidth(
    gpu: &Gpu,
    ty: GgmlType,
    rows: u32,
    cols: u32,
    shape: MatvecShape,
    rotate_bytes: u64,
    rng: &mut Rng,
) -> Result<MatvecResult, Error> {
    let row_bytes = ty
        .row_bytes(u64::from(cols))
        .ok_or_else(|| Error::Unsupported(format!("{cols} columns of {ty}")))?;
    let total = row_bytes * u64::from(rows);
    let copies = rotate_bytes.div_ceil(total).clamp(1, 64);
    // Uploaded in chunks of one repeating pattern: no host copy of a multi-GB weight.
    let chunk_rows = ((4u64 << 20) / row_bytes).max(1);
    let chunk = weight_bytes(ty, (chunk_rows * row_bytes) as usize, rng);
    let mut weights: Vec<WeightTensor> = Vec::new();
    for i in 0..copies {
        let name = format!("bench {ty} {rows}x{cols} #{i}");
        let mut up = gpu.begin_weight(&name, ty, rows, cols, None).await?;
        let mut left = total;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            up.push(&chunk[..n])?;
            left -= n as u64;
        }
        weights.push(up.finish().await?);
    }
    let xs: Vec<f32> = (0..cols).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    let x = gpu.activations("bench x", u64::from(cols) * 4)?;
    gpu.write(&x, 0, bytemuck::cast_slice(&xs))?;
    let y = gpu.storage("bench y", u64::from(rows) * 4)?;
    let mut ops = Vec::new();
    for w in &weights {
        ops.push(matvec_shaped(gpu, w, &x, &y, 0, shape).await?);
    }
    let secs = time_ops(gpu, &|i| ops[i % ops.len()].as_slice())?;
    let pieces = weights.first().map_or(0, |w| w.pieces.len());
    for w in &weights {
        for p in &w.pieces {
            p.buffer.destroy();
        }
    }
    let gb = total as f64 / secs / 1e9;
    Ok(MatvecResult {
        ty: ty.name().to_string(),
        rows,
        cols,
        pieces,
        weight_bytes: total,
        median_ms: secs * 1e3,
        gb_per_s: gb,
        fraction_of_stream: 0.0,
    })
}

async fn attention_bandwidth(
    gpu: &Gpu,
    (heads, kv_heads, head_dim, keys): (u32, u32, u32, u32),
    kv: KvDtype,
    layout: AttentionLayout,
    rng: &mut Rng,
) -> Result<AttentionResult, Error> {
    let shape = AttentionShape {
        n_heads: heads,
        n_kv_heads: kv_heads,
        head_dim,
        cache_len: keys,
        scale: 1.0 / (head_dim as f32).sqrt(),
        softcap: None,
        window: None,
        kv,
    };
    let kernels = AttentionKernels::load(gpu, &shape, layout).await?;
    let cache = LayerCache::new(gpu, &shape, "bench")?;
    // Keys and values of about unit size, no denormals: halves in [0.5, 2), f32s in [0.5, 1).
    let values = shape.cache_floats()? as usize;
    let bytes: Vec<u8> = match kv {
        KvDtype::F16 => (0..values)
            .flat_map(|_| (0x3800u16 + (rng.next_u32() & 0x7ff) as u16).to_le_bytes())
            .collect(),
        KvDtype::F32 => (0..values)
            .flat_map(|_| (0x3f00_0000u32 + (rng.next_u32() & 0x7f_ffff)).to_le_bytes())
            .collect(),
    };
    gpu.write(&cache.k, 0, &bytes)?;
    gpu.write(&cache.v, 0, &bytes)?;
    drop(bytes);
    let q_bytes = u64::from(heads) * u64::from(head_dim) * 4;
    let kv_row = u64::from(kv_heads) * u64::from(head_dim) * 4;
    let q = gpu.storage("bench q", q_bytes)?;
    let kv_new = gpu.storage("bench kv", kv_row)?;
    let out = gpu.storage("bench out", q_bytes)?;
    let scratch = AttentionScratch::new(gpu, &shape)?;
    let io = AttentionIo {
        q: &q,
        k_new: &kv_new,
        v_new: &kv_new,
        out: &out,
    };
    let mut layer = gpu
        .scoped("bench attention", || {
            AttentionLayer::new(gpu, &kernels, shape, io, &cache, &scratch, "bench")
        })
        .await??;
    let ops: Vec<Op> = layer
        .attend_decode_ops(gpu, keys - 1)?
        .into_iter()
        .cloned()
        .collect();
    let secs = time_ops(gpu, &|_| ops.as_slice())?;
    let kv_bytes = shape.cache_bytes()? * 2;
    cache.k.destroy();
    cache.v.destroy();
    Ok(AttentionResult {
        heads,
        kv_heads,
        head_dim,
        keys,
        kv_type: kv.name(),
        layout: match layout {
            AttentionLayout::Tiles => "tiles",
            AttentionLayout::Rows { .. } => "rows",
        },
        kv_bytes,
        median_ms: secs * 1e3,
        gb_per_s: kv_bytes as f64 / secs / 1e9,
        fraction_of_stream: 0.0,
    })
}

/// The adapter's streaming-read bandwidth in GB/s over a buffer of `bytes` (rounded down to 16),
/// the roofline a memory-bound decode step is measured against.
pub async fn streaming_read_gb_s(gpu: &Gpu, bytes: u64) -> Result<f64, Error> {
    stream_bandwidth(gpu, bytes & !15, &mut Rng::new(2024)).await
}

/// Runs the benchmark on the default adapter.
pub async fn run(opts: &BenchOptions) -> Result<BenchReport, Error> {
    let gpu = Gpu::new(GpuOptions {
        default_limits: opts.default_limits,
        ..GpuOptions::default()
    })
    .await?;
    let mut rng = Rng::new(2024);
    let shape = opts.shape.unwrap_or_else(|| MatvecShape::for_gpu(&gpu));
    let cap = gpu.caps.max_binding.min(gpu.caps.max_buffer);
    let stream_bytes = if opts.quick { 64 << 20 } else { 256 << 20 }.min(cap) & !15;
    let stream = stream_bandwidth(&gpu, stream_bytes, &mut rng).await?;
    let (shapes, default_types): (&[(u32, u32)], &[GgmlType]) = if opts.quick {
        (&QUICK_SHAPES, &QUICK_TYPES)
    } else {
        (&FULL_SHAPES, &GgmlType::ALL)
    };
    let types = if opts.types.is_empty() {
        default_types
    } else {
        &opts.types
    };
    // More than any GPU's L2 (and a CPU's last-level cache), so repeats stream from memory.
    let rotate = if opts.quick { 64 << 20 } else { 256 << 20 };
    let mut results = Vec::new();
    for &ty in types {
        for &(rows, cols) in shapes {
            let mut r = matvec_bandwidth(&gpu, ty, rows, cols, shape, rotate, &mut rng).await?;
            r.fraction_of_stream = r.gb_per_s / stream;
            log::info!("{r:?}");
            results.push(r);
        }
    }
    let mut attention = Vec::new();
    let attention_shapes: &[_] = if opts.quick {
        &QUICK_ATTENTION_SHAPES
    } else {
        &ATTENTION_SHAPES
    };
    if opts.attention {
        // The adapter's layout, then the other; f32, then (if the device has it) f16.
        let mut layouts = vec![AttentionLayout::for_gpu(&gpu)];
        if layouts[0] != AttentionLayout::Tiles {
            layouts.push(AttentionLayout::Tiles);
        }
        let mut kvs = vec![KvDtype::F32];
        if gpu.caps.f16 {
            kvs.push(KvDtype::F16);
        }
        for &layout in &layouts {
            for &kv in &kvs {
                for &a in attention_shapes {
                    let mut r = attention_bandwidth(&gpu, a, kv, layout, &mut rng).await?;
                    r.fraction_of_stream = r.gb_per_s / stream;
                    log::info!("{r:?}");
                    attention.push(r);
                }
            }
        }
    }
    Ok(BenchReport {
        adapter: gpu.caps.adapter_name.clone(),
        backend: gpu.caps.backend.clone(),
        tier: gpu.caps.tier.clone(),
        max_binding: gpu.caps.max_binding,
        matvec_shape: format!(
            "{} threads/workgroup, {} per row, {} rows per thread",
            shape.workgroup, shape.row_threads, shape.rows_per_thread
        ),
        timing: "wall clock, many dispatches per submit, median of runs".into(),
        stream_bytes,
        stream_gb_per_s: stream,
        matvec: results,
        attention,
    })
}

/// The report as a readable table.
pub fn table(r: &BenchReport) -> String {
    let mut s = format!(
        "adapter: {} ({}, {}), max binding {} MiB, matvec: {}\nstreaming read: {:.2} GB/s over {} MiB\n\n",
        r.adapter,
        r.backend,
        r.tier,
        r.max_binding >> 20,
        r.matvec_shape,
        r.stream_gb_per_s,
        r.stream_bytes >> 20
    );
    s.push_str(&format!(
        "{:<6} {:>14} {:>6} {:>10} {:>10} {:>8} {:>8}\n",
        "type", "rows x cols", "pieces", "MB", "ms", "GB/s", "stream"
    ));
    for m in &r.matvec {
        s.push_str(&format!(
            "{:<6} {:>14} {:>6} {:>10.1} {:>10.3} {:>8.2} {:>7.0}%\n",
            m.ty,
            format!("{}x{}", m.rows, m.cols),
            m.pieces,
            m.weight_bytes as f64 / 1e6,
            m.median_ms,
            m.gb_per_s,
            m.fraction_of_stream * 100.0
        ));
    }
    if !r.attention.is_empty() {
        s.push_str(&format!(
            "\n{:<9} {:>8} {:>6} {:>6} {:>10} {:>10} {:>8} {:>8}\n",
            "attention", "keys", "kv", "layout", "MB", "ms", "GB/s", "stream"
        ));
    }
    for a in &r.attention {
        s.push_str(&format!(
            "{:<9} {:>8} {:>6} {:>6} {:>10.1} {:>10.3} {:>8.2} {:>7.0}%\n",
            format!("{}/{}x{}", a.heads, a.kv_heads, a.head_dim),
            a.keys,
            a.kv_type,
            a.layout,
            a.kv_bytes as f64 / 1e6,
            a.median_ms,
            a.gb_per_s,
            a.fraction_of_stream * 100.0
        ));
    }
    s
}
