//! CPU reference engine for correctness tests (native only): candle-transformers' full-precision
//! `gemma`, `gemma2` and `gemma3` models, f32 on the CPU, fed with weights that candle's own ggml
//! code dequantizes. Nothing here shares logic with our shaders or engine: only the GGUF header
//! reader (tensor table and metadata) is ours.
//!
//! Include it from an integration test with `mod reference;`.
//!
//! How it maps onto candle, and the candle 0.11.1 traps it works around (checked by reading
//! candle-transformers' gemma.rs / gemma2.rs / gemma3.rs; see also GEMMA.md):
//! - GGUF norm weights carry Gemma's `+1` (llama.cpp's converter adds it); candle's RmsNorm
//!   multiplies by `(1 + w)` (also gemma3's q/k norms), so 1 is subtracted from every norm weight.
//! - `Model::forward` returns only the last position's logits. Every token therefore goes through
//!   candle's decode path, one position at a time with its KV cache (`RefMode::Decode`): exact at
//!   every position, about 0.1 s a token for the 270M model on these machines.
//! - gemma3 in decode: sliding layers (il % pattern != pattern - 1, as llama.cpp and GEMMA.md)
//!   keep exactly the last W keys in a RotatingKvCache of size W, global layers everything;
//!   RoPE base `rope_local_base_freq` on sliding layers, `rope_theta` on global ones. All as Gemma.
//! - gemma3 batched prefill: its sliding mask lets W + 1 keys through (`j + W < i` masked), so
//!   `RefMode::Prefill` builds it with W - 1 (and then refuses decode steps that its W - 1 key
//!   cache would get wrong); its global layers' `KvCache::append` rejects the non-contiguous value
//!   tensor unless there is a single KV head (true of Gemma 3 270M / 1B), so batched prefill of
//!   a GQA gemma3 is refused; a prefill that starts past position 0 would build masks that do not
//!   fit the rotating cache, so the reference never does one.
//! - gemma2 has no sliding window in decode at all and puts it on every layer in prefill (also
//!   W + 1 keys): up to W positions neither matters, past W the reference refuses.
//! - gemma2 / gemma3 scale attention by 1/sqrt(head_dim) and ignore `query_pre_attn_scalar`;
//!   models where the two differ (the 27B sizes, by llama.cpp's rule) are refused.
//! - candle builds RoPE tables (and gemma3's global KV caches) for `max_position_embeddings`
//!   positions per layer (32768 for the 270M model: ~0.6 GB of tables): capped at load.
//! - gemma 1: `hidden_activation` gelu_pytorch_tanh (HF's config says "gelu", which candle would
//!   take as erf GELU); candle ties the LM head to the embedding in all three, so a GGUF with an
//!   `output.weight` is refused.
//!
//! Test support code: failures panic with a message (`try_*` variants return `Err(String)`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::{ggml_file::qtensor_from_ggml, GgmlDType};
use candle_core::{DType, Device, Tensor};
use candle_nn::{Activation, VarBuilder};
use candle_transformers::models::{gemma, gemma2, gemma3};
use gemma_web::gguf::{read_header_from_file, GgmlType, GgufHeader};

/// Positions the reference is built for unless asked otherwise (RoPE tables and KV caches).
pub const DEFAULT_MAX_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefArch {
    Gemma,
    Gemma2,
    Gemma3,
}

/// The hyper-parameters the reference read from the GGUF metadata (independently of our
/// `model::config`, with llama.cpp's defaults for absent keys).
#[derive(Debug, Clone, PartialEq)]
pub struct RefConfig {
    pub arch: RefArch,
    pub n_layers: usize,
    pub d_model: usize,
    pub ffn: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    /// Global layers' RoPE base (`rope.freq_base`).
    pub rope_base: f64,
    /// Sliding layers' RoPE base (gemma3 only; `rope.local_freq_base`, default 10000).
    pub rope_base_local: f64,
    pub sliding_window: Option<usize>,
    /// gemma3: layer `il` slides when `il % pattern != pattern - 1`.
    pub sliding_pattern: usize,
    pub attn_softcap: Option<f64>,
    pub final_softcap: Option<f64>,
    pub query_pre_attn_scalar: usize,
    pub context_len: usize,
    pub vocab: usize,
}

