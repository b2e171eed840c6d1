//! Attention and the KV cache on the GPU: the parameters, dispatch sizes and bound ops of
//! `shaders/kv_write.wgsl`, `attention_decode.wgsl` + `attention_combine.wgsl` (one query, split
//! over the keys) and `attention_prefill.wgsl` (a causal block of queries), or on CPU adapters
//! their `_rows` versions ([`AttentionLayout`]).
//!
//! Layouts (row-major, innermost last; activations f32, the cache f32 or f16, [`KvDtype`]):
//! - q and the attention output: (tokens, n_heads, head_dim), i.e. one q-projection row per token;
//! - new k and v rows: (tokens, n_kv_heads, head_dim), already normed and rotated;
//! - the cache of one layer, one buffer for k and one for v: (n_kv_heads, cache_len, head_dim),
//!   so that one kv head's keys are contiguous and stream in position order; position p lives
//!   in slot p % cache_len (a ring for sliding-window layers).
//!
//! Everything is bound once at load ([`AttentionLayer::new`]); per token the caller asks for
//! the ops of a decode step or a prefill block, which writes that step's positions into the
//! layer's uniform buffers (queue writes land before the next submit).

use super::op::need_floats;
use super::{fold_workgroups, Enable, Gpu, Op, PipelineDesc, MAX_WORKGROUPS_PER_DIM};
use crate::Error;

/// Largest head_dim the kernels take (one thread per output dim in a 256-thread workgroup).
pub const MAX_HEAD_DIM: u32 = 256;
/// Keys scored per step by attention_decode.wgsl (its `TILE`): a split covers whole steps.
pub const DECODE_TILE: u32 = 32;
/// Query heads per decode workgroup (attention_decode.wgsl's `GROUP`).
pub const DECODE_GROUP: u32 = 8;
/// Most splits of the visible keys in decode; past MAX_SPLITS * DECODE_TILE keys a split
/// takes several steps. Sizes the scratch buffers.
pub const MAX_SPLITS: u32 = 256;
/// (query, head) rows per prefill workgroup (attention_prefill.wgsl's `ROWS`).
pub const PREFILL_ROWS: u32 = 8;
const KV_WRITE_WG: u32 = 256;

/// The uniform of the attention kernels (`AttnParams` in the WGSL files), 64 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnParams {
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub cache_len: u32,
    /// Position of the (first) query.
    pub pos: u32,
    /// Queries in a prefill block.
    pub n_queries: u32,
    /// Sliding window; 0 = none.
    pub window: u32,
    /// Decode: keys per split, a multiple of [`DECODE_TILE`].
    pub keys_per_split: u32,
    /// Decode: number of splits (workgroups along x).
    pub n_splits: u32,
    pub scale: f32,
    /// Soft-cap of the scores; 0 = none.
    pub softcap: f32,
    /// The fused decode's q/k norm epsilon and RoPE (see [`FusedRope`]); 0 elsewhere.
    pub eps: f32,
    pub rope_base: f32,
    pub rope_pos_scale: f32,
    pub _pad: [u32; 2],
}

/// The uniform of kv_write.wgsl, 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct KvWriteParams {
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub cache_len: u32,
    pub pos: u32,
    pub n_tokens: u32,
    pub _pad: [u32; 3],
}

/// The element type of the KV cache. f16 halves the cache's memory (a Gemma 2 2B at 8192
/// positions: 1.3 GB in f32) and the bytes attention reads per key; the attention kernels
/// still compute in f32. Needs shader-f16. The kernels read it through `shaders/kv_f32.wgsl`
/// or `kv_f16.wgsl`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvDtype {
    #[default]
    F32,
    F16,
}

impl KvDtype {
    /// f16 where the device has shader-f16, except on CPU adapters (whose memory is the host's,
    /// and where half loads and conversions made decode attention slower, not faster), else f32.
    pub fn best(gpu: &Gpu) -> Self {
        if gpu.caps.f16 && !gpu.caps.cpu {
            KvDtype::F16
        } else {
            KvDtype::F32
        }
    }

    pub fn bytes(self) -> u64 {
        match self {
            KvDtype::F32 => 4,
            KvDtype::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDtype::F32 => "f32",
            KvDtype::F16 => "f16",
        }
    }

    /// The WGSL library that defines the cache's element types.
    pub fn lib(self) -> &'static str {
        match self {
            KvDtype::F32 => "kv_f32",
            KvDtype::F16 => "kv_f16",
        }
    }

    pub fn enables(self) -> &'static [Enable] {
        match self {
            KvDtype::F32 => &[],
            KvDtype::F16 => &[Enable::F16],
        }
    }

    /// An error unless `gpu` can run kernels on this cache.
    pub fn check(self, gpu: &Gpu) -> Result<(), Error> {
        if self == KvDtype::F16 && !gpu.caps.f16 {
            return Err(unsupported(
                "an f16 KV cache on a device without shader-f16".into(),
            ));
        }
        Ok(())
    }
}

