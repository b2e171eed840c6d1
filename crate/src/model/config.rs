//! Gemma 1/2/3 hyper-parameters from GGUF metadata, and the tensor inventory check.
//!
//! Keys are the ones llama.cpp's converter writes (`{arch}.block_count`, ...). Keys a file may lack
//! get the defaults of GEMMA.md: Gemma 3 270M has no `rope.local_freq_base` (10000) and no
//! sliding-window pattern (6); Gemma 1/2 files carry no `rope.freq_base` (10000).

use std::fmt;

use serde::Serialize;

use crate::gguf::{GgmlType, GgufHeader, MetaValue};
use crate::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gemma,
    Gemma2,
    Gemma3,
}

impl Arch {
    /// The `general.architecture` string.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma => "gemma",
            Arch::Gemma2 => "gemma2",
            Arch::Gemma3 => "gemma3",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "gemma" => Some(Arch::Gemma),
            "gemma2" => Some(Arch::Gemma2),
            "gemma3" => Some(Arch::Gemma3),
            _ => None,
        }
    }

    /// Gemma 2 and 3 norm the output of attention and of the MLP again before the residual add.
    pub fn has_post_norms(self) -> bool {
        matches!(self, Arch::Gemma2 | Arch::Gemma3)
    }

    /// Gemma 3 RMS-norms each q and k head before RoPE.
    pub fn has_qk_norm(self) -> bool {
        matches!(self, Arch::Gemma3)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GemmaConfig {
    pub arch: Arch,
    pub n_layers: u32,
    pub d_model: u32,
    pub ffn: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub eps: f32,
    /// RoPE base of global (full-attention) layers; of every layer in Gemma 1/2.
    pub rope_base_global: f32,
    /// RoPE base of sliding-window layers (Gemma 3).
    pub rope_base_local: f32,
    /// Multiplies the positions RoPE rotates by on the layers that use `rope_base_global`:
    /// 1 / `rope.scaling.factor` for linear scaling (Gemma 3 4B, 12B, 27B: 1/8), else 1.
    /// Gemma 3's sliding layers are never scaled (HF: only the global rotary embedding is).
    pub rope_scale_global: f32,
    /// Key j is visible to query i when 0 <= i - j < window, on sliding layers.
    pub sliding_window: Option<u32>,
    /// Layer l slides unless l % pattern == pattern - 1 (Gemma 2: 2, even layers slide; Gemma 3: 6).
    pub sliding_pattern: u32,
    /// s -> cap * tanh(s / cap) on attention scores before the mask (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// z -> cap * tanh(z / cap) on the final logits (Gemma 2).
    pub final_softcap: Option<f32>,
    /// Multiplies q.k before the softmax.
    pub query_scale: f32,
    pub context_len: u32,
    pub vocab: u32,
}

/// Upper bounds that keep a hostile header from asking for absurd allocations downstream.
const MAX_LAYERS: u32 = 1024;
const MAX_WIDTH: u32 = 1 << 20;

fn bad(msg: String) -> Error {
    Error::BadModel(msg)
}

impl GemmaConfig {
    pub fn from_header(h: &GgufHeader) -> Result<Self, Error> {
        let arch_name = h
            .get_str("general.architecture")
            .ok_or_else(|| bad("general.architecture is missing or not a string".into()))?;
        let arch = Arch::from_name(arch_name).ok_or_else(|| {
            Error::Unsupported(format!(
                "architecture {arch_name:?}: gemma-web runs gemma, gemma2 and gemma3"
            ))
        })?;
        let a = arch.name();
        let key = |k: &str| format!("{a}.{k}");
        let req_u32 = |k: &str| -> Result<u32, Error> {
            let k = key(k);
            match h.get(&k) {
                None => Err(bad(format!("metadata key {k} is missing"))),
                Some(v) => v
                    .as_u32()
                    .ok_or_else(|| bad(format!("metadata key {k} is not a u32: {v:?}"))),
            }
        };
        let opt_u32 = |k: &str| -> Result<Option<u32>, Error> {
            let k = key(k);
            match h.get(&k) {
                None => Ok(None),
                Some(v) => v
                    .as_u32()
                    .map(Some)
                    .ok_or_else(|| bad(format!("metadata key {k} is not a u32: {v:?}"))),
            }
        };
        let opt_f32 = |k: &str| -> Result<Option<f32>, Error> {
            let k = key(k);
            match h.get(&k) {
                None => Ok(None),
                Some(v) => match v.as_f32() {
                    Some(x) if x.is_finite() => Ok(Some(x)),
                    _ => Err(bad(format!(
                        "metadata key {k} is not a finite number: {v:?}"
                    ))),
                },
            }
        };

        let n_layers = req_u32("block_count")?;
        let d_model = req_u32("embedding_length")?;
        let ffn = req_u32("feed_forward_length")?;
        let n_heads = req_u32("attention.head_count")?;
        let n_kv_heads = opt_u32("attention.head_count_kv")?.unwrap_or(n_heads);
        let head_dim = match opt_u32("attention.key_length")? {
            Some(k) => k,
            None if n_heads > 0 && d_model % n_heads == 0 => d_model / n_heads,
            None => return Err(bad(format!("{a}.attention.key_length is missing"))),
        };
        if let Some(v) = opt_u32("attention.value_length")? {
            if v != head_dim {
                return Err(Error::Unsupported(format!(
                    "{a}.attention.value_length {v} differs from key_length {head_dim}"
                )));
            }
        }
        for (name, v, max) in [
            ("block_count", n_layers, MAX_LAYERS),
            ("embedding_length", d_model, MAX_WIDTH),
            ("feed_forward_length", ffn, MAX_WIDTH),
            ("attention.head_count", n_heads, 1024),
            ("attention.head_count_kv", n_kv_heads, 1024),
            ("attention.key_length", head_dim, 4096),
        ] {
            if v == 0 || v > max {
                return Err(bad(format!("{a}.{name} = {v} is outside 1..={max}")));
            }
        }
        if n_heads % n_kv_heads != 0 {
            return Err(bad(format!(
                "{n_heads} heads are not a multiple of {n_kv_heads} kv heads"
            )));
        }
        if head_dim % 2 != 0 {
            return Err(bad(format!(
                "head_dim {head_dim} is odd: RoPE rotates pairs"
            )));
        }
        let eps = opt_f32("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6);
        if eps <= 0.0 {
            return Err(bad(format!("rms epsilon {eps} is not positive")));
        }
        let context_len = opt_u32("context_length")?.unwrap_or(8192);

        let vocab = match h.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 => u32::try_from(t.dims[1])
                .map_err(|_| bad(format!("vocabulary of {} rows is too large", t.dims[1])))?,
            Some(t) => {
                return Err(bad(format!(
                    "tensor token_embd.weight has dims {:?}, expected [{d_model}, vocab]",
                    t.dims
                )))
            }
            None => return Err(bad("tensor token_embd.weight is missing".into())),
        };
        if let Some(tokens) = h.get_array("tokenizer.ggml.tokens") {
            // A token id past the embedding rows would read outside it on the GPU.
            if tokens.len() as u64 > u64::from(vocab) {
                return Err(bad(format!(
                    "the tokenizer has {} tokens but token_embd.weight only {vocab} rows",
                    tokens.len()
                )));
            }
        }

        let positive = |x: Option<f32>| x.filter(|c| *c > 0.0);
        let (sliding_window, sliding_pattern, attn_softcap, final_softcap, rope_global, rope_local) =
            match arch {
                Arch::Gemma => {
                    let base = opt_f32("rope.freq_base")?.unwrap_or(10_000.0);
                    (None, 1, None, None, base, base)
                }
                Arch::Gemma2 => {
                    let base = opt_f32("rope.freq_base")?.unwrap_or(10_000.0);
                    (
                        Some(opt_u32("attention.sliding_window")?.unwrap_or(4096)),
                        2,
                        positive(Some(opt_f32("attn_logit_softcapping")?.unwrap_or(50.0))),
                        positive(Some(opt_f32("final_logit_softcapping")?.unwrap_or(30.0))),
                        base,
                        base,
                    )
                }
                Arch::Gemma3 => (
                    Some(opt_u32("attention.sliding_window")?.unwrap_or(512)),
                    opt_u32("attention.sliding_window_pattern")?.unwrap_or(6),
                    positive(opt_f32("attn_logit_softcapping")?),
                    positive(opt_f32("final_logit_softcapping")?),
                    opt_f32("rope.freq_base")?.unwrap_or(1_000_000.0),
                    opt_f32("rope.local_freq_base")?.unwrap_or(10_000.0),
                ),
            };
        if sliding_window == Some(0) {
            return Err(bad(format!("{a}.attention.sliding_window is 0")));
        }
        if sliding_pattern == 0 {
            return Err(bad(format!("{a}.attention.sliding_window_pattern is 0")));
        }
        if !(rope_global > 0.0 && rope_local > 0.0) {
            return Err(bad(format!(
                "RoPE bases {rope_global} / {rope_local} must be positive"
            )));
        }
        let rope_scale_global = rope_scaling(h, a)?;
        refuse_unread_keys(h, arch, head_dim)?;

        // As llama.cpp: the 27B models scale by 1/sqrt(d_model / n_heads) (their query_pre_attn_scalar),
        // all smaller ones by 1/sqrt(head_dim) (= 1/16 for the 2B, 1B and 270M models).
        let is_27b = matches!((arch, n_layers), (Arch::Gemma2, 46) | (Arch::Gemma3, 62));
        let query_scale = if is_27b {
            1.0 / ((d_model / n_heads) as f32).sqrt()
        } else {
            1.0 / (head_dim as f32).sqrt()
        };

        Ok(GemmaConfig {
            arch,
            n_layers,
            d_model,
            ffn,
            n_heads,
            n_kv_heads,
            head_dim,
            eps,
            rope_base_global: rope_global,
            rope_base_local: rope_local,
            rope_scale_global,
            sliding_window,
            sliding_pattern,
            attn_softcap,
            final_softcap,
            query_scale,
            context_len,
            vocab,
        })
    }

    /// Whether `layer` attends only to the last `sliding_window` positions.
    pub fn is_sliding(&self, layer: u32) -> bool {
        self.sliding_window.is_some() && layer % self.sliding_pattern != self.sliding_pattern - 1
    }

    /// The window of `layer`, `None` for full attention.
    pub fn window(&self, layer: u32) -> Option<u32> {
        if self.is_sliding(layer) {
            self.sliding_window
        } else {
            None
        }
    }

    pub fn rope_base(&self, layer: u32) -> f32 {
        if self.arch == Arch::Gemma3 && self.is_sliding(layer) {
            self.rope_base_local
        } else {
            self.rope_base_global
        }
    }

    /// The factor on positions in `layer`'s RoPE (see `rope_scale_global`).
    pub fn rope_scale(&self, layer: u32) -> f32 {
        if self.arch == Arch::Gemma3 && self.is_sliding(layer) {
            1.0
        } else {
            self.rope_scale_global
        }
    }

    /// Width of all query heads together.
    pub fn q_dim(&self) -> u32 {
        self.n_heads * self.head_dim
    }

    /// Width of all key (or value) heads together.
    pub fn kv_dim(&self) -> u32 {
        self.n_kv_heads * self.head_dim
    }

    /// Every tensor the architecture needs, with its dims in ggml order (`dims[0]` = row length)
    /// and whether it is a norm weight (F32) or a matrix (any quant type).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<u64>, TensorRole)> {
        let d = u64::from(self.d_model);
        let q = u64::from(self.q_dim());
        let kv = u64::from(self.kv_dim());
        let f = u64::from(self.ffn);
        let hd = u64::from(self.head_dim);
        let mut v = vec![
            (
                "token_embd.weight".to_string(),
                vec![d, u64::from(self.vocab)],
                TensorRole::Embedding,
            ),
            ("output_norm.weight".to_string(), vec![d], TensorRole::Norm),
        ];
        for l in 0..self.n_layers {
            let mut t =
                |n: &str, dims: Vec<u64>, role| v.push((format!("blk.{l}.{n}.weight"), dims, role));
            t("attn_norm", vec![d], TensorRole::Norm);
            t("attn_q", vec![d, q], TensorRole::AttnQ);
            t("attn_k", vec![d, kv], TensorRole::AttnK);
            t("attn_v", vec![d, kv], TensorRole::AttnV);
            t("attn_output", vec![q, d], TensorRole::AttnOutput);
            if self.arch.has_qk_norm() {
                t("attn_q_norm", vec![hd], TensorRole::Norm);
                t("attn_k_norm", vec![hd], TensorRole::Norm);
            }
            if self.arch.has_post_norms() {
                t("post_attention_norm", vec![d], TensorRole::Norm);
            }
            t("ffn_norm", vec![d], TensorRole::Norm);
            t("ffn_gate", vec![d, f], TensorRole::FfnGate);
            t("ffn_up", vec![d, f], TensorRole::FfnUp);
            t("ffn_down", vec![f, d], TensorRole::FfnDown);
            if self.arch.has_post_norms() {
                t("post_ffw_norm", vec![d], TensorRole::Norm);
            }
        }
        v
    }
}

