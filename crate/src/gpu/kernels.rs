//! Builders for the element-wise and reduction kernels (embedding, RMSNorm, RoPE, GELU gate,
//! residual add, soft-cap, top-k/argmax). Each checks buffer sizes, builds (or reuses) the
//! pipeline and returns [`Op`]s bound to the given buffers, for a fixed shape. Call them at
//! load; record the ops per token.

use super::attention::KvDtype;
use super::op::{need_bytes, need_floats};
use super::weights::{dequant_shader, WeightTensor};
use super::{fold_workgroups, Gpu, Op, PipelineDesc, Readback};
use crate::Error;

fn words(params: &[u32]) -> Vec<u32> {
    let mut w = params.to_vec();
    w.resize(params.len().div_ceil(4) * 4, 0);
    w
}

/// Embedding rows of `table` for `n_tokens` ids, times `scale` (sqrt(d_model) for Gemma),
/// into `out` (n_tokens x cols): one op per piece of the table; record them all.
pub async fn embedding(
    gpu: &Gpu,
    table: &WeightTensor,
    ids: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n_tokens: u32,
    scale: f32,
) -> Result<Vec<Op>, Error> {
    if table.cols % 8 != 0 {
        return Err(Error::Unsupported(format!(
            "embedding: {} columns",
            table.cols
        )));
    }
    need_floats("embedding ids", ids, u64::from(n_tokens))?;
    need_floats(
        "embedding out",
        out,
        u64::from(n_tokens) * u64::from(table.cols),
    )?;
    let pipeline = gpu
        .pipeline(&PipelineDesc {
            kernel: "embedding",
            libs: &["weights", dequant_shader(table.ty)],
            ..Default::default()
        })
        .await?;
    let mut ops = Vec::with_capacity(table.pieces.len());
    for piece in &table.pieces {
        let params = gpu.uniform_u32(
            "embedding params",
            &words(&[
                n_tokens,
                table.cols,
                table.row_stride_bytes,
                piece.first_row,
                piece.rows,
                scale.to_bits(),
            ]),
        )?;
        ops.push(
            gpu.bound_op(
                "embedding",
                &pipeline,
                &[&piece.buffer, ids, out, &params],
                fold_workgroups(n_tokens),
            )
            .await?,
        );
    }
    Ok(ops)
}

/// `out = rmsnorm(x) * w` over `rows` rows of length `n` (`out += ...` when `accumulate`).
/// With n = head_dim and rows = tokens * heads it is the per-head q/k norm.
#[allow(clippy::too_many_arguments)]
pub async fn rmsnorm(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    w: &wgpu::Buffer,
    out: &wgpu::Buffer,
    rows: u32,
    n: u32,
    eps: f32,
    accumulate: bool,
) -> Result<Op, Error> {
    let total = u64::from(rows) * u64::from(n);
    need_floats("rmsnorm x", x, total)?;
    need_floats("rmsnorm w", w, u64::from(n))?;
    need_floats("rmsnorm out", out, total)?;
    let constants = [("ACCUMULATE", if accumulate { 1.0 } else { 0.0 })];
    let pipeline = gpu
        .pipeline(&PipelineDesc {
            kernel: "rmsnorm",
            constants: &constants,
            ..Default::default()
        })
        .await?;
    let params = gpu.uniform_u32("rmsnorm params", &words(&[rows, n, eps.to_bits()]))?;
    gpu.bound_op(
        "rmsnorm",
        &pipeline,
        &[x, w, out, &params],
        fold_workgroups(rows),
    )
    .await
}

/// RoPE (NeoX halves) in place on `x` (n_tokens x n_heads x head_dim) at `positions`
/// (n_tokens u32), frequency base `base`.
pub async fn rope(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    positions: &wgpu::Buffer,
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    base: f32,
) -> Result<Op, Error> {
    rope_scaled(gpu, x, positions, n_tokens, n_heads, head_dim, base, 1.0).await
}

/// [`rope`] at positions times `pos_scale`: linear RoPE scaling by a factor of 1 / `pos_scale`.
#[allow(clippy::too_many_arguments)]
pub async fn rope_scaled(
    gpu: &Gpu,
    x: &wgpu::Buffer,
    positions: &wgpu::Buffer,
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    base: f32,
    pos_scale: f32,
) -> Result<Op, Error> {
    if !(pos_scale.is_finite() && pos_scale > 0.0) {
        return Err(Error::Unsupported(format!(
            "rope: position scale {pos_scale}"
        )));
    }
    if head_dim % 2 != 0 {
        return Err(Error::Unsupported(format!("rope: head_dim {head_dim}")));
    }
    let pairs = u64::from(n_tokens) * u64::from(n_heads) * u64::from(head_dim / 2);
    need_floats("rope x", x, pairs * 2)?;
    need_floats("rope positions", positions, u64::from(n_tokens))?;
    let pairs = u32::try_from(pairs).map_err(|_| Error::Unsupported("rope: too large".into()))?;
    let pipeline = gpu.pipeline(&PipelineDesc::kernel("rope")).await?;
    let params = gpu.uniform_u32(
        "rope params",
        &words(&[
            n_tokens,
            n_heads,
            head_dim,
            base.to_bits(),
            pos_scale.to_bits(),
        ]),
    )?;
    gpu.bound_op(
        "rope",
        &pipeline,
        &[x, positions, &params],
        fold_workgroups(pairs.div_ceil(64)),
    )
    .await
}