/// Which kernels attend ([`AttentionLayout::for_gpu`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttentionLayout {
    /// `attention_decode.wgsl` (256 threads a split of the keys) and `attention_prefill.wgsl`
    /// (8 (query, head) rows a workgroup), 32 keys a step through workgroup memory.
    Tiles,
    /// `attention_decode_rows.wgsl` (a split) and `attention_prefill_rows.wgsl` (a query) a
    /// subgroup of `lanes` invocations, a key at a time in registers (`attention_rows.wgsl`);
    /// for CPU adapters, where workgroup memory and barriers are slow.
    Rows { lanes: u32 },
}

impl AttentionLayout {
    /// Rows on CPU adapters whose every subgroup holds 4 or more invocations (lavapipe: 8),
    /// tiles elsewhere.
    pub fn for_gpu(gpu: &Gpu) -> Self {
        let c = &gpu.caps;
        if c.cpu && c.subgroups && c.subgroup_min_size >= 4 {
            AttentionLayout::Rows {
                lanes: c.subgroup_min_size.min(8),
            }
        } else {
            AttentionLayout::Tiles
        }
    }
}

/// The attention of one layer: head counts, cache length and the Gemma-version knobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    pub n_heads: u32,
    /// Divides `n_heads`; query head h reads kv head h / (n_heads / n_kv_heads).
    pub n_kv_heads: u32,
    /// A multiple of 4, at most [`MAX_HEAD_DIM`].
    pub head_dim: u32,
    /// Slots the cache holds; position p lives in slot p % cache_len, so a sliding-window
    /// layer may hold fewer slots than the context ([`AttentionShape::slots_needed`]).
    pub cache_len: u32,
    /// 1/sqrt(head_dim), or 1/sqrt(query_pre_attn_scalar) for Gemma 2.
    pub scale: f32,
    /// Gemma 2: s = c * tanh(s / c) before the mask.
    pub softcap: Option<f32>,
    /// Sliding window: key j is visible to query i when 0 <= i - j < window.
    pub window: Option<u32>,
    /// The cache's element type.
    pub kv: KvDtype,
}

/// A decode step: the uniform and the workgroup counts of its two passes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodePlan {
    pub params: AttnParams,
    pub attend: [u32; 3],
    pub combine: [u32; 3],
}

fn unsupported(msg: String) -> Error {
    Error::Unsupported(msg)
}

