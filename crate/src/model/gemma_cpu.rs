//! The Gemma 1/2/3 forward pass on the host CPU, for when there is no usable GPU.
//!
//! The same model as `gemma.rs`, computed with the `cpu` module's tensor math straight from the
//! GGUF blocks: the weights stream in through the one loader into host matrices, and the
//! activations of a block of tokens ([`CpuRunState`]) and every layer's KV cache are allocated
//! once at load. [`CpuModel::forward`] is the whole model, top to bottom.

use crate::cpu::{attend, ops, AttentionShape, KvCache, QMatrix, QMatrixBuilder};
use crate::gguf::{GgufHeader, TensorInfo};
use crate::model::config::{GemmaConfig, TensorRole};
use crate::model::gemma::{Head, ModelOptions, Output, DEFAULT_CONTEXT, SAMPLE_TOP_K};
use crate::model::loader::{load_into, matrix_shape, vector_len, ByteSource, Loaded, TensorSink};
use crate::Error;

/// Positions per block when every position's logits are wanted ([`CpuModel::score`]).
const SCORE_ROWS: usize = 32;

/// A tensor in host memory: a weight matrix in its blocks, or an f32 norm vector.
#[derive(Debug)]
pub enum CpuTensor {
    Matrix(QMatrix),
    Vector(Vec<f32>),
}

/// Streams matrices into their block vectors and norm vectors into f32s.
#[derive(Default)]
struct CpuSink {
    current: Option<CpuWriting>,
}

enum CpuWriting {
    Matrix(QMatrixBuilder),
    Vector(Vec<u8>),
}

impl TensorSink for CpuSink {
    type Tensor = CpuTensor;

    async fn begin(&mut self, info: &TensorInfo, role: TensorRole) -> Result<(), Error> {
        self.current = Some(if role == TensorRole::Norm {
            CpuWriting::Vector(Vec::with_capacity(vector_len(info)? as usize * 4))
        } else {
            let (cols, rows) = matrix_shape(info)?;
            CpuWriting::Matrix(QMatrixBuilder::new(info.ty, rows.into(), cols.into())?)
        });
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), Error> {
        match &mut self.current {
            Some(CpuWriting::Matrix(m)) => m.push(bytes),
            Some(CpuWriting::Vector(v)) => {
                v.extend_from_slice(bytes);
                Ok(())
            }
            None => Err(Error::BadModel("tensor bytes outside a tensor".into())),
        }
    }

    async fn finish(&mut self) -> Result<CpuTensor, Error> {
        match self.current.take() {
            Some(CpuWriting::Matrix(m)) => Ok(CpuTensor::Matrix(m.finish()?)),
            Some(CpuWriting::Vector(v)) => Ok(CpuTensor::Vector(
                v.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
            )),
            None => Err(Error::BadModel("no tensor to finish".into())),
        }
    }
}

fn matrix(w: &mut Loaded<CpuTensor>, name: &str) -> Result<QMatrix, Error> {
    match w.take(name)? {
        CpuTensor::Matrix(m) => Ok(m),
        CpuTensor::Vector(_) => Err(Error::BadModel(format!(
            "{name} is a vector, expected a matrix"
        ))),
    }
}

fn vector(w: &mut Loaded<CpuTensor>, name: &str, len: u32) -> Result<Vec<f32>, Error> {
    match w.take(name)? {
        CpuTensor::Vector(v) if v.len() == len as usize => Ok(v),
        _ => Err(Error::BadModel(format!(
            "{name} is not an f32 vector of {len} values"
        ))),
    }
}

/// One transformer layer: its weights, attention shape, RoPE frequencies and KV cache.
struct CpuLayer {
    attn_norm: Vec<f32>,
    /// Gemma 3: RMSNorm weights over each query / key head.
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    /// Gemma 2, 3: RMSNorm of attention's and the MLP's output before the residual add.
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    post_ffn_norm: Option<Vec<f32>>,
    q: QMatrix,
    k: QMatrix,
    v: QMatrix,
    o: QMatrix,
    gate: QMatrix,
    up: QMatrix,
    down: QMatrix,
    attn: AttentionShape,
    /// RoPE inverse frequencies (per-layer base on Gemma 3).
    rope: Vec<f64>,
    cache: KvCache,
}

