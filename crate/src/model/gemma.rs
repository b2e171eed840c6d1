//! The Gemma 1/2/3 forward pass on the GPU.
//!
//! Everything is allocated and bound once at load ([`Model::load`]): weights, the activations of
//! a block of tokens ([`RunState`]), the KV cache of every layer, and the ops of two steps, one
//! for a single token (decode: matvec kernels, split-K attention) and one for a block of prompt
//! tokens (prefill: matmul kernels, causal block attention). A token then costs one submit and a
//! 4-byte read-back (greedy); the per-token path writes a few uniforms and allocates nothing on
//! the GPU.
//!
//! [`Model::forward`] is the whole model, top to bottom, one line per dispatch.

use crate::gguf::GgufHeader;
use crate::gpu::attention::{
    AttentionIo, AttentionKernels, AttentionLayer, AttentionLayout, AttentionScratch,
    AttentionShape, FusedDecodeIo, FusedRope, KvDtype, LayerCache,
};
use crate::gpu::kernels::{self, QkRopeKv, QkRopeKvIo, QkRopeKvParams, TopK};
use crate::gpu::matvec::{matvec_glu, MatvecShape};
use crate::gpu::profile::{record_ops, ClassTime, Profiler};
use crate::gpu::sample::{Draw, GpuSampling, SampleOps, PENALTY_IDS};
use crate::gpu::{Gpu, Op, Readback, WeightTensor};
use crate::model::config::GemmaConfig;
use crate::model::generate::PENALTY_WINDOW;
use crate::model::linear::Linear;
use crate::model::loader::{load_tensors, ByteSource, LoadOptions, Loaded};
use crate::Error;
use std::collections::BTreeMap;

/// Context asked for when the caller does not say (capped by the model's own).
pub const DEFAULT_CONTEXT: u32 = 4096;
/// Prompt tokens per prefill block.
pub const DEFAULT_PREFILL_CHUNK: u32 = 64;
/// Candidates the GPU hands the sampler when it needs more than the argmax.
pub const SAMPLE_TOP_K: u32 = 64;
/// Positions per block when every position's logits are wanted ([`Model::score`]).
const SCORE_ROWS: u32 = 32;

/// How to build the model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Positions the KV cache holds; `None`: [`DEFAULT_CONTEXT`]. Capped by the model's context.
    pub context_len: Option<u32>,
    /// Prompt tokens per prefill block (the activation buffers hold this many tokens).
    pub prefill_chunk: u32,
    /// Prompt blocks shorter than this run token by token through the decode step instead of
    /// the matmul kernels. `None`: 2 (always the matmul). On CPU adapters the matmul reads each
    /// weight once per 8 tokens (`MatmulLayout::Rows`); its tiles, which cost about as much for
    /// 1 token as for 32, are for GPUs.
    pub min_matmul_block: Option<u32>,
    /// The KV cache's element type; `None`: f16 where the device has shader-f16, else f32.
    pub kv_cache: Option<KvDtype>,
    pub load: LoadOptions,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            context_len: None,
            prefill_chunk: DEFAULT_PREFILL_CHUNK,
            min_matmul_block: None,
            kv_cache: None,
            load: LoadOptions::default(),
        }
    }
}

/// What a forward pass hands back from the last token's logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Head {
    /// Nothing: an early prefill block, whose logits nobody reads (the LM head is skipped).
    None,
    /// The most likely next token (4 bytes read back).
    Argmax,
    /// The [`SAMPLE_TOP_K`] most likely tokens with their logits.
    TopK,
    /// The whole logit vector.
    Logits,
    /// One token drawn on the GPU (penalty, top-k, temperature, top-p): 16 bytes read back.
    /// The penalty window is the last tokens the model was fed; the draw's random number
    /// depends on the seed and the position of the token drawn.
    Sample(GpuSampling),
}

/// The answer to a [`Head`].
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    None,
    Argmax(u32),
    /// (id, logit), best first.
    TopK(Vec<(u32, f32)>),
    Logits(Vec<f32>),
    /// The drawn token, its logit (after penalty and soft-cap) and its probability.
    Sampled {
        id: u32,
        logit: f32,
        prob: f32,
    },
}

/// The weights of one layer that are not bound into a [`Linear`] (norm vectors).
#[derive(Debug)]
struct LayerNorms {
    attn: wgpu::Buffer,
    /// Gemma 3: the q-norm then the k-norm weights, (2, head_dim).
    qk: Option<wgpu::Buffer>,
    post_attn: Option<wgpu::Buffer>,
    ffn: wgpu::Buffer,
    post_ffn: Option<wgpu::Buffer>,
}

