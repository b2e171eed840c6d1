//! Random-weight Gemma model files for tests, benchmarks and `gemma-web random-model`: the
//! hyper-parameters, tensor table and metadata llama.cpp's converter writes for each architecture,
//! with random weights and a Gemma-like tokenizer vocabulary, written by the generic GGUF writer.

use std::io::Write;

use crate::gguf::writer::{header_bytes, random_blocks, write_gguf, Rng, TensorDecl};
use crate::gguf::{GgmlType, MetaValue, DEFAULT_ALIGNMENT};
use crate::model::config::{Arch, GemmaConfig, TensorRole};
use crate::Error;

/// Quant types per tensor role (norms are always F32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantTypes {
    pub embedding: GgmlType,
    pub attn_q: GgmlType,
    pub attn_k: GgmlType,
    pub attn_v: GgmlType,
    pub attn_output: GgmlType,
    pub ffn_gate: GgmlType,
    pub ffn_up: GgmlType,
    pub ffn_down: GgmlType,
}

impl QuantTypes {
    /// Every matrix of one type.
    pub fn all(ty: GgmlType) -> Self {
        QuantTypes {
            embedding: ty,
            attn_q: ty,
            attn_k: ty,
            attn_v: ty,
            attn_output: ty,
            ffn_gate: ty,
            ffn_up: ty,
            ffn_down: ty,
        }
    }

    /// What llama.cpp's Q4_K_M gives a model whose widths are multiples of 256: Q4_K, with Q6_K for
    /// the (tied) embedding, attn_v and ffn_down.
    pub fn q4_k_m() -> Self {
        QuantTypes {
            embedding: GgmlType::Q6K,
            attn_v: GgmlType::Q6K,
            ffn_down: GgmlType::Q6K,
            ..Self::all(GgmlType::Q4K)
        }
    }

    /// The mix of the real Gemma 3 270M Q4_K_M file (640 is not a multiple of 256, so most matrices
    /// fall back to 32-weight blocks).
    pub fn gemma3_270m() -> Self {
        QuantTypes {
            embedding: GgmlType::Q8_0,
            attn_q: GgmlType::Q5_0,
            attn_k: GgmlType::Q5_0,
            attn_v: GgmlType::Q8_0,
            attn_output: GgmlType::Q4K,
            ffn_gate: GgmlType::Q5_0,
            ffn_up: GgmlType::Q5_0,
            ffn_down: GgmlType::Q6K,
        }
    }

    pub fn for_role(&self, role: TensorRole) -> GgmlType {
        match role {
            TensorRole::Embedding => self.embedding,
            TensorRole::Norm => GgmlType::F32,
            TensorRole::AttnQ => self.attn_q,
            TensorRole::AttnK => self.attn_k,
            TensorRole::AttnV => self.attn_v,
            TensorRole::AttnOutput => self.attn_output,
            TensorRole::FfnGate => self.ffn_gate,
            TensorRole::FfnUp => self.ffn_up,
            TensorRole::FfnDown => self.ffn_down,
        }
    }
}

/// Shape, hyper-parameters and quant types of a random-weight Gemma model file.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomGemmaSpec {
    pub arch: Arch,
    pub n_layers: u32,
    pub d_model: u32,
    pub ffn: u32,
    pub n_heads: u32,
    pub n_kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub context_len: u32,
    pub eps: f32,
    /// `rope.freq_base`: written for Gemma 3 only (llama.cpp writes none for Gemma 1/2).
    pub rope_base: f32,
    /// Linear RoPE scaling factor of the global layers (`rope.scaling.type` linear and
    /// `rope.scaling.factor`, as in Gemma 3 4B, 12B and 27B: 8).
    pub rope_scaling: Option<f32>,
    /// Gemma 2/3.
    pub sliding_window: Option<u32>,
    /// Gemma 2.
    pub attn_softcap: Option<f32>,
    /// Gemma 2.
    pub final_softcap: Option<f32>,
    pub types: QuantTypes,
    pub seed: u64,
    /// Mean |w| of the matrices.
    pub weight_scale: f32,
}