/// The activations of up to `max_tokens` tokens, allocated once; row t belongs to the t-th
/// token of the current block.
struct CpuRunState {
    max_tokens: usize,
    /// The residual stream h, (tokens, d_model).
    h: Vec<f32>,
    /// norm(h), (tokens, d_model).
    xn: Vec<f32>,
    /// Queries, keys, values: (tokens, heads, head_dim).
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention output, (tokens, q_dim).
    att: Vec<f32>,
    /// Output of attention's or the MLP's last projection, (tokens, d_model).
    out: Vec<f32>,
    /// MLP gate and up projections, (tokens, ffn).
    gate: Vec<f32>,
    up: Vec<f32>,
    /// The last token's hidden state, normed, and its logits.
    last_n: Vec<f32>,
    logits: Vec<f32>,
}

/// Sizes of a load, for the bench and the page.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CpuLoadStats {
    pub file_bytes: u64,
    pub tensor_bytes: u64,
    /// Bytes the weight matrices take in host memory.
    pub weight_bytes: u64,
    pub kv_cache_bytes: u64,
    /// Bytes of the activation buffers.
    pub activation_bytes: u64,
}

/// A Gemma model in host memory, ready to run on the CPU.
pub struct CpuModel {
    pub config: GemmaConfig,
    /// The GGUF header (metadata, vocabulary for the tokenizer).
    pub header: GgufHeader,
    /// Positions the KV cache holds.
    pub context_len: u32,
    pub stats: CpuLoadStats,
    token_embd: QMatrix,
    output_norm: Vec<f32>,
    layers: Vec<CpuLayer>,
    state: CpuRunState,
    /// (SCORE_ROWS, vocab) logits of [`CpuModel::score`], allocated on its first use.
    score_logits: Vec<f32>,
}

impl std::fmt::Debug for CpuModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuModel")
            .field("config", &self.config)
            .field("context_len", &self.context_len)
            .finish()
    }
}