impl AttentionShape {
    /// Rejects shapes the kernels cannot run, with the reason.
    pub fn check(&self) -> Result<(), Error> {
        if self.n_heads == 0 || self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return Err(unsupported(format!(
                "attention with {} heads and {} kv heads",
                self.n_heads, self.n_kv_heads
            )));
        }
        if self.head_dim == 0 || self.head_dim % 4 != 0 || self.head_dim > MAX_HEAD_DIM {
            return Err(unsupported(format!(
                "head_dim {} (needs a multiple of 4 up to {MAX_HEAD_DIM})",
                self.head_dim
            )));
        }
        if self.cache_len == 0 {
            return Err(unsupported("a KV cache of 0 positions".into()));
        }
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(unsupported(format!("attention scale {}", self.scale)));
        }
        if let Some(c) = self.softcap {
            if !(c.is_finite() && c > 0.0) {
                return Err(unsupported(format!("attention soft-cap {c}")));
            }
        }
        if self.window == Some(0) {
            return Err(unsupported("a sliding window of 0".into()));
        }
        // Every index the kernels form must fit u32.
        let _ = self.cache_floats()?;
        let _ = self.partial_floats()?;
        Ok(())
    }

    fn group(&self) -> u32 {
        self.n_heads / self.n_kv_heads.max(1)
    }

    /// Values in one layer's k (or v) cache.
    pub fn cache_floats(&self) -> Result<u64, Error> {
        let n = u64::from(self.n_kv_heads) * u64::from(self.cache_len) * u64::from(self.head_dim);
        if n > u64::from(u32::MAX) {
            return Err(unsupported(format!("a KV cache of {n} values per layer")));
        }
        Ok(n)
    }

    /// Bytes of one layer's k (or v) cache buffer.
    pub fn cache_bytes(&self) -> Result<u64, Error> {
        Ok(self.cache_floats()? * self.kv.bytes())
    }

    /// f32 values in the decode scratch `part_o` (vec2 count of `part_ml` is this / head_dim).
    pub fn partial_floats(&self) -> Result<u64, Error> {
        let n = u64::from(MAX_SPLITS) * u64::from(self.n_heads) * u64::from(self.head_dim);
        if n > u64::from(u32::MAX) {
            return Err(unsupported(format!("{n} decode partials")));
        }
        Ok(n)
    }

    fn params(&self) -> AttnParams {
        AttnParams {
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            cache_len: self.cache_len,
            window: self.window.unwrap_or(0),
            scale: self.scale,
            softcap: self.softcap.unwrap_or(0.0),
            ..Default::default()
        }
    }

    /// Tokens pos..pos+n fit the cache: either it holds every position up to pos + n, or
    /// (sliding window) its ring of slots holds the window of the block's first query plus
    /// the block itself, so no slot a query reads is overwritten by the block.
    fn check_span(&self, pos: u32, n: u32) -> Result<(), Error> {
        let end = pos.checked_add(n);
        let fits = match (end, self.window) {
            (None, _) => false,
            (Some(end), _) if end <= self.cache_len => true,
            (Some(_), Some(w)) => u64::from(w) + u64::from(n) - 1 <= u64::from(self.cache_len),
            (Some(_), None) => false,
        };
        if n == 0 || !fits {
            return Err(unsupported(format!(
                "tokens {pos}..{pos}+{n} do not fit a KV cache of {} slots (window {:?})",
                self.cache_len, self.window
            )));
        }
        Ok(())
    }

    /// Cache slots a layer needs for a context of `context` tokens fed in blocks of at most
    /// `max_block`: a sliding-window layer keeps a ring of window + max_block - 1 slots.
    pub fn slots_needed(window: Option<u32>, context: u32, max_block: u32) -> u32 {
        match window {
            Some(w) => context.min(w.saturating_add(max_block.max(1) - 1)),
            None => context,
        }
    }

    /// Storing `n` new k/v rows at positions pos..pos+n: the uniform and workgroup count.
    pub fn kv_write(&self, pos: u32, n: u32) -> Result<(KvWriteParams, [u32; 3]), Error> {
        self.check_span(pos, n)?;
        let vec4s = u64::from(n) * u64::from(self.n_kv_heads) * u64::from(self.head_dim / 4);
        let groups = u32::try_from(vec4s.div_ceil(u64::from(KV_WRITE_WG)))
            .map_err(|_| unsupported(format!("kv write of {n} tokens")))?;
        let params = KvWriteParams {
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            cache_len: self.cache_len,
            pos,
            n_tokens: n,
            _pad: [0; 3],
        };
        Ok((params, fold_workgroups(groups)))
    }

    /// One query at position `pos` attending to the cache 0..=pos (within the window).
    /// The visible keys are split into at most [`MAX_SPLITS`] runs of whole tiles.
    pub fn decode(&self, pos: u32) -> Result<DecodePlan, Error> {
        self.check_span(pos, 1)?;
        let visible = match self.window {
            Some(w) => w.min(pos + 1),
            None => pos + 1,
        };
        let tiles = visible.div_ceil(DECODE_TILE);
        let keys_per_split = tiles.div_ceil(MAX_SPLITS).max(1) * DECODE_TILE;
        let n_splits = visible.div_ceil(keys_per_split);
        let params = AttnParams {
            pos,
            n_queries: 1,
            keys_per_split,
            n_splits,
            ..self.params()
        };
        Ok(DecodePlan {
            params,
            attend: [
                n_splits,
                self.n_kv_heads,
                self.group().div_ceil(DECODE_GROUP),
            ],
            combine: [self.n_heads, 1, 1],
        })
    }

    /// A causal block of `n` queries at positions pos..pos+n attending to the cache 0..pos+n,
    /// for the kernel of `layout`: attention_prefill.wgsl's (query, head) rows, or
    /// attention_prefill_rows.wgsl's workgroup a query.
    pub fn prefill(
        &self,
        pos: u32,
        n: u32,
        layout: AttentionLayout,
    ) -> Result<(AttnParams, [u32; 3]), Error> {
        self.check_span(pos, n)?;
        let (x, y, z) = match layout {
            AttentionLayout::Tiles => {
                let heads = self.group().min(PREFILL_ROWS);
                let queries = PREFILL_ROWS / heads;
                let head_chunks = self.group().div_ceil(heads);
                (
                    n.div_ceil(queries),
                    self.n_kv_heads.saturating_mul(head_chunks),
                    1,
                )
            }
            AttentionLayout::Rows { .. } => {
                (n, self.n_kv_heads, self.group().div_ceil(DECODE_GROUP))
            }
        };
        if x > MAX_WORKGROUPS_PER_DIM || y > MAX_WORKGROUPS_PER_DIM {
            return Err(unsupported(format!("a prefill block of {n} tokens")));
        }
        let params = AttnParams {
            pos,
            n_queries: n,
            ..self.params()
        };
        Ok((params, [x, y, z]))
    }
}