/// Which of candle's two attention paths the model is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefMode {
    /// One token at a time through candle's decode path (`step`, `logits_all`, `greedy`): exact
    /// at every position for gemma and gemma3, up to the window for gemma2.
    Decode,
    /// One batched forward over a whole prompt (`prefill_last`): gemma3 is built with candle's
    /// window set to W - 1, because its prefill mask lets W + 1 keys through; then decoding is
    /// exact only below W - 1 positions. Faster for long prompts when only the last logits matter.
    Prefill,
}

enum Inner {
    Gemma(gemma::Model),
    Gemma2(gemma2::Model),
    Gemma3(gemma3::Model),
}

pub struct RefModel {
    pub config: RefConfig,
    pub mode: RefMode,
    /// The most positions this instance can run (min of the model's context and the load cap).
    pub max_len: usize,
    inner: Inner,
    /// Position of the next token fed to `step`.
    pos: usize,
}

/// Loads a gemma / gemma2 / gemma3 GGUF in decode mode for up to `DEFAULT_MAX_LEN` positions.
pub fn load_reference(path: impl AsRef<Path>) -> RefModel {
    load_reference_with(path, DEFAULT_MAX_LEN, RefMode::Decode)
}

/// Loads a GGUF as a candle model able to run `max_len` positions (capped by the model's context).
pub fn load_reference_with(path: impl AsRef<Path>, max_len: usize, mode: RefMode) -> RefModel {
    let path = path.as_ref();
    try_load_reference(path, max_len, mode)
        .unwrap_or_else(|e| panic!("reference: loading {}: {e}", path.display()))
}

pub fn try_load_reference(path: &Path, max_len: usize, mode: RefMode) -> Result<RefModel, String> {
    let header = read_header_from_file(path).map_err(|e| e.to_string())?;
    let config = read_config(&header)?;
    let max_len = max_len.min(config.context_len).max(1);
    // What candle's gemma3 calls the window: the size of the sliding layers' rotating KV cache in
    // decode (exactly the last W keys), but W + 1 keys in its prefill mask.
    let candle_window = match (mode, config.sliding_window) {
        (_, None) => max_len,
        (RefMode::Decode, Some(w)) => w,
        (RefMode::Prefill, Some(w)) => w.checked_sub(1).filter(|&w| w > 0).ok_or("window 1")?,
    };
    let tensors = load_tensors(path, &header, config.arch)?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    let c = &config;
    let inner = match c.arch {
        RefArch::Gemma => Inner::Gemma(
            gemma::Model::new(
                false,
                &gemma::Config {
                    attention_bias: false,
                    head_dim: c.head_dim,
                    hidden_act: None,
                    hidden_activation: Some(Activation::GeluPytorchTanh),
                    hidden_size: c.d_model,
                    intermediate_size: c.ffn,
                    num_attention_heads: c.n_heads,
                    num_hidden_layers: c.n_layers,
                    num_key_value_heads: c.n_kv_heads,
                    rms_norm_eps: c.eps,
                    rope_theta: c.rope_base,
                    vocab_size: c.vocab,
                    max_position_embeddings: max_len,
                },
                vb,
            )
            .map_err(|e| format!("candle gemma: {e}"))?,
        ),
        RefArch::Gemma2 => Inner::Gemma2(
            gemma2::Model::new(
                false,
                &gemma2::Config {
                    attention_bias: false,
                    head_dim: c.head_dim,
                    hidden_activation: Activation::GeluPytorchTanh,
                    hidden_size: c.d_model,
                    intermediate_size: c.ffn,
                    num_attention_heads: c.n_heads,
                    num_hidden_layers: c.n_layers,
                    num_key_value_heads: c.n_kv_heads,
                    rms_norm_eps: c.eps,
                    rope_theta: c.rope_base,
                    vocab_size: c.vocab,
                    final_logit_softcapping: c.final_softcap,
                    attn_logit_softcapping: c.attn_softcap,
                    query_pre_attn_scalar: c.query_pre_attn_scalar,
                    // Only used by candle's batched prefill mask, which the reference never builds.
                    sliding_window: c.sliding_window,
                    max_position_embeddings: max_len,
                },
                vb,
            )
            .map_err(|e| format!("candle gemma2: {e}"))?,
        ),
        RefArch::Gemma3 => Inner::Gemma3(
            gemma3::Model::new(
                false,
                &gemma3::Config {
                    attention_bias: false,
                    head_dim: c.head_dim,
                    hidden_activation: Activation::GeluPytorchTanh,
                    hidden_size: c.d_model,
                    intermediate_size: c.ffn,
                    num_attention_heads: c.n_heads,
                    num_hidden_layers: c.n_layers,
                    num_key_value_heads: c.n_kv_heads,
                    rms_norm_eps: c.eps,
                    rope_theta: c.rope_base,
                    rope_local_base_freq: c.rope_base_local,
                    vocab_size: c.vocab,
                    final_logit_softcapping: c.final_softcap,
                    attn_logit_softcapping: c.attn_softcap,
                    query_pre_attn_scalar: c.query_pre_attn_scalar,
                    sliding_window: candle_window,
                    sliding_window_pattern: c.sliding_pattern,
                    max_position_embeddings: max_len,
                },
                vb,
            )
            .map_err(|e| format!("candle gemma3: {e}"))?,
        ),
    };
    Ok(RefModel {
        config,
        mode,
        max_len,
        inner,
        pos: 0,
    })
}