impl CpuModel {
    /// Streams the model from `src` into host memory and allocates the activations and KV
    /// caches for `opts.context_len` positions (`opts.load` and `opts.min_matmul_block` are the
    /// GPU's). `progress(done, total)` follows the tensor bytes.
    pub async fn load<S: ByteSource>(
        src: &mut S,
        opts: &ModelOptions,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<CpuModel, Error> {
        let file_bytes = src.len();
        let mut w = load_into(src, &mut CpuSink::default(), progress).await?;
        let c = w.config.clone();
        let context_len = opts
            .context_len
            .unwrap_or(DEFAULT_CONTEXT)
            .min(c.context_len)
            .max(1);
        let chunk = opts.prefill_chunk.clamp(1, context_len);
        let (d, hd) = (c.d_model, c.head_dim);

        let token_embd = matrix(&mut w, "token_embd.weight")?;
        let output_norm = vector(&mut w, "output_norm.weight", d)?;
        if token_embd.cols != d as usize || token_embd.rows != c.vocab as usize {
            return Err(Error::BadModel(format!(
                "token_embd.weight is {:?}, expected {} x {d}",
                token_embd, c.vocab
            )));
        }
        let mut layers = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let name = |t: &str| format!("blk.{l}.{t}.weight");
            let mut optional = |t: &str, n: u32, has: bool| -> Result<Option<Vec<f32>>, Error> {
                if has {
                    Ok(Some(vector(&mut w, &name(t), n)?))
                } else {
                    Ok(None)
                }
            };
            let q_norm = optional("attn_q_norm", hd, c.arch.has_qk_norm())?;
            let k_norm = optional("attn_k_norm", hd, c.arch.has_qk_norm())?;
            let post_attn_norm = optional("post_attention_norm", d, c.arch.has_post_norms())?;
            let post_ffn_norm = optional("post_ffw_norm", d, c.arch.has_post_norms())?;
            let attn = AttentionShape {
                n_heads: c.n_heads as usize,
                n_kv_heads: c.n_kv_heads as usize,
                head_dim: hd as usize,
                scale: c.query_scale,
                softcap: c.attn_softcap,
                window: c.window(l),
            };
            // Sliding layers keep a ring of window + block - 1 slots.
            let cache = KvCache::new(&attn, attn.slots_needed(context_len, chunk));
            layers.push(CpuLayer {
                attn_norm: vector(&mut w, &name("attn_norm"), d)?,
                q_norm,
                k_norm,
                post_attn_norm,
                ffn_norm: vector(&mut w, &name("ffn_norm"), d)?,
                post_ffn_norm,
                q: matrix(&mut w, &name("attn_q"))?,
                k: matrix(&mut w, &name("attn_k"))?,
                v: matrix(&mut w, &name("attn_v"))?,
                o: matrix(&mut w, &name("attn_output"))?,
                gate: matrix(&mut w, &name("ffn_gate"))?,
                up: matrix(&mut w, &name("ffn_up"))?,
                down: matrix(&mut w, &name("ffn_down"))?,
                attn,
                rope: ops::rope_inv_freq(c.rope_base(l), hd as usize, c.rope_scale(l)),
                cache,
            });
        }

        let n = chunk as usize;
        let rows = |width: u32| vec![0f32; n * width as usize];
        let state = CpuRunState {
            max_tokens: n,
            h: rows(d),
            xn: rows(d),
            q: rows(c.q_dim()),
            k: rows(c.kv_dim()),
            v: rows(c.kv_dim()),
            att: rows(c.q_dim()),
            out: rows(d),
            gate: rows(c.ffn),
            up: rows(c.ffn),
            last_n: vec![0.0; d as usize],
            logits: vec![0.0; c.vocab as usize],
        };
        let activation_bytes = 4
            * (n as u64
                * (4 * u64::from(d)
                    + 2 * u64::from(c.q_dim() + c.kv_dim())
                    + 2 * u64::from(c.ffn))
                + u64::from(d)
                + u64::from(c.vocab));
        let weight_bytes = token_embd.byte_len()
            + layers
                .iter()
                .map(|l| {
                    [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down]
                        .iter()
                        .map(|m| m.byte_len())
                        .sum::<u64>()
                })
                .sum::<u64>();
        Ok(CpuModel {
            stats: CpuLoadStats {
                file_bytes,
                tensor_bytes: w.bytes_read,
                weight_bytes,
                kv_cache_bytes: layers.iter().map(|l| l.cache.bytes()).sum(),
                activation_bytes,
            },
            config: c,
            header: w.header,
            context_len,
            token_embd,
            output_norm,
            layers,
            state,
            score_logits: Vec::new(),
        })
    }

    /// Most tokens one prefill block runs.
    pub fn max_chunk(&self) -> u32 {
        self.state.max_tokens as u32
    }

    /// Threads the matrix products run on.
    pub fn threads(&self) -> usize {
        crate::cpu::threads()
    }