/// An error unless every subgroup of `gpu` holds `lanes` (4 to 8) invocations.
fn check_rows(gpu: &Gpu, lanes: u32) -> Result<(), Error> {
    let c = &gpu.caps;
    if !(c.subgroups && c.subgroup_min_size >= lanes && (4..=8).contains(&lanes)) {
        return Err(unsupported(format!(
            "attention in subgroups of {lanes} on a device whose subgroups hold {}",
            c.subgroup_min_size
        )));
    }
    Ok(())
}

/// attention_rows.wgsl's pipeline constants for `shape`'s heads.
fn rows_constants(shape: &AttentionShape, lanes: u32) -> [(&'static str, f64); 3] {
    [
        ("LANES", f64::from(lanes)),
        ("NG", f64::from(shape.group().min(DECODE_GROUP))),
        ("CHUNKS", f64::from((shape.head_dim / 4).div_ceil(lanes))),
    ]
}

/// The four attention pipelines for one cache element type, head layout and decode layout.
#[derive(Clone, Debug)]
pub struct AttentionKernels {
    pub kv: KvDtype,
    pub layout: AttentionLayout,
    /// (n_heads, n_kv_heads, head_dim) they were built for.
    heads: (u32, u32, u32),
    pub kv_write: wgpu::ComputePipeline,
    pub decode: wgpu::ComputePipeline,
    pub combine: wgpu::ComputePipeline,
    pub prefill: wgpu::ComputePipeline,
}

impl AttentionKernels {
    /// The pipelines for layers of `shape`'s heads and cache type (any cache length or window).
    pub async fn load(
        gpu: &Gpu,
        shape: &AttentionShape,
        layout: AttentionLayout,
    ) -> Result<Self, Error> {
        shape.check()?;
        let kv = shape.kv;
        kv.check(gpu)?;
        let libs = [kv.lib()];
        let on_cache = |kernel| PipelineDesc {
            kernel,
            libs: &libs,
            enables: kv.enables(),
            ..Default::default()
        };
        let decode = AttentionKernels::decode_pipeline(gpu, shape, layout, None).await?;
        let prefill = match layout {
            AttentionLayout::Tiles => {
                gpu.pipeline(&PipelineDesc {
                    libs: &["attention_params", kv.lib()],
                    ..on_cache("attention_prefill")
                })
                .await?
            }
            AttentionLayout::Rows { lanes } => {
                check_rows(gpu, lanes)?;
                gpu.pipeline(&PipelineDesc {
                    libs: &["attention_params", kv.lib(), "attention_rows"],
                    constants: &rows_constants(shape, lanes),
                    enables: &[kv.enables(), &[Enable::Subgroups]].concat(),
                    ..on_cache("attention_prefill_rows")
                })
                .await?
            }
        };
        Ok(AttentionKernels {
            kv,
            layout,
            heads: (shape.n_heads, shape.n_kv_heads, shape.head_dim),
            kv_write: gpu.pipeline(&on_cache("kv_write")).await?,
            decode,
            combine: gpu
                .pipeline(&PipelineDesc {
                    kernel: "attention_combine",
                    libs: &["attention_params"],
                    ..Default::default()
                })
                .await?,
            prefill,
        })
    }
}

/// What the fused decode (attention_decode.wgsl's `main_fused`) needs to norm and rotate the
/// token's queries and key itself: the layer's RoPE and, on Gemma 3, its q/k norm epsilon.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FusedRope {
    pub base: f32,
    /// 1, or 1 / factor of linear RoPE scaling.
    pub pos_scale: f32,
    pub eps: f32,
}

/// The inputs of the fused decode: the token's q | k | v projections and, on Gemma 3, the
/// (2, head_dim) q-norm then k-norm weights.
#[derive(Clone, Copy, Debug)]
pub struct FusedDecodeIo<'a> {
    pub qkv: &'a wgpu::Buffer,
    pub qk_norm: Option<&'a wgpu::Buffer>,
    pub rope: FusedRope,
}