fn meta_u(h: &GgufHeader, key: &str) -> Result<Option<usize>, String> {
    match h.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|x| Some(x as usize))
            .ok_or_else(|| format!("metadata {key}: not an unsigned integer: {v:?}")),
    }
}

fn meta_f(h: &GgufHeader, key: &str) -> Result<Option<f64>, String> {
    match h.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f32()
            .map(|x| Some(x as f64))
            .ok_or_else(|| format!("metadata {key}: not a float: {v:?}")),
    }
}

fn need<T>(v: Option<T>, key: &str) -> Result<T, String> {
    v.ok_or_else(|| format!("metadata {key} missing"))
}

/// Reads the hyper-parameters the way llama.cpp's loader does (same keys, same defaults).
pub fn read_config(h: &GgufHeader) -> Result<RefConfig, String> {
    let arch_name = h
        .get_str("general.architecture")
        .ok_or("general.architecture missing")?;
    let arch = match arch_name {
        "gemma" => RefArch::Gemma,
        "gemma2" => RefArch::Gemma2,
        "gemma3" => RefArch::Gemma3,
        other => return Err(format!("architecture {other:?} is not gemma/gemma2/gemma3")),
    };
    let k = |s: &str| format!("{arch_name}.{s}");
    let n_layers = need(meta_u(h, &k("block_count"))?, &k("block_count"))?;
    let d_model = need(meta_u(h, &k("embedding_length"))?, &k("embedding_length"))?;
    let ffn = need(
        meta_u(h, &k("feed_forward_length"))?,
        &k("feed_forward_length"),
    )?;
    let n_heads = need(
        meta_u(h, &k("attention.head_count"))?,
        &k("attention.head_count"),
    )?;
    let n_kv_heads = meta_u(h, &k("attention.head_count_kv"))?.unwrap_or(n_heads);
    let head_dim = match meta_u(h, &k("attention.key_length"))? {
        Some(d) => d,
        None => d_model / n_heads.max(1),
    };
    if let Some(v) = meta_u(h, &k("attention.value_length"))? {
        if v != head_dim {
            return Err(format!("value_length {v} != key_length {head_dim}"));
        }
    }
    let eps = need(
        meta_f(h, &k("attention.layer_norm_rms_epsilon"))?,
        &k("attention.layer_norm_rms_epsilon"),
    )?;
    let rope_base = meta_f(h, &k("rope.freq_base"))?.unwrap_or(10_000.0);
    let rope_base_local = meta_f(h, &k("rope.local_freq_base"))?.unwrap_or(10_000.0);
    // candle's models have no RoPE scaling: such a file would run unscaled, silently.
    for key in ["rope.scaling.factor", "rope.scale_linear"] {
        if meta_f(h, &k(key))?.is_some_and(|f| f != 0.0 && f != 1.0) {
            return Err(format!(
                "{} is set: candle's Gemma models have no RoPE scaling",
                k(key)
            ));
        }
    }
    let context_len = meta_u(h, &k("context_length"))?.unwrap_or(8192);
    let embd = h
        .tensor("token_embd.weight")
        .ok_or("token_embd.weight missing")?;
    let vocab = *embd.dims.get(1).ok_or("token_embd.weight is not 2-D")? as usize;
    let window = meta_u(h, &k("attention.sliding_window"))?;
    // A cap of 0 means none (llama.cpp's converter writes both gemma2 caps, 0 when absent).
    let cap = |key: &str, default: Option<f64>| -> Result<Option<f64>, String> {
        Ok(meta_f(h, &k(key))?.or(default).filter(|&c| c > 0.0))
    };
    let (sliding_window, attn_softcap, final_softcap) = match arch {
        RefArch::Gemma => (None, None, None),
        RefArch::Gemma2 => (
            Some(window.unwrap_or(4096)),
            cap("attn_logit_softcapping", Some(50.0))?,
            cap("final_logit_softcapping", Some(30.0))?,
        ),
        // HF's gemma3 config has both caps (null in Google's models); llama.cpp ignores them.
        RefArch::Gemma3 => (
            Some(window.unwrap_or(512)),
            cap("attn_logit_softcapping", None)?,
            cap("final_logit_softcapping", None)?,
        ),
    };
    if sliding_window == Some(0) {
        return Err("sliding window 0".into());
    }
    let sliding_pattern = match arch {
        RefArch::Gemma3 => meta_u(h, &k("attention.sliding_window_pattern"))?.unwrap_or(6),
        _ => 2,
    };
    // llama.cpp: 1/sqrt(d_model / n_heads) for the 27B models, 1/sqrt(head_dim) otherwise.
    let is_27b = matches!(
        (arch, n_layers),
        (RefArch::Gemma2, 46) | (RefArch::Gemma3, 62)
    );
    let query_pre_attn_scalar = if is_27b { d_model / n_heads } else { head_dim };
    if query_pre_attn_scalar != head_dim {
        return Err(format!(
            "query_pre_attn_scalar {query_pre_attn_scalar} != head_dim {head_dim}: candle's \
             models scale by 1/sqrt(head_dim), so the reference cannot run this model"
        ));
    }
    if n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
        return Err(format!(
            "{n_heads} heads not divisible into {n_kv_heads} kv heads"
        ));
    }
    if sliding_pattern == 0 {
        return Err("sliding window pattern 0".into());
    }
    Ok(RefConfig {
        arch,
        n_layers,
        d_model,
        ffn,
        n_heads,
        n_kv_heads,
        head_dim,
        eps,
        rope_base,
        rope_base_local,
        sliding_window,
        sliding_pattern,
        attn_softcap,
        final_softcap,
        query_pre_attn_scalar,
        context_len,
        vocab,
    })
}