    /// Runs `tokens` (1 ..= max_chunk of them) at positions `pos..` through every layer,
    /// storing their keys and values in the cache; leaves the final hidden states in `h`.
    fn forward(&mut self, tokens: &[u32], pos: u32) -> Result<(), Error> {
        let n = self.check_block(tokens, pos, self.state.max_tokens)?;
        let CpuModel {
            config: c,
            token_embd,
            layers,
            state: s,
            ..
        } = self;
        let (d, qd, kvd, ffn) = (
            c.d_model as usize,
            c.q_dim() as usize,
            c.kv_dim() as usize,
            c.ffn as usize,
        );
        let eps = c.eps;
        let h = &mut s.h[..n * d];
        let xn = &mut s.xn[..n * d];
        let q = &mut s.q[..n * qd];
        let k = &mut s.k[..n * kvd];
        let v = &mut s.v[..n * kvd];
        let att = &mut s.att[..n * qd];
        let out = &mut s.out[..n * d];
        let gate = &mut s.gate[..n * ffn];
        let up = &mut s.up[..n * ffn];

        // Embedding: the token's row of token_embd, times sqrt(d_model).
        for (&id, row) in tokens.iter().zip(h.chunks_exact_mut(d)) {
            token_embd.row(id as usize, row)?;
            ops::scale(row, (d as f32).sqrt());
        }
        for layer in layers.iter_mut() {
            // --- Attention block ---
            // Pre-attention RMSNorm.
            ops::rmsnorm(h, &layer.attn_norm, eps, xn);
            // Query, key and value projections.
            layer.q.matmul(xn, n, q)?;
            layer.k.matmul(xn, n, k)?;
            layer.v.matmul(xn, n, v)?;
            // Gemma 3: RMSNorm over each query and key head.
            if let (Some(wq), Some(wk)) = (&layer.q_norm, &layer.k_norm) {
                ops::rmsnorm_in_place(q, wq, eps);
                ops::rmsnorm_in_place(k, wk, eps);
            }
            // Rotary position embedding of queries and keys (per-layer base on Gemma 3).
            for (t, (qt, kt)) in q
                .chunks_exact_mut(qd)
                .zip(k.chunks_exact_mut(kvd))
                .enumerate()
            {
                ops::rope(qt, pos + t as u32, &layer.rope);
                ops::rope(kt, pos + t as u32, &layer.rope);
            }
            // Store this block's keys and values, then attend: causal, within the window on
            // sliding layers, scores soft-capped on Gemma 2.
            layer.cache.store(pos, k, v);
            attend(&layer.attn, &layer.cache, q, pos, att);
            // Output projection.
            layer.o.matmul(att, n, out)?;
            // Residual: h += attention (Gemma 2, 3: after a post-attention RMSNorm).
            match &layer.post_attn_norm {
                Some(w) => ops::add_rmsnorm(h, out, w, eps),
                None => ops::add(h, out),
            }
            // --- MLP block ---
            // Pre-MLP RMSNorm.
            ops::rmsnorm(h, &layer.ffn_norm, eps, xn);
            // down(gelu_tanh(gate(x)) * up(x)).
            layer.gate.matmul(xn, n, gate)?;
            layer.up.matmul(xn, n, up)?;
            ops::gelu_mul(gate, up);
            layer.down.matmul(gate, n, out)?;
            // Residual: h += MLP (Gemma 2, 3: after a post-MLP RMSNorm).
            match &layer.post_ffn_norm {
                Some(w) => ops::add_rmsnorm(h, out, w, eps),
                None => ops::add(h, out),
            }
        }
        Ok(())
    }

    /// The head on the last of `n` tokens: final RMSNorm, logits through the tied embedding,
    /// Gemma 2's final soft-cap, then what `head` asks for.
    fn head(&mut self, n: usize, head: Head) -> Result<Output, Error> {
        if head == Head::None {
            return Ok(Output::None);
        }
        let c = &self.config;
        let d = c.d_model as usize;
        let s = &mut self.state;
        ops::rmsnorm(
            &s.h[(n - 1) * d..n * d],
            &self.output_norm,
            c.eps,
            &mut s.last_n,
        );
        self.token_embd.matmul(&s.last_n, 1, &mut s.logits)?;
        if let Some(cap) = c.final_softcap {
            ops::softcap(&mut s.logits, cap);
        }
        Ok(match head {
            Head::None => Output::None,
            Head::Argmax => Output::Argmax(ops::argmax(&s.logits)),
            Head::TopK => Output::TopK(ops::top_k(&s.logits, SAMPLE_TOP_K as usize)),
            // The logits are in host memory already: the Session's Sampler draws from them.
            Head::Logits | Head::Sample(_) => Output::Logits(s.logits.clone()),
        })
    }

    fn check_block(&self, tokens: &[u32], pos: u32, max: usize) -> Result<usize, Error> {
        let n = tokens.len();
        if !(1..=max).contains(&n) {
            return Err(Error::Unsupported(format!(
                "a block of {n} tokens (1..={max})"
            )));
        }
        self.check_fits(tokens, pos)?;
        Ok(n)
    }