/// The activations of up to `max_tokens` tokens, allocated once. Row t of each buffer belongs to
/// the t-th token of the current block.
#[derive(Debug)]
pub struct RunState {
    pub max_tokens: u32,
    /// (tokens) u32 token ids.
    ids: wgpu::Buffer,
    /// The residual stream h, (tokens, d_model).
    h: wgpu::Buffer,
    /// norm(h), (tokens, d_model).
    xn: wgpu::Buffer,
    /// The Q, K and V projections, (tokens, q_dim + 2 kv_dim): q | k | v of each token.
    qkv: wgpu::Buffer,
    /// Normed (Gemma 3) and rotated queries, (tokens, heads, head_dim).
    q: wgpu::Buffer,
    /// New keys and values, (tokens, kv_heads, head_dim): bound by the attention layer's own
    /// cache write, which the fused step does not use (qk_rope_kv writes the cache).
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    /// Attention output, (tokens, q_dim).
    att: wgpu::Buffer,
    /// Output of attention's or the MLP's last projection, (tokens, d_model).
    out: wgpu::Buffer,
    /// MLP gate and up projections, (tokens, 2 ffn): gate | up of each token.
    gu: wgpu::Buffer,
    /// gelu_tanh(gate) * up, (tokens, ffn).
    gate: wgpu::Buffer,
    /// The last token's hidden state after the final norm, and its logits.
    last_n: wgpu::Buffer,
    logits: wgpu::Buffer,
    logits_readback: Readback,
    /// The head's answer (argmax, top-k ids and logits), copied by the forward pass's submit.
    head_readback: Readback,
    /// The token fed at each position (for the repetition penalty of [`Head::Sample`]).
    fed: Vec<u32>,
    /// The distinct tokens of the penalty window (reused).
    recent: Vec<u32>,
}

/// Ops whose shape depends on how many tokens a step runs: bound once for 1 token (decode)
/// and once for `max_tokens` (prefill).
#[derive(Debug)]
struct StepOps {
    embed: Vec<Op>,
    /// The first layer's pre-attention norm (later ones come with the residual before them).
    first_norm: Op,
    layers: Vec<LayerStepOps>,
}

#[derive(Debug)]
struct LayerStepOps {
    /// h += out (Gemma 1) or h += post_attention_norm(out) (Gemma 2, 3), then xn = ffn_norm(h).
    attn_residual_norm: Op,
    /// gelu_tanh(gate) * up from gu, where gate and up are not one fused matvec.
    glu: Op,
    /// h += out (Gemma 1) or h += post_ffw_norm(out) (Gemma 2, 3), then xn = the next
    /// layer's attn_norm(h), or after the last layer output_norm(h).
    ffn_residual_norm: Op,
}

/// The ops of one layer shared by both steps.
struct LayerOps {
    /// Q, K and V into qkv: one projection when their weights share a type (stacked at
    /// load), else one per run of equal types.
    qkv: Vec<Linear>,
    /// Per-head norm, RoPE and the KV-cache write.
    qk_rope_kv: QkRopeKv,
    o: Linear,
    /// Gate and up into gu (one projection when stacked, else two).
    gate_up: Vec<Linear>,
    /// The decode step's gate, up and GELU in one matvec, when gate and up are stacked.
    glu_matvec: Option<Op>,
    down: Linear,
    attn: AttentionLayer,
}

/// The head on the last token: tied LM head, soft-cap, argmax / top-k / a draw.
struct HeadOps {
    lm_head: Linear,
    softcap: Option<Op>,
    argmax: TopK,
    topk: TopK,
    sample: SampleOps,
}

/// The head on every position of a block, for [`Model::score`]; built on its first use.
struct ScoreOps {
    final_norm: Op,
    lm_head: Linear,
    softcap: Option<Op>,
    logits: wgpu::Buffer,
    readback: Readback,
}

/// Sizes and timings of a load, for the bench and the page.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LoadStats {
    pub file_bytes: u64,
    pub tensor_bytes: u64,
    /// Bytes held by weight buffers on the GPU (rows padded to 16 bytes).
    pub weight_gpu_bytes: u64,
    /// Bytes of the KV caches.
    pub kv_cache_bytes: u64,
    /// Their element type, "f32" or "f16".
    pub kv_cache_type: &'static str,
}

/// A Gemma model on the GPU, ready to run.
pub struct Model {
    pub config: GemmaConfig,
    /// The GGUF header (metadata, vocabulary for the tokenizer).
    pub header: GgufHeader,
    pub gpu: Gpu,
    /// Positions the KV cache holds.
    pub context_len: u32,
    pub stats: LoadStats,
    /// Weight bytes a decode step streams (every matrix once, the tied embedding as LM head).
    pub decode_weight_bytes: u64,
    /// See [`ModelOptions::min_matmul_block`].
    pub min_matmul_block: u32,
    /// Dispatches recorded for the layers (embedding included, head excluded) so far.
    pub layer_dispatches: u64,
    token_embd: WeightTensor,
    output_norm: wgpu::Buffer,
    _norms: Vec<LayerNorms>,
    state: RunState,
    decode: StepOps,
    prefill: StepOps,
    layers: Vec<LayerOps>,
    head: HeadOps,
    score_ops: Option<ScoreOps>,
    profiler: Option<Profiler>,
    // Kept alive: bound into the attention ops.
    _caches: Vec<LayerCache>,
    _scratch: AttentionScratch,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field("context_len", &self.context_len)
            .finish()
    }
}