/// The HF (candle) name of a GGUF tensor, and whether it is a norm weight carrying the `+1`.
pub fn hf_name(gguf: &str, arch: RefArch) -> Option<(String, bool)> {
    let simple = match gguf {
        "token_embd.weight" => Some(("model.embed_tokens.weight".to_string(), false)),
        "output_norm.weight" => Some(("model.norm.weight".to_string(), true)),
        _ => None,
    };
    if simple.is_some() {
        return simple;
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let base = rest.strip_suffix(".weight")?;
    let (hf, norm) = match base {
        "attn_norm" => ("input_layernorm", true),
        "attn_q" => ("self_attn.q_proj", false),
        "attn_k" => ("self_attn.k_proj", false),
        "attn_v" => ("self_attn.v_proj", false),
        "attn_output" => ("self_attn.o_proj", false),
        "attn_q_norm" if arch == RefArch::Gemma3 => ("self_attn.q_norm", true),
        "attn_k_norm" if arch == RefArch::Gemma3 => ("self_attn.k_norm", true),
        "post_attention_norm" if arch != RefArch::Gemma => ("post_attention_layernorm", true),
        // Gemma 1 has one norm before the MLP, which HF calls post_attention_layernorm.
        "ffn_norm" if arch == RefArch::Gemma => ("post_attention_layernorm", true),
        "ffn_norm" => ("pre_feedforward_layernorm", true),
        "post_ffw_norm" if arch != RefArch::Gemma => ("post_feedforward_layernorm", true),
        "ffn_gate" => ("mlp.gate_proj", false),
        "ffn_up" => ("mlp.up_proj", false),
        "ffn_down" => ("mlp.down_proj", false),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}.weight"), norm))
}

fn candle_dtype(ty: GgmlType) -> GgmlDType {
    match ty {
        GgmlType::F32 => GgmlDType::F32,
        GgmlType::F16 => GgmlDType::F16,
        GgmlType::BF16 => GgmlDType::BF16,
        GgmlType::Q4_0 => GgmlDType::Q4_0,
        GgmlType::Q4_1 => GgmlDType::Q4_1,
        GgmlType::Q5_0 => GgmlDType::Q5_0,
        GgmlType::Q5_1 => GgmlDType::Q5_1,
        GgmlType::Q8_0 => GgmlDType::Q8_0,
        GgmlType::Q2K => GgmlDType::Q2K,
        GgmlType::Q3K => GgmlDType::Q3K,
        GgmlType::Q4K => GgmlDType::Q4K,
        GgmlType::Q5K => GgmlDType::Q5K,
        GgmlType::Q6K => GgmlDType::Q6K,
    }
}

/// Dequantizes one tensor with candle's ggml code; HF shape (ggml dims reversed), f32.
pub fn dequantize_tensor(
    file: &mut File,
    t: &gemma_web::gguf::TensorInfo,
) -> Result<Tensor, String> {
    let mut raw = vec![0u8; t.bytes as usize];
    file.seek(SeekFrom::Start(t.offset))
        .and_then(|_| file.read_exact(&mut raw))
        .map_err(|e| format!("{}: reading {} bytes at {}: {e}", t.name, t.bytes, t.offset))?;
    let dims: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
    qtensor_from_ggml(candle_dtype(t.ty), &raw, dims, &Device::Cpu)
        .and_then(|q| q.dequantize(&Device::Cpu))
        .map_err(|e| format!("{}: candle dequantize {}: {e}", t.name, t.ty.name()))
}

fn load_tensors(
    path: &Path,
    header: &GgufHeader,
    arch: RefArch,
) -> Result<HashMap<String, Tensor>, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for t in &header.tensors {
        if t.name == "output.weight" {
            // candle's Gemma models always tie the LM head to the embedding.
            return Err("untied output.weight: candle's Gemma models cannot use it".into());
        }
        let (name, is_norm) = hf_name(&t.name, arch)
            .ok_or_else(|| format!("tensor {} has no place in a {arch:?} model", t.name))?;
        let mut w = dequantize_tensor(&mut file, t)?;
        if is_norm {
            w = (w - 1.0).map_err(|e| e.to_string())?;
        }
        if out.insert(name.clone(), w).is_some() {
            return Err(format!("two tensors map to {name}"));
        }
    }
    Ok(out)
}