/// The position factor of linear RoPE scaling, from `{arch}.rope.scaling.type` and `.factor`
/// (or the older `rope.scale_linear`), as llama.cpp reads them: the factor divides the positions
/// (HF's `rope_scaling: {"rope_type": "linear"}`), whether the type says `linear` or `none` or is
/// absent. Any other type (yarn, longrope, ...) changes the math in ways gemma-web does not
/// implement, so such a file is refused rather than run with wrong logits.
fn rope_scaling(h: &GgufHeader, a: &str) -> Result<f32, Error> {
    let ty_key = format!("{a}.rope.scaling.type");
    match h.get(&ty_key) {
        None => {}
        Some(MetaValue::Str(t)) if t == "linear" || t == "none" => {}
        Some(MetaValue::Str(t)) => {
            return Err(Error::Unsupported(format!(
                "{ty_key} = {t:?}: gemma-web implements linear RoPE scaling only"
            )))
        }
        Some(v) => return Err(bad(format!("metadata key {ty_key} is not a string: {v:?}"))),
    }
    let mut factor = None;
    for key in [
        format!("{a}.rope.scaling.factor"),
        format!("{a}.rope.scale_linear"),
    ] {
        if let (None, Some(v)) = (factor, h.get(&key)) {
            factor = match v.as_f32() {
                // llama.cpp reads 0 as "no scaling".
                Some(x) if x == 0.0 => Some(1.0),
                Some(x) if x.is_finite() && x > 0.0 => Some(x),
                _ => {
                    return Err(bad(format!(
                        "metadata key {key} is not a positive number: {v:?}"
                    )))
                }
            };
        }
    }
    Ok(1.0 / factor.unwrap_or(1.0))
}