/// `gate = gelu_tanh(gate) * up` over `n` values.
pub async fn gelu_mul(
    gpu: &Gpu,
    gate: &wgpu::Buffer,
    up: &wgpu::Buffer,
    n: u32,
) -> Result<Op, Error> {
    need_floats("gelu_mul gate", gate, u64::from(n))?;
    need_floats("gelu_mul up", up, u64::from(n))?;
    let pipeline = gpu.pipeline(&PipelineDesc::kernel("gelu_mul")).await?;
    let params = gpu.uniform_u32("gelu_mul params", &words(&[n]))?;
    gpu.bound_op(
        "gelu_mul",
        &pipeline,
        &[gate, up, &params],
        fold_workgroups(n.div_ceil(256)),
    )
    .await
}

/// `h += x` over `n` values.
pub async fn add(gpu: &Gpu, h: &wgpu::Buffer, x: &wgpu::Buffer, n: u32) -> Result<Op, Error> {
    need_floats("add h", h, u64::from(n))?;
    need_floats("add x", x, u64::from(n))?;
    let pipeline = gpu.pipeline(&PipelineDesc::kernel("add")).await?;
    let params = gpu.uniform_u32("add params", &words(&[n]))?;
    gpu.bound_op(
        "add",
        &pipeline,
        &[h, x, &params],
        fold_workgroups(n.div_ceil(256)),
    )
    .await
}

/// `z = cap * tanh(z / cap)` over `n` values.
pub async fn softcap(gpu: &Gpu, z: &wgpu::Buffer, n: u32, cap: f32) -> Result<Op, Error> {
    need_floats("softcap z", z, u64::from(n))?;
    if !(cap > 0.0) {
        return Err(Error::BadModel(format!("soft-cap {cap}")));
    }
    let pipeline = gpu.pipeline(&PipelineDesc::kernel("softcap")).await?;
    let params = gpu.uniform_u32("softcap params", &words(&[n, cap.to_bits()]))?;
    gpu.bound_op(
        "softcap",
        &pipeline,
        &[z, &params],
        fold_workgroups(n.div_ceil(256)),
    )
    .await
}

/// Values per workgroup of top-k's first stage.
const TOPK_CHUNK: u32 = 4096;
/// Largest k (each pick is one pass over a chunk).
pub const MAX_TOPK: u32 = 256;

/// The k largest of `n` values (ties to the lowest index), best first; k = 1 is argmax.
/// Record with [`TopK::record`], then read with [`TopK::read`] / [`TopK::read_argmax`].
#[derive(Clone, Debug)]
pub struct TopK {
    pub stage1: Op,
    pub merge: Op,
    /// (k) u32 indices, best first; u32::MAX past n.
    pub idx: wgpu::Buffer,
    /// (k) f32 values.
    pub val: wgpu::Buffer,
    pub k: u32,
    readback: Readback,
}

pub async fn topk(gpu: &Gpu, values: &wgpu::Buffer, n: u32, k: u32) -> Result<TopK, Error> {
    if k == 0 || k > MAX_TOPK || n == 0 {
        return Err(Error::Unsupported(format!("top-k with k = {k} of n = {n}")));
    }
    need_floats("topk values", values, u64::from(n))?;
    let groups = n.div_ceil(TOPK_CHUNK);
    let m = groups * k;
    let cand_idx = gpu.storage("topk cand_idx", u64::from(m) * 4)?;
    let cand_val = gpu.storage("topk cand_val", u64::from(m) * 4)?;
    let idx = gpu.storage("topk idx", u64::from(k) * 4)?;
    let val = gpu.storage("topk val", u64::from(k) * 4)?;
    let kf = f64::from(k);
    let c1 = [("K", kf), ("CHUNK", f64::from(TOPK_CHUNK))];
    let p1 = gpu
        .pipeline(&PipelineDesc {
            kernel: "topk",
            libs: &["workgroup_best"],
            constants: &c1,
            ..Default::default()
        })
        .await?;
    let c2 = [("K", kf)];
    let p2 = gpu
        .pipeline(&PipelineDesc {
            kernel: "topk_merge",
            libs: &["workgroup_best"],
            constants: &c2,
            ..Default::default()
        })
        .await?;
    let params1 = gpu.uniform_u32("topk params", &words(&[n]))?;
    let params2 = gpu.uniform_u32("topk_merge params", &words(&[m]))?;
    let stage1 = gpu
        .bound_op(
            "topk",
            &p1,
            &[values, &cand_idx, &cand_val, &params1],
            fold_workgroups(groups),
        )
        .await?;
    let merge = gpu
        .bound_op(
            "topk_merge",
            &p2,
            &[&cand_idx, &cand_val, &idx, &val, &params2],
            [1, 1, 1],
        )
        .await?;
    let readback = gpu.readback("topk readback", u64::from(k) * 4)?;
    Ok(TopK {
        stage1,
        merge,
        idx,
        val,
        k,
        readback,
    })
}