impl RefModel {
    /// Forgets all tokens: the next `step` is position 0.
    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::Gemma(m) => m.clear_kv_cache(),
            Inner::Gemma2(m) => m.clear_kv_cache(),
            Inner::Gemma3(m) => m.clear_kv_cache(),
        }
        self.pos = 0;
    }

    /// Tokens fed since the last reset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Feeds one token at the next position (extending the KV cache) and returns its logits.
    pub fn try_step(&mut self, id: u32) -> Result<Vec<f32>, String> {
        if self.pos >= self.max_len {
            return Err(format!(
                "position {} is past the reference's max_len {}",
                self.pos, self.max_len
            ));
        }
        if id as usize >= self.config.vocab {
            return Err(format!(
                "token {id} outside the vocabulary of {}",
                self.config.vocab
            ));
        }
        self.check_window(self.pos + 1, "step")?;
        let input = Tensor::new(&[[id]], &Device::Cpu).map_err(|e| e.to_string())?;
        let logits = match &mut self.inner {
            Inner::Gemma(m) => m.forward(&input, self.pos),
            Inner::Gemma2(m) => m.forward(&input, self.pos),
            Inner::Gemma3(m) => m.forward(&input, self.pos),
        }
        .and_then(|l| l.flatten_all())
        .and_then(|l| l.to_vec1::<f32>())
        .map_err(|e| format!("candle forward at position {}: {e}", self.pos))?;
        self.pos += 1;
        Ok(logits)
    }

    /// Refuses to run `len` positions where candle's attention would not be Gemma's.
    fn check_window(&self, len: usize, what: &str) -> Result<(), String> {
        let Some(w) = self.config.sliding_window else {
            return Ok(());
        };
        // Up to W positions no key is ever outside the window, so any candle path is exact.
        let exact_up_to = match (self.config.arch, self.mode, what) {
            (RefArch::Gemma, ..) => usize::MAX,
            // candle's gemma2 has no window in decode and one on every layer in prefill.
            (RefArch::Gemma2, ..) => w,
            (RefArch::Gemma3, RefMode::Decode, "step") => usize::MAX,
            (RefArch::Gemma3, RefMode::Prefill, "prefill") => usize::MAX,
            // Decode mode's prefill mask lets W + 1 keys through; prefill mode's decode cache W - 1.
            (RefArch::Gemma3, RefMode::Decode, _) => w,
            (RefArch::Gemma3, RefMode::Prefill, _) => w - 1,
        };
        if len > exact_up_to {
            return Err(format!(
                "{:?} {what} over {len} positions in {:?} mode: candle's window handling is exact \
                 only up to {exact_up_to} (window {w}; see tests/reference/mod.rs)",
                self.config.arch, self.mode
            ));
        }
        Ok(())
    }

    /// Logits of the last token of `ids` from one batched candle forward (a fresh context; the
    /// model is left at position `ids.len()`). Exact for gemma; for gemma3 in `RefMode::Prefill`
    /// (any length) or up to W tokens otherwise; for gemma2 up to W tokens.
    pub fn try_prefill_last(&mut self, ids: &[u32]) -> Result<Vec<f32>, String> {
        self.reset();
        if ids.is_empty() || ids.len() > self.max_len {
            return Err(format!(
                "prefill of {} tokens (max_len {})",
                ids.len(),
                self.max_len
            ));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= self.config.vocab) {
            return Err(format!(
                "token {bad} outside the vocabulary of {}",
                self.config.vocab
            ));
        }
        self.check_window(ids.len(), "prefill")?;
        if self.config.arch == RefArch::Gemma3 && self.config.n_kv_heads > 1 && ids.len() > 1 {
            // Its global layers' KvCache::append slice_sets the transposed (non-contiguous)
            // values, which candle 0.11.1 rejects unless there is a single KV head.
            return Err("candle 0.11.1's gemma3 cannot prefill with several KV heads".into());
        }
        let input = Tensor::new(ids, &Device::Cpu)
            .and_then(|t| t.unsqueeze(0))
            .map_err(|e| e.to_string())?;
        let logits = match &mut self.inner {
            Inner::Gemma(m) => m.forward(&input, 0),
            Inner::Gemma2(m) => m.forward(&input, 0),
            Inner::Gemma3(m) => m.forward(&input, 0),
        }
        .and_then(|l| l.flatten_all())
        .and_then(|l| l.to_vec1::<f32>())
        .map_err(|e| format!("candle prefill of {} tokens: {e}", ids.len()))?;
        self.pos = ids.len();
        Ok(logits)
    }

    pub fn prefill_last(&mut self, ids: &[u32]) -> Vec<f32> {
        self.try_prefill_last(ids)
            .unwrap_or_else(|e| panic!("reference: {e}"))
    }

    pub fn step(&mut self, id: u32) -> Vec<f32> {
        self.try_step(id)
            .unwrap_or_else(|e| panic!("reference: {e}"))
    }

    /// Logits after each token of `ids` (row i predicts token i + 1), from a fresh context.
    pub fn logits_all(&mut self, ids: &[u32]) -> Vec<Vec<f32>> {
        self.reset();
        ids.iter().map(|&id| self.step(id)).collect()
    }

    /// Greedy continuation of `prompt` from a fresh context: `steps` new ids (ties go to the
    /// lowest id). Stops at no stop token: the caller sees exactly `steps` ids.
    pub fn greedy(&mut self, prompt: &[u32], steps: usize) -> Vec<u32> {
        assert!(
            !prompt.is_empty(),
            "reference: greedy needs a non-empty prompt"
        );
        let mut logits = self.logits_all(prompt).pop().unwrap_or_default();
        let mut out = Vec::with_capacity(steps);
        for i in 0..steps {
            let next = argmax(&logits);
            out.push(next);
            if i + 1 < steps {
                logits = self.step(next);
            }
        }
        out
    }
}