impl RandomGemmaSpec {
    /// A few-MB model for tests: every width a multiple of 256 so K-quants fit; Gemma 3 gets 6
    /// layers so that layer 5 is global; a window of 16 so short prompts already slide.
    pub fn tiny(arch: Arch) -> Self {
        RandomGemmaSpec {
            arch,
            n_layers: if arch == Arch::Gemma3 { 6 } else { 4 },
            d_model: 256,
            ffn: 512,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            vocab: 512,
            context_len: 512,
            eps: 1e-6,
            rope_base: if arch == Arch::Gemma3 {
                1_000_000.0
            } else {
                10_000.0
            },
            rope_scaling: None,
            sliding_window: (arch != Arch::Gemma).then_some(16),
            attn_softcap: (arch == Arch::Gemma2).then_some(50.0),
            final_softcap: (arch == Arch::Gemma2).then_some(30.0),
            types: QuantTypes::gemma3_270m(),
            seed: 1,
            weight_scale: 0.05,
        }
    }

    /// Gemma 1 2B (HF config), Q4_K_M-like types.
    pub fn gemma_2b() -> Self {
        RandomGemmaSpec {
            arch: Arch::Gemma,
            n_layers: 18,
            d_model: 2048,
            ffn: 16384,
            n_heads: 8,
            n_kv_heads: 1,
            head_dim: 256,
            vocab: 256_000,
            context_len: 8192,
            eps: 1e-6,
            rope_base: 10_000.0,
            rope_scaling: None,
            sliding_window: None,
            attn_softcap: None,
            final_softcap: None,
            types: QuantTypes::q4_k_m(),
            seed: 1,
            weight_scale: 0.03,
        }
    }

    /// Gemma 2 2B (HF config), Q4_K_M-like types.
    pub fn gemma2_2b() -> Self {
        RandomGemmaSpec {
            arch: Arch::Gemma2,
            n_layers: 26,
            d_model: 2304,
            ffn: 9216,
            n_heads: 8,
            n_kv_heads: 4,
            sliding_window: Some(4096),
            attn_softcap: Some(50.0),
            final_softcap: Some(30.0),
            ..Self::gemma_2b()
        }
    }

    /// Gemma 3 270M, with the types of the real Q4_K_M file.
    pub fn gemma3_270m() -> Self {
        RandomGemmaSpec {
            arch: Arch::Gemma3,
            n_layers: 18,
            d_model: 640,
            ffn: 2048,
            n_heads: 4,
            n_kv_heads: 1,
            head_dim: 256,
            vocab: 262_144,
            context_len: 32_768,
            eps: 1e-6,
            rope_base: 1_000_000.0,
            rope_scaling: None,
            sliding_window: Some(512),
            attn_softcap: None,
            final_softcap: None,
            types: QuantTypes::gemma3_270m(),
            seed: 1,
            weight_scale: 0.03,
        }
    }

    /// Gemma 3 1B (HF config): 1152 is not a multiple of 256, so 32-weight blocks where rows are 1152.
    pub fn gemma3_1b() -> Self {
        RandomGemmaSpec {
            n_layers: 26,
            d_model: 1152,
            ffn: 6912,
            ..Self::gemma3_270m()
        }
    }

    /// Presets by name: `tiny` (any arch), `270m` and `1b` (gemma3), `2b` (gemma, gemma2).
    pub fn preset(arch: Arch, name: &str) -> Result<Self, Error> {
        match (arch, name) {
            (_, "tiny") => Ok(Self::tiny(arch)),
            (Arch::Gemma, "2b") => Ok(Self::gemma_2b()),
            (Arch::Gemma2, "2b") => Ok(Self::gemma2_2b()),
            (Arch::Gemma3, "270m") => Ok(Self::gemma3_270m()),
            (Arch::Gemma3, "1b") => Ok(Self::gemma3_1b()),
            _ => Err(Error::Unsupported(format!(
                "no preset {name:?} for {arch}: tiny for all, 2b for gemma and gemma2, 270m and 1b for gemma3"
            ))),
        }
    }