impl AttentionKernels {
    /// The first pass of decode attention in `layout` for `shape`'s heads and cache: `main`,
    /// or with `fused = Some(qk_norm)` the fused entry, with or without the q/k norm.
    pub async fn decode_pipeline(
        gpu: &Gpu,
        shape: &AttentionShape,
        layout: AttentionLayout,
        fused: Option<bool>,
    ) -> Result<wgpu::ComputePipeline, Error> {
        let kv = shape.kv;
        let mut constants = vec![];
        if let Some(norm) = fused {
            constants.push(("NORM", if norm { 1.0 } else { 0.0 }));
        }
        let entry = Some(if fused.is_some() {
            "main_fused"
        } else {
            "main"
        });
        let libs = ["attention_params", kv.lib(), "head_norm_rope"];
        match layout {
            AttentionLayout::Tiles => {
                gpu.pipeline(&PipelineDesc {
                    kernel: "attention_decode",
                    libs: &libs,
                    constants: &constants,
                    enables: kv.enables(),
                    entry,
                })
                .await
            }
            AttentionLayout::Rows { lanes } => {
                check_rows(gpu, lanes)?;
                constants.extend(rows_constants(shape, lanes));
                gpu.pipeline(&PipelineDesc {
                    kernel: "attention_decode_rows",
                    libs: &[&libs[..], &["attention_rows"]].concat(),
                    constants: &constants,
                    enables: &[kv.enables(), &[Enable::Subgroups]].concat(),
                    entry,
                })
                .await
            }
        }
    }
}

/// One layer's KV cache: (n_kv_heads, cache_len, head_dim) each, of the shape's [`KvDtype`].
#[derive(Debug)]
pub struct LayerCache {
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
}

impl LayerCache {
    pub fn new(gpu: &Gpu, shape: &AttentionShape, label: &str) -> Result<Self, Error> {
        shape.check()?;
        shape.kv.check(gpu)?;
        let bytes = shape.cache_bytes()?;
        if bytes > gpu.caps.max_binding {
            return Err(Error::Unsupported(format!(
                "a KV cache of {bytes} bytes per layer exceeds the {}-byte binding limit; use a shorter context",
                gpu.caps.max_binding
            )));
        }
        Ok(LayerCache {
            k: gpu.storage(&format!("{label}.k_cache"), bytes)?,
            v: gpu.storage(&format!("{label}.v_cache"), bytes)?,
        })
    }
}

/// The decode split scratch, shared by every layer of the same shape (dispatches in a pass
/// run in order, so layers cannot overlap in it).
#[derive(Debug)]
pub struct AttentionScratch {
    /// (MAX_SPLITS, n_heads, head_dim) unnormalised partial outputs.
    pub part_o: wgpu::Buffer,
    /// (MAX_SPLITS, n_heads) running max and sum.
    pub part_ml: wgpu::Buffer,
    /// (MAX_SPLITS, n_heads, head_dim): the fused decode's normed, rotated queries, a copy per
    /// split (each workgroup writes and reads only its own).
    pub q_split: wgpu::Buffer,
}

impl AttentionScratch {
    pub fn new(gpu: &Gpu, shape: &AttentionShape) -> Result<Self, Error> {
        shape.check()?;
        let floats = shape.partial_floats()?;
        Ok(AttentionScratch {
            part_o: gpu.storage("attn.part_o", floats * 4)?,
            part_ml: gpu.storage(
                "attn.part_ml",
                u64::from(MAX_SPLITS) * u64::from(shape.n_heads) * 8,
            )?,
            q_split: gpu.storage("attn.q_split", floats * 4)?,
        })
    }
}

/// The activation buffers one layer's attention reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct AttentionIo<'a> {
    /// (tokens, n_heads, head_dim)
    pub q: &'a wgpu::Buffer,
    /// (tokens, n_kv_heads, head_dim)
    pub k_new: &'a wgpu::Buffer,
    /// (tokens, n_kv_heads, head_dim)
    pub v_new: &'a wgpu::Buffer,
    /// (tokens, n_heads, head_dim)
    pub out: &'a wgpu::Buffer,
}

/// One layer's attention, bound once: its uniforms and the ops of kv write, decode and prefill.
#[derive(Debug)]
pub struct AttentionLayer {
    pub shape: AttentionShape,
    pub layout: AttentionLayout,
    /// Most tokens the bound activation buffers hold.
    pub max_tokens: u32,
    attn_params: wgpu::Buffer,
    kv_params: wgpu::Buffer,
    kv_write: Op,
    decode: Op,
    combine: Op,
    prefill: Op,
    /// The fused decode, once bound ([`AttentionLayer::bind_fused_decode`]).
    fused: Option<(Op, FusedRope)>,
}