fn f32s(gpu: &Gpu, label: &str, rows: u32, cols: u32) -> Result<wgpu::Buffer, Error> {
    gpu.activations(label, u64::from(rows) * u64::from(cols) * 4)
}

impl Model {
    /// Streams the model from `src` onto `gpu` and binds everything for `opts.context_len`
    /// positions. `progress(done, total)` follows the tensor bytes.
    pub async fn load<S: ByteSource>(
        gpu: Gpu,
        src: &mut S,
        opts: &ModelOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Model, Error> {
        let file_bytes = src.len();
        let loaded = load_tensors(&gpu, src, &opts.load, progress).await?;
        Model::build(gpu, loaded, opts, file_bytes).await
    }

    async fn build(
        gpu: Gpu,
        mut w: Loaded,
        opts: &ModelOptions,
        file_bytes: u64,
    ) -> Result<Model, Error> {
        let c = w.config.clone();
        let context_len = opts
            .context_len
            .unwrap_or(DEFAULT_CONTEXT)
            .min(c.context_len)
            .max(1);
        let chunk = opts.prefill_chunk.clamp(1, context_len.max(1));
        let (d, qd, kvd, hd) = (c.d_model, c.q_dim(), c.kv_dim(), c.head_dim);

        // Weights.
        let token_embd = w.matrix("token_embd.weight")?;
        let output_norm = w.vector("output_norm.weight", d)?;
        let mut mats = Vec::with_capacity(c.n_layers as usize);
        let mut norms = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            let post = |w: &mut Loaded, t: &str, n: u32| -> Result<Option<wgpu::Buffer>, Error> {
                if c.arch.has_post_norms() {
                    Ok(Some(w.vector(&name(t), n)?))
                } else {
                    Ok(None)
                }
            };
            let qk = if c.arch.has_qk_norm() {
                let q = w.vector(&name("attn_q_norm"), hd)?;
                let k = w.vector(&name("attn_k_norm"), hd)?;
                Some(stack_vectors(&gpu, &format!("blk.{l}.qk_norm"), &[&q, &k])?)
            } else {
                None
            };
            norms.push(LayerNorms {
                attn: w.vector(&name("attn_norm"), d)?,
                qk,
                post_attn: post(&mut w, "post_attention_norm", d)?,
                ffn: w.vector(&name("ffn_norm"), d)?,
                post_ffn: post(&mut w, "post_ffw_norm", d)?,
            });
            mats.push([
                w.matrix(&name("attn_q"))?,
                w.matrix(&name("attn_k"))?,
                w.matrix(&name("attn_v"))?,
                w.matrix(&name("attn_output"))?,
                w.matrix(&name("ffn_gate"))?,
                w.matrix(&name("ffn_up"))?,
                w.matrix(&name("ffn_down"))?,
            ]);
        }
        let weight_gpu_bytes = token_embd.gpu_bytes()
            + mats
                .iter()
                .flat_map(|m| m.iter().map(WeightTensor::gpu_bytes))
                .sum::<u64>();
        let decode_weight_bytes = weight_gpu_bytes
            + (u64::from(c.n_layers) * 6 + 1) * u64::from(d) * 4
            + u64::from(c.n_layers) * 2 * u64::from(hd) * 4;

        // Activations for a block of `chunk` tokens.
        let state = RunState {
            max_tokens: chunk,
            ids: gpu.storage("ids", u64::from(chunk) * 4)?,
            h: f32s(&gpu, "h", chunk, d)?,
            xn: f32s(&gpu, "xn", chunk, d)?,
            qkv: f32s(&gpu, "qkv", chunk, qd + 2 * kvd)?,
            q: f32s(&gpu, "q", chunk, qd)?,
            k: f32s(&gpu, "k", chunk, kvd)?,
            v: f32s(&gpu, "v", chunk, kvd)?,
            att: f32s(&gpu, "att", chunk, qd)?,
            out: f32s(&gpu, "out", chunk, d)?,
            gu: f32s(&gpu, "gu", chunk, 2 * c.ffn)?,
            gate: f32s(&gpu, "gate", chunk, c.ffn)?,
            last_n: f32s(&gpu, "last_n", 1, d)?,
            logits: f32s(&gpu, "logits", 1, c.vocab)?,
            logits_readback: gpu.readback("logits readback", u64::from(c.vocab) * 4)?,
            head_readback: gpu.readback("head readback", u64::from(SAMPLE_TOP_K) * 8)?,
            fed: vec![0; context_len as usize],
            recent: Vec::with_capacity(PENALTY_IDS as usize),
        };
        let s = &state;

        // KV caches and attention, per layer.
        let kv = opts.kv_cache.unwrap_or_else(|| KvDtype::best(&gpu));
        let shape = |l: u32| AttentionShape {
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: hd,
            // Sliding layers keep a ring of window + block - 1 slots.
            cache_len: AttentionShape::slots_needed(c.window(l), context_len, chunk),
            scale: c.query_scale,
            softcap: c.attn_softcap,
            window: c.window(l),
            kv,
        };
        let kernels =
            AttentionKernels::load(&gpu, &shape(0), AttentionLayout::for_gpu(&gpu)).await?;
        let scratch = AttentionScratch::new(&gpu, &shape(0))?;
        let mut caches = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let cache = gpu
                .scoped(&format!("KV cache of layer {l}"), || {
                    LayerCache::new(&gpu, &shape(l), &format!("blk.{l}"))
                })
                .await??;
            caches.push(cache);
        }
        let kv_cache_bytes = caches.iter().map(|x| x.k.size() + x.v.size()).sum();