/// Index of the largest logit (the lowest index among equals).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &x) in logits.iter().enumerate() {
        if x > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The `k` largest logits as (id, logit), largest first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    idx.into_iter().map(|i| (i, logits[i as usize])).collect()
}

/// top1 - top2 of one logit vector: how far the greedy choice is from a tie (0 for a tie,
/// infinity for a single logit).
pub fn argmax_margin(logits: &[f32]) -> f32 {
    let (mut a, mut b) = (f32::NEG_INFINITY, f32::NEG_INFINITY);
    for &x in logits {
        if x > a {
            b = a;
            a = x;
        } else if x > b {
            b = x;
        }
    }
    a - b
}

/// `argmax_margin` of each position's logits.
pub fn argmax_margins(logits: &[Vec<f32>]) -> Vec<f32> {
    logits.iter().map(|l| argmax_margin(l)).collect()
}

/// GEMMA.md: `<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n` with BOS.
pub const HAIKU_PROMPT: [u32; 17] = [
    2, 105, 2364, 107, 6974, 496, 678, 20517, 1003, 506, 5442, 236761, 106, 107, 105, 4368, 107,
];
/// llama.cpp's greedy continuation of HAIKU_PROMPT (GEMMA.md).
pub const LLAMA_CPP_GREEDY: [u32; 10] =
    [6974, 496, 678, 20517, 1003, 506, 5442, 236761, 217716, 107];