impl AttentionLayer {
    /// Binds `io`, `cache` and `scratch`. Build it inside [`Gpu::scoped`] at load so a binding
    /// error surfaces there.
    pub fn new(
        gpu: &Gpu,
        kernels: &AttentionKernels,
        shape: AttentionShape,
        io: AttentionIo<'_>,
        cache: &LayerCache,
        scratch: &AttentionScratch,
        label: &str,
    ) -> Result<Self, Error> {
        shape.check()?;
        if kernels.kv != shape.kv {
            return Err(Error::Unsupported(format!(
                "{label}: attention kernels for a {} cache bound to a {} cache",
                kernels.kv.name(),
                shape.kv.name()
            )));
        }
        if kernels.heads != (shape.n_heads, shape.n_kv_heads, shape.head_dim) {
            return Err(Error::Unsupported(format!(
                "{label}: attention kernels for (heads, kv heads, head_dim) {:?} bound to {:?}",
                kernels.heads,
                (shape.n_heads, shape.n_kv_heads, shape.head_dim)
            )));
        }
        let q_row = u64::from(shape.n_heads) * u64::from(shape.head_dim) * 4;
        let kv_row = u64::from(shape.n_kv_heads) * u64::from(shape.head_dim) * 4;
        let rows = [
            io.q.size() / q_row,
            io.out.size() / q_row,
            io.k_new.size() / kv_row,
            io.v_new.size() / kv_row,
        ];
        let max_tokens = rows.iter().copied().min().unwrap_or(0);
        let max_tokens = u32::try_from(max_tokens).unwrap_or(u32::MAX);
        if max_tokens == 0 {
            return Err(Error::Unsupported(format!(
                "{label}: attention buffers hold no whole token"
            )));
        }
        let cache_bytes = shape.cache_bytes()?;
        if cache.k.size() < cache_bytes || cache.v.size() < cache_bytes {
            return Err(Error::Unsupported(format!(
                "{label}: KV cache buffers smaller than {cache_bytes} bytes"
            )));
        }
        if scratch.part_o.size() < shape.partial_floats()? * 4
            || scratch.part_ml.size() < u64::from(MAX_SPLITS) * u64::from(shape.n_heads) * 8
        {
            return Err(Error::Unsupported(format!(
                "{label}: attention scratch too small"
            )));
        }
        let (kv, kv_groups) = shape.kv_write(0, 1)?;
        let plan = shape.decode(0)?;
        let (pre, pre_groups) = shape.prefill(0, 1, kernels.layout)?;
        let attn_params = gpu.uniform(&format!("{label}.attn"), bytemuck::bytes_of(&pre))?;
        let kv_params = gpu.uniform(&format!("{label}.kv"), bytemuck::bytes_of(&kv))?;
        let kv_write = gpu.op_buffers(
            &format!("{label}.kv_write"),
            &kernels.kv_write,
            &[&kv_params, io.k_new, io.v_new, &cache.k, &cache.v],
            kv_groups,
        );
        let decode = gpu.op_buffers(
            &format!("{label}.attn_decode"),
            &kernels.decode,
            &[
                &attn_params,
                io.q,
                &cache.k,
                &cache.v,
                &scratch.part_o,
                &scratch.part_ml,
            ],
            plan.attend,
        );
        let combine = gpu.op_buffers(
            &format!("{label}.attn_combine"),
            &kernels.combine,
            &[&attn_params, &scratch.part_o, &scratch.part_ml, io.out],
            plan.combine,
        );
        let prefill = gpu.op_buffers(
            &format!("{label}.attn_prefill"),
            &kernels.prefill,
            &[&attn_params, io.q, &cache.k, &cache.v, io.out],
            pre_groups,
        );
        Ok(AttentionLayer {
            shape,
            layout: kernels.layout,
            max_tokens,
            attn_params,
            kv_params,
            kv_write,
            decode,
            combine,
            prefill,
            fused: None,
        })
    }