/// Refuses a file with a `{arch}.` key that would change the forward pass but that
/// [`GemmaConfig::from_header`] does not read for this architecture: running it would give wrong
/// logits without any error. Any unknown `rope.*` or `attention.*` key counts as such, and so do
/// the scaling and mixture-of-experts keys llama.cpp defines for other architectures.
fn refuse_unread_keys(h: &GgufHeader, arch: Arch, head_dim: u32) -> Result<(), Error> {
    const ALWAYS_READ: &[&str] = &[
        "context_length",
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.key_length",
        "attention.value_length",
        "attention.layer_norm_rms_epsilon",
        "rope.freq_base",
        "rope.scaling.type",
        "rope.scaling.factor",
        "rope.scale_linear",
        // Informational for linear scaling (the context the model was trained with before it).
        "rope.scaling.original_context_length",
        "rope.scaling.finetuned",
    ];
    let read_by_arch: &[&str] = match arch {
        Arch::Gemma => &[],
        Arch::Gemma2 => &[
            "attention.sliding_window",
            "attn_logit_softcapping",
            "final_logit_softcapping",
        ],
        Arch::Gemma3 => &[
            "attention.sliding_window",
            "attention.sliding_window_pattern",
            "attn_logit_softcapping",
            "final_logit_softcapping",
            "rope.local_freq_base",
        ],
    };
    const OTHER_MATH: &[&str] = &[
        "attn_logit_softcapping",
        "final_logit_softcapping",
        "expert_count",
        "expert_used_count",
        "embedding_scale",
        "logit_scale",
        "residual_scale",
        "attention.scale",
    ];
    let prefix = format!("{}.", arch.name());
    for (key, value) in &h.metadata {
        let Some(k) = key.strip_prefix(&prefix) else {
            continue;
        };
        if ALWAYS_READ.contains(&k) || read_by_arch.contains(&k) {
            continue;
        }
        let harmless = match k {
            // Rotating every dimension is what RoPE here does.
            "rope.dimension_count" => value.as_u32() == Some(head_dim),
            "rope.scaling.attn_factor" => value.as_f32() == Some(1.0),
            "attention.causal" => matches!(value, MetaValue::Bool(true)),
            // A cap or expert count of 0 means none.
            "attn_logit_softcapping"
            | "final_logit_softcapping"
            | "expert_count"
            | "expert_used_count" => value.as_f32() == Some(0.0),
            _ => {
                !(k.starts_with("rope.") || k.starts_with("attention.") || OTHER_MATH.contains(&k))
            }
        };
        if !harmless {
            return Err(Error::Unsupported(format!(
                "metadata key {key} = {value:?} changes the model's math, and gemma-web does not \
                 implement it for {arch}: running it would give wrong outputs"
            )));
        }
    }
    Ok(())
}

/// What a tensor is for: decides which types are allowed (and, in the random writer, its type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorRole {
    Embedding,
    Norm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnGate,
    FfnUp,
    FfnDown,
}

/// Checks that every tensor the architecture needs is present with exactly the expected dims and a
/// type we can run: norm weights F32, matrices any [`GgmlType`]. The error names the tensor.
pub fn check_inventory(h: &GgufHeader, cfg: &GemmaConfig) -> Result<(), Error> {
    for (name, dims, role) in cfg.expected_tensors() {
        let t = h
            .tensor(&name)
            .ok_or_else(|| bad(format!("tensor {name} is missing")))?;
        if t.dims != dims {
            return Err(bad(format!(
                "tensor {name} has dims {:?}, expected {dims:?} ({} {})",
                t.dims, cfg.arch, "ggml order: row length first"
            )));
        }
        if role == TensorRole::Norm && t.ty != GgmlType::F32 {
            return Err(Error::Unsupported(format!(
                "tensor {name} is {}; norm weights must be F32",
                t.ty
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