/// llama.cpp's top-5 logits at the first generated position (GEMMA.md).
pub const LLAMA_CPP_TOP5: [(u32, f32); 5] = [
    (6974, 9.147),
    (5986, 7.468),
    (818, 5.818),
    (236777, 5.377),
    (3048, 5.182),
];

/// Where `make model` puts the real Gemma 3 270M.
pub fn real_model_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/gemma-3-270m-q4_k_m.gguf")
}

/// The real model, or None when GEMMA_WEB_SKIP_MODEL_TESTS=1 lets the test skip; otherwise its
/// absence fails the test.
pub fn real_model() -> Option<std::path::PathBuf> {
    let path = real_model_path();
    if path.exists() {
        return Some(path);
    }
    if std::env::var("GEMMA_WEB_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: {} is absent and GEMMA_WEB_SKIP_MODEL_TESTS=1",
            path.display()
        );
        return None;
    }
    panic!(
        "{} is absent: run `make model` (or set GEMMA_WEB_SKIP_MODEL_TESTS=1 to skip)",
        path.display()
    );
}

/// A random-weight test model, the prompt length a test feeds it and the prefill block size
/// (smaller than the prompt, so that blocks follow one another).
pub struct TinyCase {
    pub name: &'static str,
    pub spec: gemma_web::model::random::RandomGemmaSpec,
    pub prompt_len: usize,
    pub chunk: u32,
}

/// The random test models every engine is checked on, each with what it exercises:
/// - Gemma 3 with GQA and a window of 16, which the tests' runs cross: sliding layers forget,
///   layer 5 does not;
/// - Gemma 1 with one KV head (MQA) and Q4_K_M's weight types;
/// - Gemma 2 with both soft-caps and five weight types in one layer; candle's gemma2 ignores the
///   window in decode, so the run stays inside it.
pub fn tiny_cases() -> [TinyCase; 3] {
    use gemma_web::gguf::GgmlType;
    use gemma_web::model::config::Arch;
    use gemma_web::model::random::{QuantTypes, RandomGemmaSpec};
    [
        TinyCase {
            name: "gemma3",
            spec: RandomGemmaSpec::tiny(Arch::Gemma3),
            prompt_len: 13,
            chunk: 5,
        },
        TinyCase {
            name: "gemma1",
            spec: RandomGemmaSpec {
                n_kv_heads: 1,
                types: QuantTypes::q4_k_m(),
                seed: 3,
                ..RandomGemmaSpec::tiny(Arch::Gemma)
            },
            prompt_len: 11,
            chunk: 4,
        },
        TinyCase {
            name: "gemma2",
            spec: RandomGemmaSpec {
                sliding_window: Some(48),
                types: QuantTypes {
                    attn_q: GgmlType::Q8_0,
                    attn_k: GgmlType::Q4_0,
                    attn_v: GgmlType::Q5K,
                    ffn_up: GgmlType::Q4_1,
                    ffn_gate: GgmlType::F16,
                    ..QuantTypes::q4_k_m()
                },
                seed: 5,
                ..RandomGemmaSpec::tiny(Arch::Gemma2)
            },
            prompt_len: 9,
            chunk: 3,
        },
    ]
}

/// The case named `name` of [`tiny_cases`].
pub fn tiny_case(name: &str) -> TinyCase {
    tiny_cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no tiny case {name}"))
}