    /// Binds the fused decode: [`AttentionLayer::fused_decode_ops`] then norms and rotates the
    /// token's queries and key from `io.qkv` (row 0) and stores its key and value itself, in
    /// place of `qk_rope_kv.wgsl` + [`AttentionLayer::attend_decode_ops`]. Unsupported when a
    /// kv head has more query heads than one workgroup takes ([`DECODE_GROUP`]).
    pub async fn bind_fused_decode(
        &mut self,
        gpu: &Gpu,
        io: FusedDecodeIo<'_>,
        cache: &LayerCache,
        scratch: &AttentionScratch,
    ) -> Result<(), Error> {
        let s = self.shape;
        if s.group() > DECODE_GROUP {
            return Err(Error::Unsupported(format!(
                "fused decode with {} query heads a kv head",
                s.group()
            )));
        }
        need_floats(
            "fused decode qkv",
            io.qkv,
            u64::from(s.n_heads + 2 * s.n_kv_heads) * u64::from(s.head_dim),
        )?;
        if let Some(w) = io.qk_norm {
            need_floats("fused decode qk_norm", w, 2 * u64::from(s.head_dim))?;
        }
        if scratch.q_split.size() < s.partial_floats()? * 4 {
            return Err(Error::Unsupported(
                "fused decode: q scratch too small".into(),
            ));
        }
        let pipeline =
            AttentionKernels::decode_pipeline(gpu, &s, self.layout, Some(io.qk_norm.is_some()))
                .await?;
        // Without a norm the binding is never read: bind the input there.
        let qk_norm = io.qk_norm.unwrap_or(io.qkv);
        let op = gpu
            .bound_op(
                "attn_decode_fused",
                &pipeline,
                &[
                    &self.attn_params,
                    &scratch.q_split,
                    &cache.k,
                    &cache.v,
                    &scratch.part_o,
                    &scratch.part_ml,
                    io.qkv,
                    qk_norm,
                ],
                [1, s.n_kv_heads, 1],
            )
            .await?;
        self.fused = Some((op, io.rope));
        Ok(())
    }

    /// Whether [`AttentionLayer::bind_fused_decode`] bound the fused decode.
    pub fn has_fused_decode(&self) -> bool {
        self.fused.is_some()
    }

    /// The token at `pos` through the fused decode (bound with
    /// [`AttentionLayer::bind_fused_decode`]): its queries and key normed and rotated, its key
    /// and value stored at `pos`, attended, the splits merged. `None` when not bound.
    pub fn fused_decode_ops(&mut self, gpu: &Gpu, pos: u32) -> Result<Option<[&Op; 2]>, Error> {
        let Some((op, rope)) = self.fused.as_mut() else {
            return Ok(None);
        };
        let plan = self.shape.decode(pos)?;
        let params = AttnParams {
            eps: rope.eps,
            rope_base: rope.base,
            rope_pos_scale: rope.pos_scale,
            ..plan.params
        };
        gpu.write(&self.attn_params, 0, bytemuck::bytes_of(&params))?;
        op.workgroups = plan.attend;
        self.combine.workgroups = plan.combine;
        Ok(Some([&*op, &self.combine]))
    }

    /// The token at `pos` (its q, k, v in row 0 of the io buffers): stores k and v at `pos`,
    /// then attends. Returns the ops to record in this order. The uniforms are rewritten, so
    /// record one step per layer per submit.
    pub fn decode_ops(&mut self, gpu: &Gpu, pos: u32) -> Result<[&Op; 3], Error> {
        let (kv, kv_groups) = self.shape.kv_write(pos, 1)?;
        let plan = self.shape.decode(pos)?;
        gpu.write(&self.kv_params, 0, bytemuck::bytes_of(&kv))?;
        gpu.write(&self.attn_params, 0, bytemuck::bytes_of(&plan.params))?;
        self.kv_write.workgroups = kv_groups;
        self.decode.workgroups = plan.attend;
        self.combine.workgroups = plan.combine;
        Ok([&self.kv_write, &self.decode, &self.combine])
    }

    /// [`AttentionLayer::decode_ops`] without the cache write, for a step whose keys and
    /// values are already in the cache (written by `qk_rope_kv.wgsl`).
    pub fn attend_decode_ops(&mut self, gpu: &Gpu, pos: u32) -> Result<[&Op; 2], Error> {
        let plan = self.shape.decode(pos)?;
        gpu.write(&self.attn_params, 0, bytemuck::bytes_of(&plan.params))?;
        self.decode.workgroups = plan.attend;
        self.combine.workgroups = plan.combine;
        Ok([&self.decode, &self.combine])
    }

    /// [`AttentionLayer::prefill_ops`] without the cache write (see
    /// [`AttentionLayer::attend_decode_ops`]).
    pub fn attend_prefill_ops(&mut self, gpu: &Gpu, pos: u32, n: u32) -> Result<[&Op; 1], Error> {
        if n > self.max_tokens {
            return Err(Error::Unsupported(format!(
                "a prefill block of {n} tokens; the buffers hold {}",
                self.max_tokens
            )));
        }
        let (params, groups) = self.shape.prefill(pos, n, self.layout)?;
        gpu.write(&self.attn_params, 0, bytemuck::bytes_of(&params))?;
        self.prefill.workgroups = groups;
        Ok([&self.prefill])
    }