    /// The config a reader should derive from this file.
    pub fn config(&self) -> GemmaConfig {
        let sliding = self.sliding_window.filter(|_| self.arch != Arch::Gemma);
        GemmaConfig {
            arch: self.arch,
            n_layers: self.n_layers,
            d_model: self.d_model,
            ffn: self.ffn,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim,
            eps: self.eps,
            rope_base_global: if self.arch == Arch::Gemma3 {
                self.rope_base
            } else {
                10_000.0
            },
            rope_base_local: 10_000.0,
            rope_scale_global: 1.0 / self.rope_scaling.unwrap_or(1.0),
            sliding_window: sliding,
            sliding_pattern: match self.arch {
                Arch::Gemma => 1,
                Arch::Gemma2 => 2,
                Arch::Gemma3 => 6,
            },
            attn_softcap: self.attn_softcap.filter(|_| self.arch != Arch::Gemma),
            final_softcap: self.final_softcap.filter(|_| self.arch != Arch::Gemma),
            query_scale: 1.0 / (self.head_dim as f32).sqrt(),
            context_len: self.context_len,
            vocab: self.vocab,
        }
    }

    /// Metadata as llama.cpp's converter writes it for this architecture, plus a tokenizer vocabulary.
    pub fn metadata(&self) -> Result<Vec<(String, MetaValue)>, Error> {
        use MetaValue as M;
        let a = self.arch.name();
        let mut m: Vec<(String, MetaValue)> = vec![
            ("general.architecture".into(), M::Str(a.into())),
            ("general.type".into(), M::Str("model".into())),
            (
                "general.name".into(),
                M::Str(format!("random {a} seed {}", self.seed)),
            ),
            ("general.quantization_version".into(), M::U32(2)),
        ];
        let mut k = |key: &str, v: MetaValue| m.push((format!("{a}.{key}"), v));
        k("context_length", M::U32(self.context_len));
        k("embedding_length", M::U32(self.d_model));
        k("block_count", M::U32(self.n_layers));
        k("feed_forward_length", M::U32(self.ffn));
        k("attention.head_count", M::U32(self.n_heads));
        k("attention.head_count_kv", M::U32(self.n_kv_heads));
        k("attention.key_length", M::U32(self.head_dim));
        k("attention.value_length", M::U32(self.head_dim));
        k("attention.layer_norm_rms_epsilon", M::F32(self.eps));
        if let Some(f) = self.rope_scaling {
            k("rope.scaling.type", M::Str("linear".into()));
            k("rope.scaling.factor", M::F32(f));
        }
        match self.arch {
            Arch::Gemma => {}
            Arch::Gemma2 => {
                if let Some(w) = self.sliding_window {
                    k("attention.sliding_window", M::U32(w));
                }
                // llama.cpp always writes both caps for gemma2; 0 means none.
                k(
                    "attn_logit_softcapping",
                    M::F32(self.attn_softcap.unwrap_or(0.0)),
                );
                k(
                    "final_logit_softcapping",
                    M::F32(self.final_softcap.unwrap_or(0.0)),
                );
            }
            Arch::Gemma3 => {
                k("rope.freq_base", M::F32(self.rope_base));
                if let Some(w) = self.sliding_window {
                    k("attention.sliding_window", M::U32(w));
                }
                if let Some(c) = self.attn_softcap {
                    k("attn_logit_softcapping", M::F32(c));
                }
                if let Some(c) = self.final_softcap {
                    k("final_logit_softcapping", M::F32(c));
                }
            }
        }
        let (tokens, scores, types) = tokenizer_vocab(self.vocab)?;
        m.extend([
            ("tokenizer.ggml.model".into(), M::Str("llama".into())),
            ("tokenizer.ggml.pre".into(), M::Str("default".into())),
            (
                "tokenizer.ggml.tokens".into(),
                M::Array(tokens.into_iter().map(M::Str).collect()),
            ),
            (
                "tokenizer.ggml.scores".into(),
                M::Array(scores.into_iter().map(M::F32).collect()),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                M::Array(types.into_iter().map(M::I32).collect()),
            ),
            ("tokenizer.ggml.bos_token_id".into(), M::U32(2)),
            ("tokenizer.ggml.eos_token_id".into(), M::U32(1)),
            ("tokenizer.ggml.unknown_token_id".into(), M::U32(3)),
            ("tokenizer.ggml.padding_token_id".into(), M::U32(0)),
            ("tokenizer.ggml.add_bos_token".into(), M::Bool(true)),
            ("tokenizer.ggml.add_eos_token".into(), M::Bool(false)),
            ("tokenizer.ggml.add_space_prefix".into(), M::Bool(false)),
        ]);
        Ok(m)
    }