        // Projections and attention, bound once for both steps.
        let shape_kind = MatvecShape::for_gpu(&gpu);
        let mut layers = Vec::with_capacity(c.n_layers as usize);
        for (l, ((m, cache), norm)) in (0u32..).zip(mats.into_iter().zip(&caches).zip(&norms)) {
            let [wq, wk, wv, wo, wg, wu, wd] = m;
            let io = AttentionIo {
                q: &s.q,
                k_new: &s.k,
                v_new: &s.v,
                out: &s.att,
            };
            let label = format!("blk.{l}");
            let mut attn = gpu
                .scoped(&label, || {
                    AttentionLayer::new(&gpu, &kernels, shape(l), io, cache, &scratch, &label)
                })
                .await??;
            // Decode: the per-head norms, RoPE and the cache write inside the attention
            // dispatch (every Gemma has at most 8 query heads a kv head; else they stay apart).
            let fused = FusedDecodeIo {
                qkv: &s.qkv,
                qk_norm: norm.qk.as_ref(),
                rope: FusedRope {
                    base: c.rope_base(l),
                    pos_scale: c.rope_scale(l),
                    eps: c.eps,
                },
            };
            match attn.bind_fused_decode(&gpu, fused, cache, &scratch).await {
                Ok(()) | Err(Error::Unsupported(_)) => {}
                Err(e) => return Err(e),
            }
            // Q, K and V stacked into one weight when they share a type (else Q and K).
            let qkv_stride = qd + 2 * kvd;
            let label = format!("blk.{l}.attn_qkv");
            let qkv = if let Some(w) = gpu.concat_rows(&label, &[&wq, &wk, &wv]).await? {
                vec![Linear::new_at(&gpu, &w, &s.xn, &s.qkv, chunk, 0, qkv_stride).await?]
            } else if let Some(w) = gpu.concat_rows(&label, &[&wq, &wk]).await? {
                vec![
                    Linear::new_at(&gpu, &w, &s.xn, &s.qkv, chunk, 0, qkv_stride).await?,
                    Linear::new_at(&gpu, &wv, &s.xn, &s.qkv, chunk, qd + kvd, qkv_stride).await?,
                ]
            } else {
                let mut v = Vec::with_capacity(3);
                for (w, at) in [(&wq, 0), (&wk, qd), (&wv, qd + kvd)] {
                    v.push(Linear::new_at(&gpu, w, &s.xn, &s.qkv, chunk, at, qkv_stride).await?);
                }
                v
            };
            let qk_rope_kv = kernels::qk_rope_kv(
                &gpu,
                &QkRopeKvIo {
                    qkv: &s.qkv,
                    norm_w: norm.qk.as_ref(),
                    q: &s.q,
                    k_cache: &cache.k,
                    v_cache: &cache.v,
                    kv,
                },
                QkRopeKvParams {
                    n_tokens: 1,
                    n_heads: c.n_heads,
                    n_kv_heads: c.n_kv_heads,
                    head_dim: hd,
                    cache_len: shape(l).cache_len,
                    pos: 0,
                    base: c.rope_base(l),
                    eps: c.eps,
                    pos_scale: c.rope_scale(l),
                    ..Default::default()
                },
                chunk,
            )
            .await?;
            // Gate and up stacked: the decode step runs them and GELU as one matvec.
            let ffn = c.ffn;
            let label = format!("blk.{l}.ffn_gate_up");
            let (gate_up, glu_matvec) =
                if let Some(w) = gpu.concat_rows(&label, &[&wg, &wu]).await? {
                    let op = matvec_glu(&gpu, &w, &s.xn, &s.gate, shape_kind).await?;
                    let many = Linear::new_at(&gpu, &w, &s.xn, &s.gu, chunk, 0, 2 * ffn).await?;
                    (vec![many], Some(op))
                } else {
                    (
                        vec![
                            Linear::new_at(&gpu, &wg, &s.xn, &s.gu, chunk, 0, 2 * ffn).await?,
                            Linear::new_at(&gpu, &wu, &s.xn, &s.gu, chunk, ffn, 2 * ffn).await?,
                        ],
                        None,
                    )
                };
            layers.push(LayerOps {
                qkv,
                qk_rope_kv,
                o: Linear::new(&gpu, &wo, &s.att, &s.out, chunk).await?,
                gate_up,
                glu_matvec,
                down: Linear::new(&gpu, &wd, &s.gate, &s.out, chunk).await?,
                attn,
            });
        }