    /// `n` tokens at positions pos..pos+n (rows 0..n of the io buffers), attending causally to
    /// the cache 0..pos+n, which must already hold positions 0..pos.
    pub fn prefill_ops(&mut self, gpu: &Gpu, pos: u32, n: u32) -> Result<[&Op; 2], Error> {
        if n > self.max_tokens {
            return Err(Error::Unsupported(format!(
                "a prefill block of {n} tokens; the buffers hold {}",
                self.max_tokens
            )));
        }
        let (kv, kv_groups) = self.shape.kv_write(pos, n)?;
        let (params, groups) = self.shape.prefill(pos, n, self.layout)?;
        gpu.write(&self.kv_params, 0, bytemuck::bytes_of(&kv))?;
        gpu.write(&self.attn_params, 0, bytemuck::bytes_of(&params))?;
        self.kv_write.workgroups = kv_groups;
        self.prefill.workgroups = groups;
        Ok([&self.kv_write, &self.prefill])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n_heads: u32, n_kv_heads: u32, window: Option<u32>) -> AttentionShape {
        AttentionShape {
            n_heads,
            n_kv_heads,
            head_dim: 256,
            cache_len: 40000,
            scale: 0.0625,
            softcap: None,
            window,
            kv: KvDtype::F32,
        }
    }

    #[test]
    fn decode_splits_tile_the_visible_keys() {
        for (window, pos) in [
            (None, 0u32),
            (None, 31),
            (None, 32),
            (None, 4095),
            (None, 8191),
            (None, 8192),
            (None, 39999),
            (Some(512), 600),
            (Some(4096), 39999),
        ] {
            let s = shape(8, 1, window);
            let plan = s.decode(pos).unwrap();
            let visible = window.map_or(pos + 1, |w| w.min(pos + 1));
            let p = plan.params;
            assert_eq!(p.keys_per_split % DECODE_TILE, 0);
            assert!(p.n_splits >= 1 && p.n_splits <= MAX_SPLITS, "{p:?}");
            // Every visible key in exactly one split, no empty split.
            assert!(p.n_splits * p.keys_per_split >= visible);
            assert!((p.n_splits - 1) * p.keys_per_split < visible);
            assert_eq!(plan.attend, [p.n_splits, 1, 1]);
        }
    }

    #[test]
    fn bad_shapes_and_spans_are_errors() {
        assert!(shape(8, 3, None).check().is_err());
        assert!(AttentionShape {
            head_dim: 512,
            ..shape(8, 1, None)
        }
        .check()
        .is_err());
        assert!(shape(4, 1, Some(0)).check().is_err());
        let s = shape(4, 1, None);
        assert!(s.decode(40000).is_err());
        assert!(s.prefill(39990, 11, AttentionLayout::Tiles).is_err());
        assert!(s.prefill(0, 0, AttentionLayout::Tiles).is_err());
        assert!(s.kv_write(u32::MAX, 2).is_err());
        assert!(s.prefill(39990, 10, AttentionLayout::Tiles).is_ok());
        // A ring of 600 slots under a window of 512: any position, blocks up to 89 tokens.
        let ring = AttentionShape {
            cache_len: 600,
            ..shape(4, 1, Some(512))
        };
        assert!(ring.decode(1_000_000).is_ok());
        assert!(ring.prefill(5000, 89, AttentionLayout::Tiles).is_ok());
        assert!(ring.prefill(5000, 90, AttentionLayout::Tiles).is_err());
        assert!(ring.prefill(0, 600, AttentionLayout::Tiles).is_ok());
        assert!(ring.kv_write(u32::MAX - 1, 2).is_err());
        assert_eq!(AttentionShape::slots_needed(Some(512), 32768, 89), 600);
        assert_eq!(AttentionShape::slots_needed(Some(512), 300, 89), 300);
        assert_eq!(AttentionShape::slots_needed(None, 32768, 89), 32768);
    }

    #[test]
    fn prefill_groups_rows_by_kv_head() {
        let groups = |heads, kv_heads, pos, n| {
            shape(heads, kv_heads, None)
                .prefill(pos, n, AttentionLayout::Tiles)
                .unwrap()
                .1
        };
        // Gemma 3: 4 heads share a kv head, 2 queries per workgroup.
        assert_eq!(groups(4, 1, 0, 7), [4, 1, 1]);
        // Gemma 1: 8 heads, 1 query per workgroup.
        assert_eq!(groups(8, 1, 3, 7), [7, 1, 1]);
        // Gemma 2: 2 heads per kv head, 4 queries per workgroup.
        assert_eq!(groups(8, 4, 0, 9), [3, 4, 1]);
        // 16 heads per kv head: two chunks of 8.
        assert_eq!(groups(16, 1, 0, 2), [2, 2, 1]);
    }
}