    /// The tensor table (llama.cpp names, ggml dim order) with each tensor's role.
    pub fn tensors(&self) -> Result<Vec<(TensorDecl, TensorRole)>, Error> {
        let mut out = Vec::new();
        for (name, dims, role) in self.config().expected_tensors() {
            let d = TensorDecl {
                name,
                dims,
                ty: self.types.for_role(role),
            };
            if d.bytes().is_none() {
                return Err(Error::Unsupported(format!(
                    "{}: row length {} is not a multiple of the {} block ({})",
                    d.name,
                    d.dims[0],
                    d.ty,
                    d.ty.block_len()
                )));
            }
            out.push((d, role));
        }
        Ok(out)
    }
}

impl RandomGemmaSpec {
    /// The file's header bytes and total length, without generating any weights.
    pub fn header_bytes(&self) -> Result<(Vec<u8>, u64), Error> {
        let decls: Vec<TensorDecl> = self.tensors()?.into_iter().map(|(d, _)| d).collect();
        Ok(header_bytes(&self.metadata()?, &decls, DEFAULT_ALIGNMENT)?)
    }
}

/// Writes a random-weight model, streaming (nothing larger than a 1 MiB chunk is held in memory).
/// Returns the file length.
pub fn write_random_gemma<W: Write>(spec: &RandomGemmaSpec, out: W) -> Result<u64, Error> {
    let metadata = spec.metadata()?;
    let tensors = spec.tensors()?;
    let decls: Vec<TensorDecl> = tensors.iter().map(|(d, _)| d.clone()).collect();
    let mut chunk = Vec::new();
    let len = write_gguf(out, &metadata, &decls, DEFAULT_ALIGNMENT, |i, d, w| {
        let role = tensors[i].1;
        // Each tensor's data depends only on the seed and its name, not on the tensors before it.
        let name_hash = d.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        });
        let mut rng = Rng::new(spec.seed ^ name_hash);
        let total = d.bytes().unwrap_or(0);
        let bb = d.ty.block_bytes();
        let per_chunk = ((1u64 << 20) / bb).max(1) * bb;
        let mut done = 0u64;
        while done < total {
            let n = per_chunk.min(total - done) as usize;
            chunk.resize(n, 0);
            if role == TensorRole::Norm {
                // Gemma's GGUF norm weights already contain the +1: values near 1.
                for w in chunk.chunks_exact_mut(4) {
                    w.copy_from_slice(&(0.9 + 0.2 * rng.f32()).to_le_bytes());
                }
            } else {
                random_blocks(d.ty, spec.weight_scale, &mut rng, &mut chunk);
            }
            w.write_all(&chunk)?;
            done += n as u64;
        }
        Ok(())
    })?;
    Ok(len)
}

/// A random-weight model in memory (tiny models in tests).
pub fn random_gemma_bytes(spec: &RandomGemmaSpec) -> Result<Vec<u8>, Error> {
    let mut v = Vec::new();
    write_random_gemma(spec, &mut v)?;
    Ok(v)
}

/// SentencePiece token types as GGUF stores them.
pub const TOKEN_NORMAL: i32 = 1;
pub const TOKEN_CONTROL: i32 = 3;
pub const TOKEN_USER_DEFINED: i32 = 4;
pub const TOKEN_BYTE: i32 = 6;