/// [`topk`] with k = 1.
pub async fn argmax(gpu: &Gpu, values: &wgpu::Buffer, n: u32) -> Result<TopK, Error> {
    topk(gpu, values, n, 1).await
}

impl TopK {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        self.stage1.record(pass);
        self.merge.record(pass);
    }

    /// The index of the largest value (4 bytes read back).
    pub async fn read_argmax(&self, gpu: &Gpu) -> Result<u32, Error> {
        let b = gpu.read_with(&self.readback, &self.idx, 0, 4).await?;
        let w: [u8; 4] = b
            .get(..4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| Error::DeviceLost("short read-back".into()))?;
        Ok(u32::from_le_bytes(w))
    }

    /// The k (index, value) pairs, best first; entries past n are dropped.
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<(u32, f32)>, Error> {
        let n = u64::from(self.k) * 4;
        let i = gpu.read_with(&self.readback, &self.idx, 0, n).await?;
        let v = gpu.read_with(&self.readback, &self.val, 0, n).await?;
        Ok(i.chunks_exact(4)
            .zip(v.chunks_exact(4))
            .filter_map(|(i, v)| {
                let i = u32::from_le_bytes(i.try_into().ok()?);
                let v = f32::from_le_bytes(v.try_into().ok()?);
                (i != u32::MAX).then_some((i, v))
            })
            .collect())
    }
}

/// The residual and the next norm in one pass (`residual_norm.wgsl`), over `rows` rows of `n`:
/// `h += rmsnorm(out) * w_post` (or `h += out` without `w_post`, Gemma 1), then
/// `xn = rmsnorm(h) * w_next`.
#[allow(clippy::too_many_arguments)]
pub async fn residual_norm(
    gpu: &Gpu,
    out: &wgpu::Buffer,
    w_post: Option<&wgpu::Buffer>,
    w_next: &wgpu::Buffer,
    h: &wgpu::Buffer,
    xn: &wgpu::Buffer,
    rows: u32,
    n: u32,
    eps: f32,
) -> Result<Op, Error> {
    let total = u64::from(rows) * u64::from(n);
    need_floats("residual_norm out", out, total)?;
    need_floats("residual_norm h", h, total)?;
    need_floats("residual_norm xn", xn, total)?;
    need_floats("residual_norm w_next", w_next, u64::from(n))?;
    if let Some(w) = w_post {
        need_floats("residual_norm w_post", w, u64::from(n))?;
    }
    let constants = [("POST", if w_post.is_some() { 1.0 } else { 0.0 })];
    let pipeline = gpu
        .pipeline(&PipelineDesc {
            kernel: "residual_norm",
            constants: &constants,
            ..Default::default()
        })
        .await?;
    let params = gpu.uniform_u32("residual_norm params", &words(&[rows, n, eps.to_bits()]))?;
    // Without a post-norm the binding is never read: bind w_next there.
    let w_post = w_post.unwrap_or(w_next);
    gpu.bound_op(
        "residual_norm",
        &pipeline,
        &[out, w_post, w_next, h, xn, &params],
        fold_workgroups(rows),
    )
    .await
}

/// The uniform of `qk_rope_kv.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct QkRopeKvParams {
    pub n_tokens: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub cache_len: u32,
    pub pos: u32,
    pub base: f32,
    pub eps: f32,
    /// 1, or 1 / factor of linear RoPE scaling (Gemma 3 4B+ global layers).
    pub pos_scale: f32,
    pub _pad: [u32; 3],
}

/// Per-head norm (Gemma 3), RoPE and the KV-cache write of one layer in one dispatch, bound
/// for up to `max_tokens` tokens; [`QkRopeKv::set`] picks the block.
pub struct QkRopeKv {
    pub op: Op,
    params: wgpu::Buffer,
    words: QkRopeKvParams,
    max_tokens: u32,
}