        let decode = step_ops(&gpu, &c, &token_embd, &norms, &output_norm, s, 1).await?;
        let prefill = step_ops(&gpu, &c, &token_embd, &norms, &output_norm, s, chunk).await?;

        let head = HeadOps {
            lm_head: Linear::new(&gpu, &token_embd, &s.last_n, &s.logits, 1).await?,
            softcap: match c.final_softcap {
                Some(cap) => Some(kernels::softcap(&gpu, &s.logits, c.vocab, cap).await?),
                None => None,
            },
            argmax: kernels::argmax(&gpu, &s.logits, c.vocab).await?,
            topk: kernels::topk(&gpu, &s.logits, c.vocab, SAMPLE_TOP_K.min(c.vocab)).await?,
            sample: SampleOps::new(&gpu, &s.logits, c.vocab, 1).await?,
        };
        gpu.check()?;

        let tensor_bytes = w.bytes_read;
        Ok(Model {
            config: c,
            header: w.header,
            context_len,
            stats: LoadStats {
                file_bytes,
                tensor_bytes,
                weight_gpu_bytes,
                kv_cache_bytes,
                kv_cache_type: kv.name(),
            },
            decode_weight_bytes,
            min_matmul_block: opts.min_matmul_block.unwrap_or(2),
            token_embd,
            output_norm,
            _norms: norms,
            state,
            decode,
            prefill,
            layers,
            head,
            score_ops: None,
            profiler: None,
            layer_dispatches: 0,
            _caches: caches,
            _scratch: scratch,
            gpu,
        })
    }

    /// Most tokens one prefill block runs.
    pub fn max_chunk(&self) -> u32 {
        self.state.max_tokens
    }

    /// Runs `tokens` (1 ..= max_chunk of them) at positions `pos..` through every layer, storing
    /// their keys and values in the cache, then the head on the last token, and copies what
    /// `head` asks for into its read-back buffer. One submit.
    fn forward(&mut self, tokens: &[u32], pos: u32, head: Head) -> Result<(), Error> {
        let n = self.check_block(tokens, pos, self.state.max_tokens)?;
        let Model {
            gpu,
            config: c,
            state: s,
            decode,
            prefill,
            layers,
            head: h,
            profiler,
            layer_dispatches,
            ..
        } = self;
        let step = if n == 1 { &*decode } else { &*prefill };
        gpu.write_u32(&s.ids, 0, tokens)?;
        let end = (pos + n) as usize;
        if let Some(slot) = s.fed.get_mut(pos as usize..end) {
            slot.copy_from_slice(tokens);
        }

        // The whole model, one line per dispatch (with its kernel class for `--profile`).
        let mut ops: Vec<(&'static str, &Op)> = Vec::with_capacity(12 * layers.len() + 8);
        let mm = if n == 1 { "matvec" } else { "matmul" };
        // Embedding: the token's row of token_embd, times sqrt(d_model).
        ops.extend(step.embed.iter().map(|op| ("embedding", op)));
        // The first layer's pre-attention RMSNorm.
        ops.push(("norm", &step.first_norm));
        for (layer, e) in layers.iter_mut().zip(&step.layers) {
            let LayerOps {
                qkv,
                qk_rope_kv,
                o,
                gate_up,
                glu_matvec,
                down,
                attn,
            } = layer;
            // --- Attention block (its input xn = attn_norm(h) is ready) ---
            // Query, key and value projections.
            for w in qkv.iter_mut() {
                ops.extend(w.ops(gpu, n)?.iter().map(|op| (mm, op)));
            }
            // Gemma 3: RMSNorm over each query and key head; rotary position embedding of
            // queries and keys (per-layer base on Gemma 3); keys and values into the cache.
            // Then attend: causal, within the window on sliding layers, scores soft-capped on
            // Gemma 2. A decode step does both in the attention dispatch where it can.
            // (Asked first: the ops hold a borrow of `attn` either way.)
            if n == 1 && attn.has_fused_decode() {
                if let Some(fused) = attn.fused_decode_ops(gpu, pos)? {
                    ops.extend(fused.into_iter().map(|op| ("attention", op)));
                }
            } else if n == 1 {
                ops.push(("qk_rope_kv", qk_rope_kv.set(gpu, pos, n)?));
                ops.extend(
                    attn.attend_decode_ops(gpu, pos)?
                        .into_iter()
                        .map(|op| ("attention", op)),
                );
            } else {
                ops.push(("qk_rope_kv", qk_rope_kv.set(gpu, pos, n)?));
                ops.extend(
                    attn.attend_prefill_ops(gpu, pos, n)?
                        .into_iter()
                        .map(|op| ("attention", op)),
                );
            }
            // Output projection.
            ops.extend(o.ops(gpu, n)?.iter().map(|op| (mm, op)));
            // Residual: h += attention (Gemma 2, 3: after a post-attention RMSNorm); then
            // the pre-MLP RMSNorm.
            ops.push(("residual_norm", &e.attn_residual_norm));
            // --- MLP block: down(gelu_tanh(gate(x)) * up(x)) ---
            match glu_matvec {
                Some(op) if n == 1 => ops.push(("matvec_glu", &*op)),
                _ => {
                    for w in gate_up.iter_mut() {
                        ops.extend(w.ops(gpu, n)?.iter().map(|op| (mm, op)));
                    }
                    ops.push(("glu", &e.glu));
                }
            }
            ops.extend(down.ops(gpu, n)?.iter().map(|op| (mm, op)));
            // Residual: h += MLP (Gemma 2, 3: after a post-MLP RMSNorm); then the next
            // layer's pre-attention RMSNorm, or after the last layer the final RMSNorm.
            ops.push(("residual_norm", &e.ffn_residual_norm));
        }
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("forward"),
            });
        *layer_dispatches += ops.len() as u64;
        record_ops(gpu, &mut encoder, "layers", &ops, profiler.as_mut());
        if head != Head::None {
            // The last token's hidden state, after the final RMSNorm, feeds the head.
            let row = u64::from(c.d_model) * 4;
            encoder.copy_buffer_to_buffer(&s.xn, u64::from(n - 1) * row, &s.last_n, 0, row);
            let mut ops: Vec<(&'static str, &Op)> = Vec::with_capacity(8);
            // Logits through the tied embedding.
            ops.extend(h.lm_head.ops(gpu, 1)?.iter().map(|op| ("lm_head", op)));
            // Gemma 2: final logit soft-cap.
            if let Some(op) = &h.softcap {
                ops.push(("head", op));
            }
            match head {
                Head::Argmax => ops.extend([("head", &h.argmax.stage1), ("head", &h.argmax.merge)]),
                Head::TopK => ops.extend([("head", &h.topk.stage1), ("head", &h.topk.merge)]),
                Head::Sample(sp) => {
                    // The penalty window: the distinct tokens of the last PENALTY_WINDOW
                    // positions, the one just fed included.
                    s.recent.clear();
                    s.recent
                        .extend_from_slice(&s.fed[end.saturating_sub(PENALTY_WINDOW)..end]);
                    s.recent.sort_unstable();
                    s.recent.dedup();
                    let counter = u64::from(pos + n);
                    let sample = h.sample.set(gpu, &sp, &s.recent, counter, 1)?;
                    ops.extend(sample.into_iter().map(|op| ("sample", op)));
                }
                Head::None | Head::Logits => {}
            }
            record_ops(gpu, &mut encoder, "head", &ops, profiler.as_mut());
            // What the CPU reads, copied in the same submit.
            let rb = &s.head_readback.buffer;
            let k = u64::from(h.topk.k) * 4;
            match head {
                Head::Argmax => encoder.copy_buffer_to_buffer(&h.argmax.idx, 0, rb, 0, 4),
                Head::TopK => {
                    encoder.copy_buffer_to_buffer(&h.topk.idx, 0, rb, 0, k);
                    encoder.copy_buffer_to_buffer(&h.topk.val, 0, rb, k, k);
                }
                Head::Sample(_) => encoder.copy_buffer_to_buffer(&h.sample.out, 0, rb, 0, 16),
                Head::Logits => {
                    let len = u64::from(c.vocab) * 4;
                    encoder.copy_buffer_to_buffer(&s.logits, 0, &s.logits_readback.buffer, 0, len);
                }
                Head::None => {}
            }
        }
        if let Some(p) = profiler.as_ref() {
            p.resolve(&mut encoder);
        }
        gpu.submit(encoder.finish())
    }

    fn check_block(&self, tokens: &[u32], pos: u32, max: u32) -> Result<u32, Error> {
        let n = u32::try_from(tokens.len())
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Error::Unsupported(format!("a block of {} tokens (1..={max})", tokens.len()))
            })?;
        if pos.checked_add(n).is_none_or(|end| end > self.context_len) {
            return Err(Error::Unsupported(format!(
                "positions {pos}..{} do not fit the context of {} tokens",
                u64::from(pos) + u64::from(n),
                self.context_len
            )));
        }
        if let Some(bad) = tokens.iter().find(|&&t| t >= self.config.vocab) {
            return Err(Error::Unsupported(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab
            )));
        }
        Ok(n)
    }

    /// What the last [`Model::forward`] copied for `head`: one read-back.
    async fn read_head(&mut self, head: Head) -> Result<Output, Error> {
        let gpu = &self.gpu;
        let s = &self.state;
        let out = match head {
            Head::None => {
                gpu.check()?;
                Output::None
            }
            Head::Argmax => {
                let b = gpu.map_read(&s.head_readback, 4).await?;
                Output::Argmax(to_u32(&b).first().copied().unwrap_or(0))
            }
            Head::TopK => {
                let k = self.head.topk.k as usize;
                let b = gpu.map_read(&s.head_readback, k as u64 * 8).await?;
                let ids = to_u32(&b[..(k * 4).min(b.len())]);
                let vals = to_f32(b.get(k * 4..).unwrap_or(&[]));
                Output::TopK(
                    ids.into_iter()
                        .zip(vals)
                        .filter(|(i, _)| *i != u32::MAX)
                        .collect(),
                )
            }
            Head::Logits => {
                let n = u64::from(self.config.vocab) * 4;
                Output::Logits(to_f32(&gpu.map_read(&s.logits_readback, n).await?))
            }
            Head::Sample(_) => {
                let b = gpu.map_read(&s.head_readback, 16).await?;
                let d: Draw = bytemuck::pod_read_unaligned(
                    b.get(..16)
                        .ok_or_else(|| Error::DeviceLost("short read-back".into()))?,
                );
                if d.id == u32::MAX {
                    return Err(Error::Unsupported("no finite logits to sample from".into()));
                }
                Output::Sampled {
                    id: d.id,
                    logit: d.logit,
                    prob: d.prob,
                }
            }
        };
        if let Some(p) = self.profiler.as_mut() {
            if head == Head::None {
                gpu.wait_idle()?;
            }
            p.collect(gpu).await?;
        }
        Ok(out)
    }

    /// Times every dispatch from now on (`bench --profile`); needs timestamp queries.
    pub fn start_profiling(&mut self) -> Result<(), Error> {
        self.profiler = Some(Profiler::new(&self.gpu)?);
        Ok(())
    }

    /// GPU time per kernel class since [`Model::start_profiling`], and stops profiling.
    pub fn stop_profiling(&mut self) -> Option<BTreeMap<&'static str, ClassTime>> {
        self.profiler.take().map(|p| p.totals)
    }

    /// One token at position `pos` (the cache must hold 0..pos): stores its keys and values and
    /// returns what `head` asks for about the next token.
    pub async fn forward_decode(
        &mut self,
        token: u32,
        pos: u32,
        head: Head,
    ) -> Result<Output, Error> {
        self.forward(&[token], pos, head)?;
        self.read_head(head).await
    }

    /// The prompt `tokens` at positions `pos..`, in blocks of [`Model::max_chunk`] tokens;
    /// `head` is answered for the last one. A prompt past the context is an error before any
    /// work is done.
    pub async fn prefill(&mut self, tokens: &[u32], pos: u32, head: Head) -> Result<Output, Error> {
        self.prefill_until(tokens, pos, head, None).await
    }

    /// [`Model::prefill`] that can be stopped: after each block but the last it waits for the
    /// GPU to finish the block (which lets the browser deliver messages, such as an interrupt)
    /// and asks `stop`; `true` ends the prefill with [`Error::Aborted`]. The cache then holds
    /// part of the prompt past `pos`, which the next prefill at `pos` overwrites.
    pub async fn prefill_until(
        &mut self,
        tokens: &[u32],
        pos: u32,
        head: Head,
        mut stop: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Output, Error> {
        let n = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        if tokens.is_empty() || pos.checked_add(n).is_none_or(|end| end > self.context_len) {
            return Err(Error::Unsupported(format!(
                "a prompt of {} tokens at position {pos} does not fit the context of {} tokens",
                tokens.len(),
                self.context_len
            )));
        }
        if let Some(bad) = tokens.iter().find(|&&t| t >= self.config.vocab) {
            return Err(Error::Unsupported(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.config.vocab
            )));
        }
        let chunk = self.state.max_tokens as usize;
        let mut at = pos;
        let mut rest = tokens;
        while !rest.is_empty() {
            let (block, after) = rest.split_at(chunk.min(rest.len()));
            // Only the prompt's last token needs the head.
            let block_head = if after.is_empty() { head } else { Head::None };
            if (block.len() as u32) < self.min_matmul_block {
                for (j, &t) in block.iter().enumerate() {
                    let last = j + 1 == block.len();
                    self.forward(&[t], at, if last { block_head } else { Head::None })?;
                    at += 1;
                }
            } else {
                self.forward(block, at, block_head)?;
                at += block.len() as u32;
            }
            rest = after;
            if let Some(stop) = stop.as_mut().filter(|_| !rest.is_empty()) {
                self.work_done().await?;
                if stop() {
                    return Err(Error::Aborted);
                }
            }
        }
        self.read_head(head).await
    }

    /// Resolves once the GPU has finished all work submitted so far.
    async fn work_done(&self) -> Result<(), Error> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.gpu.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        #[cfg(not(target_arch = "wasm32"))]
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("poll: {e}")))?;
        rx.await
            .map_err(|_| Error::DeviceLost("the GPU queue was dropped".into()))?;
        self.gpu.check()
    }

    /// Runs `tokens` at positions `pos..` and calls `each(i, logits)` with the logits after
    /// token i (the distribution of token i + 1), for every i in order. Used to score text
    /// (perplexity) and to compare with reference engines.
    pub async fn score(
        &mut self,
        tokens: &[u32],
        pos: u32,
        each: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), Error> {
        let n_all = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        if pos
            .checked_add(n_all)
            .is_none_or(|end| end > self.context_len)
        {
            return Err(Error::Unsupported(format!(
                "{} tokens at position {pos} do not fit the context of {} tokens",
                tokens.len(),
                self.context_len
            )));
        }
        self.ensure_score_ops().await?;
        let rows = self.state.max_tokens.min(SCORE_ROWS);
        let vocab = self.config.vocab as usize;
        let mut at = pos;
        let mut i = 0usize;
        for block in tokens.chunks(rows as usize) {
            let n = block.len() as u32;
            self.forward(block, at, Head::None)?;
            let Model { gpu, score_ops, .. } = self;
            let Some(so) = score_ops.as_mut() else {
                return Err(Error::Unsupported("score head missing".into()));
            };
            let mut encoder = gpu
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("score head"),
                });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("score head"),
                    timestamp_writes: None,
                });
                let p = &mut pass;
                // Final RMSNorm of every position, logits through the tied embedding, soft-cap.
                so.final_norm.record(p);
                so.lm_head.record(gpu, p, n)?;
                if let Some(op) = &so.softcap {
                    op.record(p);
                }
            }
            gpu.submit(encoder.finish())?;
            let bytes = gpu
                .read_with(&so.readback, &so.logits, 0, u64::from(n) * vocab as u64 * 4)
                .await?;
            let logits = to_f32(&bytes);
            for row in logits.chunks_exact(vocab) {
                each(i, row);
                i += 1;
            }
            at += n;
        }
        Ok(())
    }

    async fn ensure_score_ops(&mut self) -> Result<(), Error> {
        if self.score_ops.is_some() {
            return Ok(());
        }
        let gpu = &self.gpu;
        let c = &self.config;
        let s = &self.state;
        let rows = s.max_tokens.min(SCORE_ROWS);
        let logits = f32s(gpu, "score logits", rows, c.vocab)?;
        let n = rows * c.vocab;
        let ops = ScoreOps {
            final_norm: kernels::rmsnorm(
                gpu,
                &s.h,
                &self.output_norm,
                &s.xn,
                rows,
                c.d_model,
                c.eps,
                false,
            )
            .await?,
            lm_head: Linear::new(gpu, &self.token_embd, &s.xn, &logits, rows).await?,
            softcap: match c.final_softcap {
                Some(cap) => Some(kernels::softcap(gpu, &logits, n, cap).await?),
                None => None,
            },
            readback: gpu.readback("score readback", u64::from(n) * 4)?,
            logits,
        };
        self.score_ops = Some(ops);
        Ok(())
    }
}