/// A Gemma-like vocabulary of exactly `vocab` pieces: (tokens, scores, token types).
///
/// `<pad>`=0, `<eos>`=1, `<bos>`=2, `<unk>`=3 always. With `vocab >= 1024` the layout follows the
/// real Gemma files: `<mask>`=4, `<unused..>` controls, `<start_of_turn>`=105, `<end_of_turn>`=106,
/// `"\n"`=107 and `"\n\n"`=108 user-defined, more user-defined up to 237, byte tokens `<0x00>`..`<0xFF>`
/// at 238..=493, then normal pieces. Smaller vocabularies put `<start_of_turn>`=4,
/// `<end_of_turn>`=5, `"\n"`=6, bytes at 7..=262, then normal pieces. Normal pieces are single
/// characters, `▁`-prefixed word prefixes (so that every piece splits into two others, which the
/// tokenizer's score-derived merges need) and letter combinations, scored -0, -1, -2, ... in order;
/// control and user-defined pieces score -1000 and byte pieces 0, as in the real files.
pub fn tokenizer_vocab(vocab: u32) -> Result<(Vec<String>, Vec<f32>, Vec<i32>), Error> {
    let n = vocab as usize;
    let mut tokens: Vec<String> = Vec::with_capacity(n);
    let mut types: Vec<i32> = Vec::with_capacity(n);
    let mut scores: Vec<f32> = Vec::with_capacity(n);
    let mut push = |t: String, ty: i32, s: f32, tokens: &mut Vec<String>| {
        tokens.push(t);
        types.push(ty);
        scores.push(s);
    };
    for t in ["<pad>", "<eos>", "<bos>", "<unk>"] {
        push(t.into(), TOKEN_CONTROL, -1000.0, &mut tokens);
    }
    if n >= 1024 {
        push("<mask>".into(), TOKEN_CONTROL, -1000.0, &mut tokens);
        for i in 0..100 {
            push(format!("<unused{i}>"), TOKEN_CONTROL, -1000.0, &mut tokens);
        }
        push(
            "<start_of_turn>".into(),
            TOKEN_CONTROL,
            -1000.0,
            &mut tokens,
        );
        push("<end_of_turn>".into(), TOKEN_CONTROL, -1000.0, &mut tokens);
        push("\n".into(), TOKEN_USER_DEFINED, -1000.0, &mut tokens);
        push("\n\n".into(), TOKEN_USER_DEFINED, -1000.0, &mut tokens);
        let mut i = 0;
        while tokens.len() < 238 {
            push(
                format!("<user{i}>"),
                TOKEN_USER_DEFINED,
                -1000.0,
                &mut tokens,
            );
            i += 1;
        }
    } else {
        push(
            "<start_of_turn>".into(),
            TOKEN_CONTROL,
            -1000.0,
            &mut tokens,
        );
        push("<end_of_turn>".into(), TOKEN_CONTROL, -1000.0, &mut tokens);
        push("\n".into(), TOKEN_USER_DEFINED, -1000.0, &mut tokens);
    }
    for b in 0..=255u8 {
        push(format!("<0x{b:02X}>"), TOKEN_BYTE, 0.0, &mut tokens);
    }
    let min = tokens.len() + 64;
    if n < min {
        return Err(Error::Unsupported(format!(
            "a vocabulary needs at least {min} tokens, not {vocab}"
        )));
    }
    let mut seen: std::collections::HashSet<String> = tokens.iter().cloned().collect();
    let mut rank = 0f32;
    let mut normal = |p: String, tokens: &mut Vec<String>| {
        if tokens.len() < n && seen.insert(p.clone()) {
            push(p, TOKEN_NORMAL, -rank, tokens);
            rank += 1.0;
        }
    };
    let lower: Vec<char> = ('a'..='z').collect();
    normal("▁".into(), &mut tokens);
    for c in lower
        .iter()
        .chain(&('A'..='Z').collect::<Vec<_>>())
        .chain(&('0'..='9').collect::<Vec<_>>())
    {
        normal(c.to_string(), &mut tokens);
    }
    for c in ".,!?'-:;()\"".chars() {
        normal(c.to_string(), &mut tokens);
    }
    for c in lower.iter().chain(&('A'..='Z').collect::<Vec<_>>()) {
        normal(format!("▁{c}"), &mut tokens);
    }
    const WORDS: &[&str] = &[
        "the", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "was", "he",
        "be", "at", "by", "this", "have", "from", "or", "one", "had", "not", "but", "what", "all",
        "were", "when", "we", "there", "can", "an", "your", "which", "their", "said", "if", "do",
        "will", "each", "about", "how", "up", "out", "them", "then", "she", "many", "some", "so",
        "these", "would", "other", "into", "has", "more", "her", "two", "like", "him", "see",
        "time", "could", "no", "make", "than", "first", "been", "its", "who", "now", "people",
        "my", "made", "over", "did", "down", "only", "way", "find", "use", "may", "water", "long",
        "little", "very", "after", "words", "called", "just", "where", "most", "know", "sea",
        "capital", "France", "Paris", "model", "user", "hello", "world", "haiku", "write", "about",
    ];
    for w in WORDS {
        let chars: Vec<char> = w.chars().collect();
        for k in 2..=chars.len() {
            normal(
                format!("▁{}", chars[..k].iter().collect::<String>()),
                &mut tokens,
            );
        }
    }
    // Letter combinations of growing length, bare and with ▁, until the vocabulary is full
    // (26^4 four-letter combinations alone exceed any real vocabulary).
    let mut len = 2;
    while tokens.len() < n && len <= 5 {
        let count = 26usize.pow(len);
        for i in 0..count {
            if tokens.len() >= n {
                break;
            }
            let mut s = String::new();
            let mut x = i;
            for _ in 0..len {
                s.insert(0, lower[x % 26]);
                x /= 26;
            }
            normal(format!("▁{s}"), &mut tokens);
            normal(s, &mut tokens);
        }
        len += 1;
    }
    if tokens.len() != n {
        return Err(Error::Unsupported(format!(
            "cannot make a vocabulary of {vocab} tokens"
        )));
    }
    Ok((tokens, scores, types))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_arch = "wasm32"))]
    #[test]
    fn random_gemma_is_deterministic_and_seeded() {
        use crate::gguf::parse_header;
        use crate::gguf::tests::{compare_with_candle, complete};
        let spec = RandomGemmaSpec::tiny(Arch::Gemma2);
        let a = random_gemma_bytes(&spec).unwrap();
        assert_eq!(a, random_gemma_bytes(&spec).unwrap());
        let b = random_gemma_bytes(&RandomGemmaSpec {
            seed: 2,
            ..spec.clone()
        })
        .unwrap();
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
        // candle reads every tensor of it, and the norms are near 1.
        let h = complete(&a);
        let c = candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(&a))
            .unwrap();
        compare_with_candle(&h, &c);
        let n = c
            .tensor(
                &mut std::io::Cursor::new(&a),
                "blk.1.post_ffw_norm.weight",
                &candle_core::Device::Cpu,
            )
            .unwrap();
        let w: Vec<f32> = n
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(w.iter().all(|x| (0.85..=1.15).contains(x)));
        // The whole file is header + tensors, so a truncated copy is rejected.
        assert!(parse_header(&a, a.len() as u64 - 1).is_err());
    }

    #[test]
    fn vocab_layouts() {
        for n in [512u32, 4096, 262_144] {
            let (t, s, ty) = tokenizer_vocab(n).unwrap();
            assert_eq!(
                (t.len(), s.len(), ty.len()),
                (n as usize, n as usize, n as usize)
            );
            let set: std::collections::HashSet<&String> = t.iter().collect();
            assert_eq!(set.len(), t.len(), "pieces are unique");
            assert_eq!(&t[..4], &["<pad>", "<eos>", "<bos>", "<unk>"]);
            let sot = t.iter().position(|x| x == "<start_of_turn>").unwrap();
            assert_eq!(t[sot + 1], "<end_of_turn>");
            assert_eq!(ty[sot], TOKEN_CONTROL);
            if n >= 1024 {
                assert_eq!(sot, 105);
            }
            let b0 = t.iter().position(|x| x == "<0x00>").unwrap();
            for i in 0..256 {
                assert_eq!(t[b0 + i], format!("<0x{i:02X}>"));
                assert_eq!(ty[b0 + i], TOKEN_BYTE);
            }
            // Every normal piece longer than one char splits into two pieces of the vocabulary.
            for (p, _) in t.iter().zip(&ty).filter(|(_, &k)| k == TOKEN_NORMAL) {
                let chars: Vec<(usize, char)> = p.char_indices().collect();
                if chars.len() > 1 {
                    assert!(
                        chars[1..]
                            .iter()
                            .any(|&(i, _)| set.contains(&p[..i].to_string())
                                && set.contains(&p[i..].to_string())),
                        "{p}"
                    );
                }
            }
        }
        assert!(tokenizer_vocab(300).is_err());
    }
}