/// The buffers [`qk_rope_kv`] reads and writes.
pub struct QkRopeKvIo<'a> {
    /// (tokens, (n_heads + 2 n_kv_heads) head_dim): q | k | v of each token.
    pub qkv: &'a wgpu::Buffer,
    /// (2, head_dim) q-norm then k-norm weights; `None`: no per-head norm (Gemma 1, 2).
    pub norm_w: Option<&'a wgpu::Buffer>,
    /// (tokens, n_heads, head_dim) rotated queries.
    pub q: &'a wgpu::Buffer,
    /// (n_kv_heads, cache_len, head_dim) each, of `kv`.
    pub k_cache: &'a wgpu::Buffer,
    pub v_cache: &'a wgpu::Buffer,
    pub kv: KvDtype,
}

pub async fn qk_rope_kv(
    gpu: &Gpu,
    io: &QkRopeKvIo<'_>,
    shape: QkRopeKvParams,
    max_tokens: u32,
) -> Result<QkRopeKv, Error> {
    let (nh, nkv, hd) = (shape.n_heads, shape.n_kv_heads, shape.head_dim);
    if hd == 0 || hd % 2 != 0 || hd > 256 || nh == 0 || nkv == 0 || shape.cache_len == 0 {
        return Err(Error::Unsupported(format!("qk_rope_kv: {shape:?}")));
    }
    let row = u64::from(nh + 2 * nkv) * u64::from(hd);
    let t = u64::from(max_tokens);
    need_floats("qk_rope_kv qkv", io.qkv, t * row)?;
    need_floats("qk_rope_kv q", io.q, t * u64::from(nh) * u64::from(hd))?;
    io.kv.check(gpu)?;
    let cache = u64::from(nkv) * u64::from(shape.cache_len) * u64::from(hd) * io.kv.bytes();
    need_bytes("qk_rope_kv k_cache", io.k_cache, cache)?;
    need_bytes("qk_rope_kv v_cache", io.v_cache, cache)?;
    if let Some(w) = io.norm_w {
        need_floats("qk_rope_kv norm_w", w, 2 * u64::from(hd))?;
    }
    let constants = [("NORM", if io.norm_w.is_some() { 1.0 } else { 0.0 })];
    let pipeline = gpu
        .pipeline(&PipelineDesc {
            kernel: "qk_rope_kv",
            libs: &[io.kv.lib(), "head_norm_rope"],
            constants: &constants,
            enables: io.kv.enables(),
            ..Default::default()
        })
        .await?;
    let words = QkRopeKvParams {
        n_tokens: 1,
        pos: 0,
        ..shape
    };
    let params = gpu.uniform("qk_rope_kv params", bytemuck::bytes_of(&words))?;
    // Without a norm the binding is never read: bind the input there.
    let norm_w = io.norm_w.unwrap_or(io.qkv);
    let op = gpu
        .bound_op(
            "qk_rope_kv",
            &pipeline,
            &[io.qkv, norm_w, io.q, io.k_cache, io.v_cache, &params],
            fold_workgroups(nh + nkv),
        )
        .await?;
    Ok(QkRopeKv {
        op,
        params,
        words,
        max_tokens,
    })
}

impl QkRopeKv {
    /// The op for `n` tokens at positions pos..pos+n (the caller checks they fit the cache).
    pub fn set(&mut self, gpu: &Gpu, pos: u32, n: u32) -> Result<&Op, Error> {
        if n == 0 || n > self.max_tokens {
            return Err(Error::Unsupported(format!(
                "qk_rope_kv of {n} tokens (bound for {})",
                self.max_tokens
            )));
        }
        if self.words.pos != pos || self.words.n_tokens != n {
            self.words.pos = pos;
            self.words.n_tokens = n;
            gpu.write(&self.params, 0, bytemuck::bytes_of(&self.words))?;
        }
        let w = &self.words;
        self.op.workgroups = fold_workgroups(n * (w.n_heads + w.n_kv_heads));
        Ok(&self.op)
    }
}

/// `out = gelu_tanh(gate) * up` from `gu` rows of (gate | up), `n_tokens` rows of `ffn`.
pub async fn glu(
    gpu: &Gpu,
    gu: &wgpu::Buffer,
    out: &wgpu::Buffer,
    n_tokens: u32,
    ffn: u32,
) -> Result<Op, Error> {
    let n = u64::from(n_tokens) * u64::from(ffn);
    need_floats("glu gu", gu, 2 * n)?;
    need_floats("glu out", out, n)?;
    let n = u32::try_from(n).map_err(|_| Error::Unsupported("glu: too large".into()))?;
    let pipeline = gpu.pipeline(&PipelineDesc::kernel("glu")).await?;
    let params = gpu.uniform_u32("glu params", &words(&[n_tokens, ffn]))?;
    gpu.bound_op(
        "glu",
        &pipeline,
        &[gu, out, &params],
        fold_workgroups(n.div_ceil(256)),
    )
    .await
}