fn to_u32(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn to_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The token-count-dependent ops for blocks of `n` tokens.
async fn step_ops(
    gpu: &Gpu,
    c: &GemmaConfig,
    token_embd: &WeightTensor,
    norms: &[LayerNorms],
    output_norm: &wgpu::Buffer,
    s: &RunState,
    n: u32,
) -> Result<StepOps, Error> {
    let (d, eps) = (c.d_model, c.eps);
    let embed = kernels::embedding(gpu, token_embd, &s.ids, &s.h, n, (d as f32).sqrt()).await?;
    let first = norms
        .first()
        .ok_or_else(|| Error::BadModel("a model without layers".into()))?;
    let first_norm = kernels::rmsnorm(gpu, &s.h, &first.attn, &s.xn, n, d, eps, false).await?;
    let mut layers = Vec::with_capacity(norms.len());
    for (l, w) in norms.iter().enumerate() {
        let next = norms.get(l + 1).map_or(output_norm, |x| &x.attn);
        layers.push(LayerStepOps {
            attn_residual_norm: kernels::residual_norm(
                gpu,
                &s.out,
                w.post_attn.as_ref(),
                &w.ffn,
                &s.h,
                &s.xn,
                n,
                d,
                eps,
            )
            .await?,
            glu: kernels::glu(gpu, &s.gu, &s.gate, n, c.ffn).await?,
            ffn_residual_norm: kernels::residual_norm(
                gpu,
                &s.out,
                w.post_ffn.as_ref(),
                next,
                &s.h,
                &s.xn,
                n,
                d,
                eps,
            )
            .await?,
        });
    }
    Ok(StepOps {
        embed,
        first_norm,
        layers,
    })
}

/// `parts` (f32 vectors) one after the other in one buffer, copied on the GPU.
fn stack_vectors(gpu: &Gpu, label: &str, parts: &[&wgpu::Buffer]) -> Result<wgpu::Buffer, Error> {
    let total = parts.iter().map(|b| b.size()).sum();
    let out = gpu.storage(label, total)?;
    let mut encoder = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
    let mut at = 0;
    for b in parts {
        encoder.copy_buffer_to_buffer(b, 0, &out, at, b.size());
        at += b.size();
    }
    gpu.submit(encoder.finish())?;
    Ok(out)
}