    /// `tokens` at positions `pos..` fit the context and the vocabulary.
    fn check_fits(&self, tokens: &[u32], pos: u32) -> Result<(), Error> {
        let n = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        if pos.checked_add(n).is_none_or(|end| end > self.context_len) {
            return Err(Error::Unsupported(format!(
                "{} tokens at position {pos} do not fit the context of {} tokens",
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
        Ok(())
    }

    /// One token at position `pos` (the cache must hold 0..pos): stores its keys and values and
    /// returns what `head` asks for about the next token.
    pub async fn forward_decode(
        &mut self,
        token: u32,
        pos: u32,
        head: Head,
    ) -> Result<Output, Error> {
        self.forward(&[token], pos)?;
        let out = self.head(1, head);
        // In a browser the forward pass runs on the worker's own thread: let it handle its
        // messages (an interrupt, a tokenize call) before the token is handed on.
        #[cfg(target_arch = "wasm32")]
        crate::web::yield_to_event_loop().await;
        out
    }

    /// The prompt `tokens` at positions `pos..`, in blocks of [`CpuModel::max_chunk`] tokens;
    /// `head` is answered for the last one. A prompt past the context is an error before any
    /// work is done.
    pub async fn prefill(&mut self, tokens: &[u32], pos: u32, head: Head) -> Result<Output, Error> {
        self.prefill_until(tokens, pos, head, None).await
    }

    /// [`CpuModel::prefill`] that can be stopped: after each block but the last it asks `stop`;
    /// `true` ends the prefill with [`Error::Aborted`]. The cache then holds part of the prompt
    /// past `pos`, which the next prefill at `pos` overwrites.
    pub async fn prefill_until(
        &mut self,
        tokens: &[u32],
        pos: u32,
        head: Head,
        mut stop: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Output, Error> {
        if tokens.is_empty() {
            return Err(Error::Unsupported("an empty prompt".into()));
        }
        self.check_fits(tokens, pos)?;
        let mut at = pos;
        let mut last = 0;
        let blocks = tokens.chunks(self.state.max_tokens);
        let n_blocks = blocks.len();
        for (i, block) in blocks.enumerate() {
            self.forward(block, at)?;
            at += block.len() as u32;
            last = block.len();
            if let Some(stop) = stop.as_mut().filter(|_| i + 1 < n_blocks) {
                #[cfg(target_arch = "wasm32")]
                crate::web::yield_to_event_loop().await;
                if stop() {
                    return Err(Error::Aborted);
                }
            }
        }
        self.head(last, head)
    }

    /// Runs `tokens` at positions `pos..` and calls `each(i, logits)` with the logits after
    /// token i (the distribution of token i + 1), for every i in order.
    pub async fn score(
        &mut self,
        tokens: &[u32],
        pos: u32,
        each: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), Error> {
        self.check_fits(tokens, pos)?;
        let rows = self.state.max_tokens.min(SCORE_ROWS);
        let (d, vocab) = (self.config.d_model as usize, self.config.vocab as usize);
        if self.score_logits.len() < rows * vocab {
            self.score_logits = vec![0.0; rows * vocab];
        }
        let mut at = pos;
        let mut i = 0usize;
        for block in tokens.chunks(rows) {
            let n = block.len();
            self.forward(block, at)?;
            let CpuModel {
                config: c,
                state: s,
                token_embd,
                output_norm,
                score_logits,
                ..
            } = self;
            // Final RMSNorm of every position, logits through the tied embedding, soft-cap.
            ops::rmsnorm(&s.h[..n * d], output_norm, c.eps, &mut s.xn[..n * d]);
            let logits = &mut score_logits[..n * vocab];
            token_embd.matmul(&s.xn[..n * d], n, logits)?;
            if let Some(cap) = c.final_softcap {
                ops::softcap(logits, cap);
            }
            for row in logits.chunks_exact(vocab) {
                each(i, row);
                i += 1;
            }
            at += n as u32;
        }
        Ok(())
    }
}
