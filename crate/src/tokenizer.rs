//! Gemma's tokenizer, rebuilt exactly from the SentencePiece vocabulary a GGUF embeds.
//!
//! A GGUF carries pieces, scores and token types but no BPE merges. Google's `tokenizer.json` is a
//! `tokenizers` BPE whose merges Hugging Face's converter derived from the SentencePiece scores
//! (`SentencePieceExtractor` in transformers' `convert_slow_tokenizer.py`); deriving them the same way
//! here gives the same tokenizer, merge for merge (checked against Google's file in
//! `tests/tokenizer_golden.rs`). Building it takes well under a second, so nothing extra ships with the
//! model.

use std::collections::HashMap;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::processors::template::{SpecialToken, TemplateProcessing};
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};
use crate::gguf::{GgufHeader, MetaValue};

/// SentencePiece's visible space, U+2581 LOWER ONE EIGHTH BLOCK.
const SPACE_MARK: &str = "\u{2581}";

/// Token types as GGUF stores them (`tokenizer.ggml.token_type`, SentencePiece's piece types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    /// The GGUF / SentencePiece code (1..=6).
    pub fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }

    /// Matched verbatim in the raw text before the BPE runs, as Google's tokenizer.json does.
    fn is_added(self) -> bool {
        matches!(
            self,
            TokenType::Unknown | TokenType::Control | TokenType::UserDefined
        )
    }

    fn is_special(self) -> bool {
        matches!(self, TokenType::Unknown | TokenType::Control)
    }
}

/// Ids with a fixed role, usually from `tokenizer.ggml.*_token_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    pub bos: u32,
    pub eos: u32,
    /// The BPE's unknown token; `None` looks up the piece `<unk>`.
    pub unk: Option<u32>,
}

/// Who speaks a chat turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Model,
    System,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatTurn {
    pub role: Role,
    pub text: String,
}

impl ChatTurn {
    pub fn new(role: Role, text: impl Into<String>) -> Self {
        ChatTurn {
            role,
            text: text.into(),
        }
    }
}

/// An exact Gemma tokenizer (Gemma 1, 2 and 3 share the recipe).
pub struct GemmaTokenizer {
    inner: Tokenizer,
    /// All pieces back to back; piece `i` is `pieces[piece_end[i-1]..piece_end[i]]`. One allocation
    /// instead of 262,144 keeps the browser heap small.
    pieces: String,
    piece_end: Vec<u32>,
    bos: u32,
    eos: u32,
    stops: Vec<u32>,
    merges: usize,
}

impl std::fmt::Debug for GemmaTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GemmaTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("merges", &self.merges)
            .field("bos", &self.bos)
            .field("stops", &self.stops)
            .finish()
    }
}

impl GemmaTokenizer {
    /// Builds the tokenizer from a GGUF header's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(header: &GgufHeader) -> Result<Self> {
        if let Some(model) = header.get("tokenizer.ggml.model") {
            match model.as_str() {
                Some("llama") => {}
                Some(other) => {
                    return Err(Error::Unsupported(format!(
                        "tokenizer.ggml.model is {other:?}; only SentencePiece (\"llama\") vocabularies are supported"
                    )))
                }
                None => return Err(bad("tokenizer.ggml.model is not a string")),
            }
        }
        // Gemma never adds a dummy prefix space; a file asking for one is not a Gemma tokenizer we know.
        if header
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(MetaValue::as_bool)
            == Some(true)
        {
            return Err(Error::Unsupported(
                "tokenizer.ggml.add_space_prefix = true (Gemma tokenizers add no prefix space)"
                    .into(),
            ));
        }

        let tokens = meta_array(header, "tokenizer.ggml.tokens")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("tokenizer.ggml.tokens[{i}] is not a string")))
            })
            .collect::<Result<Vec<_>>>()?;
        let scores = meta_array(header, "tokenizer.ggml.scores")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f32()
                    .ok_or_else(|| bad(format!("tokenizer.ggml.scores[{i}] is not a number")))
            })
            .collect::<Result<Vec<_>>>()?;
        let types = meta_array(header, "tokenizer.ggml.token_type")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64().and_then(TokenType::from_code).ok_or_else(|| {
                    bad(format!(
                        "tokenizer.ggml.token_type[{i}] is {v:?}, not a token type 1..=6"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let find = |piece: &str| tokens.iter().position(|t| t == piece);
        let id_key = |key: &str, piece: &str| -> Result<Option<u32>> {
            match header.get(key) {
                Some(v) => v
                    .as_u32()
                    .map(Some)
                    .ok_or_else(|| bad(format!("{key} is {v:?}, not a token id"))),
                None => Ok(find(piece).and_then(|i| u32::try_from(i).ok())),
            }
        };
        let bos = id_key("tokenizer.ggml.bos_token_id", "<bos>")?.ok_or_else(|| {
            bad("tokenizer.ggml.bos_token_id is missing and there is no <bos> piece")
        })?;
        let eos = id_key("tokenizer.ggml.eos_token_id", "<eos>")?.ok_or_else(|| {
            bad("tokenizer.ggml.eos_token_id is missing and there is no <eos> piece")
        })?;
        let unk = id_key("tokenizer.ggml.unknown_token_id", "<unk>")?;

        Self::from_vocab(tokens, scores, types, SpecialIds { bos, eos, unk })
    }

    /// Builds the tokenizer from plain vectors, one entry per token id, as a GGUF stores them.
    pub fn from_vocab(
        mut tokens: Vec<String>,
        scores: Vec<f32>,
        types: Vec<TokenType>,
        special: SpecialIds,
    ) -> Result<Self> {
        let n = tokens.len();
        if n == 0 {
            return Err(bad("tokenizer.ggml.tokens is empty"));
        }
        if u32::try_from(n).is_err() {
            return Err(bad(format!("tokenizer.ggml.tokens has {n} entries")));
        }
        if scores.len() != n {
            return Err(bad(format!(
                "tokenizer.ggml.scores has {} entries for {n} tokens",
                scores.len()
            )));
        }
        if types.len() != n {
            return Err(bad(format!(
                "tokenizer.ggml.token_type has {} entries for {n} tokens",
                types.len()
            )));
        }
        for (key, id) in [
            ("tokenizer.ggml.bos_token_id", Some(special.bos)),
            ("tokenizer.ggml.eos_token_id", Some(special.eos)),
            ("tokenizer.ggml.unknown_token_id", special.unk),
        ] {
            if let Some(id) = id {
                if id as usize >= n {
                    return Err(bad(format!(
                        "{key} = {id} is outside the vocabulary of {n} tokens"
                    )));
                }
            }
        }

        // llama.cpp's converter writes user-defined pieces with plain spaces where SentencePiece has
        // U+2581 (Gemma 3's runs of spaces, ids 138..=167); the BPE sees only U+2581, so undo it.
        for (piece, ty) in tokens.iter_mut().zip(&types) {
            if *ty == TokenType::UserDefined && piece.contains(' ') {
                *piece = piece.replace(' ', SPACE_MARK);
            }
        }

        let mut index: PieceIndex = HashMap::with_capacity_and_hasher(n, Default::default());
        for (id, piece) in tokens.iter().enumerate() {
            // `n` fits in u32 (checked above).
            if let Some(first) = index.insert(piece.as_str(), id as u32) {
                return Err(bad(format!(
                    "tokenizer.ggml.tokens has the piece {piece:?} twice (ids {first} and {id})"
                )));
            }
        }
        drop(index);

        let unk_piece = match special.unk {
            Some(id) => tokens.get(id as usize).cloned(),
            None => tokens.iter().find(|t| *t == "<unk>").cloned(),
        };
        let bos_piece = tokens[special.bos as usize].clone();
        let added = |special: bool| -> Vec<AddedToken> {
            tokens
                .iter()
                .zip(&types)
                .filter(|(_, ty)| ty.is_added() && ty.is_special() == special)
                .map(|(piece, _)| AddedToken::from(piece.clone(), special).normalized(false))
                .collect()
        };
        let (added_special, added_plain) = (added(true), added(false));
        let find = |piece: &str| tokens.iter().position(|t| t == piece).map(|i| i as u32);
        let mut stops = vec![special.eos];
        // The chat models end a reply with <end_of_turn>; a file's eos id may point elsewhere.
        for piece in ["<eos>", "<end_of_turn>"] {
            if let Some(id) = find(piece) {
                if !stops.contains(&id) {
                    stops.push(id);
                }
            }
        }
        let mut piece_end = Vec::with_capacity(n);
        let mut pieces = String::with_capacity(tokens.iter().map(String::len).sum());
        for piece in &tokens {
            pieces.push_str(piece);
            let end = u32::try_from(pieces.len())
                .map_err(|_| bad("tokenizer.ggml.tokens holds more than 4 GiB of text"))?;
            piece_end.push(end);
        }

        let merge_ids = derive_merges(&tokens, &scores, &types);
        let merge_count = merge_ids.len();
        // Ids in `merge_ids` index `tokens` (derive_merges only returns ids it took from there).
        let merges: Vec<(String, String)> = merge_ids
            .iter()
            .map(|&(l, r)| (tokens[l as usize].clone(), tokens[r as usize].clone()))
            .collect();
        drop(merge_ids);
        // The pieces move into the BPE's vocabulary: the browser keeps the high-water mark of its heap.
        let vocab: Vocab = tokens
            .into_iter()
            .enumerate()
            .map(|(id, piece)| (piece, id as u32))
            .collect();
        let mut bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .byte_fallback(true)
            .fuse_unk(true);
        if let Some(unk) = unk_piece {
            bpe = bpe.unk_token(unk);
        }
        let bpe = bpe
            .build()
            .map_err(|e| bad(format!("building the BPE: {e}")))?;

        let mut inner = Tokenizer::new(bpe);
        inner.with_normalizer(Some(
            Replace::new(" ", SPACE_MARK).map_err(|e| bad(format!("normalizer: {e}")))?,
        ));
        let to_space = Replace::new(SPACE_MARK, " ").map_err(|e| bad(format!("decoder: {e}")))?;
        inner.with_decoder(Some(DecoderSequence::new(vec![
            DecoderWrapper::Replace(to_space),
            DecoderWrapper::ByteFallback(ByteFallback::new()),
            DecoderWrapper::Fuse(Fuse::new()),
        ])));
        let bos_token = SpecialToken::new("BOS".into(), vec![special.bos], vec![bos_piece])
            .map_err(|e| bad(format!("post-processor: {e}")))?;
        let post = TemplateProcessing::builder()
            .try_single("BOS $A")
            .and_then(|b| b.try_pair("BOS $A BOS:1 $B:1"))
            .map_err(|e| bad(format!("post-processor: {e}")))?
            .special_tokens(vec![bos_token])
            .build()
            .map_err(|e| bad(format!("post-processor: {e}")))?;
        inner.with_post_processor(Some(post));
        inner.add_special_tokens(&added_special);
        inner.add_tokens(&added_plain);

        Ok(GemmaTokenizer {
            inner,
            pieces,
            piece_end,
            bos: special.bos,
            eos: special.eos,
            stops,
            merges: merge_count,
        })
    }

    /// Token ids of `text`, with BOS first if `add_bos`. Control pieces written in the text (such as
    /// `<start_of_turn>`) become their single ids, as in Google's tokenizer.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, add_bos)
            .map_err(|e| bad(format!("tokenizer failed on the input: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Ids of a chat prompt (see [`format_chat`]), BOS first.
    pub fn encode_chat(&self, turns: &[ChatTurn], add_generation_prompt: bool) -> Result<Vec<u32>> {
        self.encode(&format_chat(turns, add_generation_prompt), true)
    }

    /// The text of `ids`. Every token is rendered, control tokens included (`<bos>`, `<end_of_turn>`),
    /// so `decode(encode(s, false)) == s`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, false)
            .map_err(|e| bad(format!("decoding: {e}")))
    }

    /// The vocabulary piece of `id` (with U+2581 for spaces, `<0x41>` for byte tokens).
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        let i = id as usize;
        let end = *self.piece_end.get(i)? as usize;
        let start = match i.checked_sub(1) {
            Some(prev) => *self.piece_end.get(prev)? as usize,
            None => 0,
        };
        self.pieces.get(start..end)
    }

    /// The id of a vocabulary piece.
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.inner.token_to_id(piece)
    }

    /// Number of token ids (262,144 for Gemma 3).
    pub fn vocab_size(&self) -> usize {
        self.piece_end.len()
    }

    /// Number of BPE merges derived from the scores (514,906 for Gemma 3).
    pub fn merge_count(&self) -> usize {
        self.merges
    }

    pub fn bos_id(&self) -> u32 {
        self.bos
    }

    pub fn eos_id(&self) -> u32 {
        self.eos
    }

    /// Whether generation should stop at `id`: the file's EOS, `<eos>` and `<end_of_turn>`.
    pub fn is_stop(&self, id: u32) -> bool {
        self.stops.contains(&id)
    }

    pub fn stop_ids(&self) -> &[u32] {
        &self.stops
    }

    /// The underlying `tokenizers` object (for cross-checks against other tokenizer.json files).
    pub fn hf_tokenizer(&self) -> &Tokenizer {
        &self.inner
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= self.vocab_size()) {
            Some(id) => Err(bad(format!(
                "token id {id} is outside the vocabulary of {} tokens",
                self.vocab_size()
            ))),
            None => Ok(()),
        }
    }
}

/// The BPE merges Hugging Face's converter derives from SentencePiece scores, in rank order, as
/// (left id, right id).
///
/// Every split of a piece into two pieces of the vocabulary is a merge; the splits of one piece are
/// ordered by (left id, right id); then all merges are stably sorted by the merged piece's score,
/// descending, then by the left and the right part's length in characters, descending. Control and
/// user-defined pieces count as score 0 (their SentencePiece score; llama.cpp writes -1000).
/// Duplicate pieces are the caller's problem (the later one wins the lookup).
pub fn derive_merges<S: AsRef<str>>(
    pieces: &[S],
    scores: &[f32],
    types: &[TokenType],
) -> Vec<(u32, u32)> {
    let n = pieces.len().min(scores.len()).min(types.len());
    let pieces = &pieces[..n];
    let mut index: PieceIndex = HashMap::with_capacity_and_hasher(n, Default::default());
    for (id, piece) in pieces.iter().enumerate() {
        index.insert(piece.as_ref(), id as u32);
    }
    let char_len: Vec<u32> = pieces
        .iter()
        .map(|p| p.as_ref().chars().count() as u32)
        .collect();
    // Sort keys, ascending = the converter's descending order. Scores become order-preserving
    // integers: -0.0 equals 0.0 as in Python, and NaN (never in a sane file) counts as -inf.
    let score_key: Vec<u32> = (0..n)
        .map(|i| {
            let s = match types[i] {
                TokenType::Control | TokenType::UserDefined => 0.0,
                _ if scores[i].is_nan() => f32::NEG_INFINITY,
                _ => scores[i] + 0.0,
            };
            let bits = s.to_bits();
            let ascending = if bits >> 31 == 1 {
                !bits
            } else {
                bits | 1 << 31
            };
            !ascending
        })
        .collect();

    struct Merge {
        key: (u32, u32, u32),
        left: u32,
        right: u32,
    }
    let mut merges: Vec<Merge> = Vec::new();
    let mut local: Vec<(u32, u32)> = Vec::new();
    for (merged, piece) in pieces.iter().enumerate() {
        let piece = piece.as_ref();
        local.clear();
        for (at, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(at);
            if let Some(&left) = index.get(l) {
                if let Some(&right) = index.get(r) {
                    local.push((left, right));
                }
            }
        }
        // Distinct split points give distinct left pieces, so an unstable sort is exact.
        local.sort_unstable();
        // Ids from `index` are < n.
        merges.extend(local.iter().map(|&(left, right)| Merge {
            key: (
                score_key[merged],
                !char_len[left as usize],
                !char_len[right as usize],
            ),
            left,
            right,
        }));
    }
    // Stable, like Python's sorted(): equal keys keep vocabulary order.
    merges.sort_by_key(|m| m.key);
    merges.into_iter().map(|m| (m.left, m.right)).collect()
}

/// Gemma's chat format (the same for Gemma 1, 2 and 3), without the leading BOS:
/// `<start_of_turn>user\n{text}<end_of_turn>\n<start_of_turn>model\n{text}<end_of_turn>\n`, then
/// `<start_of_turn>model\n` if `add_generation_prompt`. Texts are trimmed as Gemma's template does.
/// Gemma has no system role: as in Google's template, a system text goes, followed by a blank line,
/// in front of the next turn (a trailing one becomes a user turn of its own).
pub fn format_chat(turns: &[ChatTurn], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    let mut system: Option<String> = None;
    for turn in turns {
        let role = match turn.role {
            Role::System => {
                match &mut system {
                    Some(s) => {
                        s.push_str("\n\n");
                        s.push_str(&turn.text);
                    }
                    None => system = Some(turn.text.clone()),
                }
                continue;
            }
            Role::User => "user",
            Role::Model => "model",
        };
        out.push_str("<start_of_turn>");
        out.push_str(role);
        out.push('\n');
        if let Some(s) = system.take() {
            out.push_str(&s);
            out.push_str("\n\n");
        }
        out.push_str(template_trim(&turn.text));
        out.push_str("<end_of_turn>\n");
    }
    if let Some(s) = system {
        out.push_str("<start_of_turn>user\n");
        out.push_str(template_trim(&s));
        out.push_str("<end_of_turn>\n");
    }
    if add_generation_prompt {
        out.push_str("<start_of_turn>model\n");
    }
    out
}

/// Jinja's `trim` is Python's `str.strip()`, whose whitespace also includes U+001C..U+001F.
fn template_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Turns generated ids into text as they arrive, emitting only complete UTF-8.
///
/// Consecutive byte-fallback tokens (`<0xE4><0xB8><0xAD>` = "中") are held back until a non-byte
/// token or [`finish`](Self::finish) ends the run, then rendered exactly as [`GemmaTokenizer::decode`]
/// renders them (valid UTF-8 as text, otherwise one U+FFFD per byte). So the concatenated output
/// always equals `decode` of all ids. Check [`GemmaTokenizer::is_stop`] before pushing an id if the
/// stop token should not appear in the text.
#[derive(Clone, Debug, Default)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// The text that `id` completes (often empty).
    pub fn push(&mut self, tokenizer: &GemmaTokenizer, id: u32) -> Result<String> {
        let piece = tokenizer.id_to_piece(id).ok_or_else(|| {
            bad(format!(
                "token id {id} is outside the vocabulary of {} tokens",
                tokenizer.vocab_size()
            ))
        })?;
        if let Some(byte) = byte_token(piece) {
            self.pending.push(byte);
            return Ok(String::new());
        }
        let mut out = self.finish();
        out.push_str(&piece.replace(SPACE_MARK, " "));
        Ok(out)
    }

    /// Flushes held-back bytes (call at the end of generation).
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            return String::new();
        }
        match String::from_utf8(std::mem::take(&mut self.pending)) {
            Ok(s) => s,
            Err(e) => "\u{FFFD}".repeat(e.into_bytes().len()),
        }
    }
}

/// The byte of a `<0xHH>` piece, recognised the way `tokenizers`' ByteFallback decoder does.
fn byte_token(piece: &str) -> Option<u8> {
    if piece.len() == 6 && piece.starts_with("<0x") && piece.ends_with('>') {
        u8::from_str_radix(piece.get(3..5)?, 16).ok()
    } else {
        None
    }
}

/// Piece -> id. Deriving the merges looks up about two million substrings; FxHash (rustc's hasher)
/// does that several times faster than the default SipHash, and the pieces come from the model file,
/// not from an adversary on the network.
type PieceIndex<'a> = HashMap<&'a str, u32, rustc_hash::FxBuildHasher>;

fn meta_array<'a>(header: &'a GgufHeader, key: &str) -> Result<&'a [MetaValue]> {
    match header.get(key) {
        Some(MetaValue::Array(a)) => Ok(a),
        Some(_) => Err(bad(format!("{key} is not an array"))),
        None => Err(bad(format!("{key} is missing"))),
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::BadModel(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenType::{Byte, Control, Normal, UserDefined};

    const BYTES_AT: u32 = 8;

    /// A tiny Gemma-shaped vocabulary: control tokens, user-defined "\n" and a run of two spaces
    /// written with plain spaces (as llama.cpp writes them), all 256 byte tokens, then pieces whose
    /// scores make "▁hello" reachable by merges.
    fn tiny_vocab() -> (Vec<String>, Vec<f32>, Vec<TokenType>) {
        let mut v: Vec<(String, f32, TokenType)> = Vec::new();
        for p in [
            "<pad>",
            "<eos>",
            "<bos>",
            "<unk>",
            "<start_of_turn>",
            "<end_of_turn>",
        ] {
            v.push((p.into(), -1000.0, Control));
        }
        v.push(("\n".into(), -1000.0, UserDefined));
        v.push(("  ".into(), -1000.0, UserDefined));
        for b in 0..=255u8 {
            v.push((format!("<0x{b:02X}>"), 0.0, Byte));
        }
        for (p, s) in [
            ("▁", -1.0),
            ("h", -2.0),
            ("e", -2.0),
            ("l", -2.0),
            ("o", -2.0),
            ("he", -3.0),
            ("ll", -4.0),
            ("hell", -5.0),
            ("hello", -6.0),
            ("▁hello", -7.0),
        ] {
            v.push((p.into(), s, Normal));
        }
        (
            v.iter().map(|t| t.0.clone()).collect(),
            v.iter().map(|t| t.1).collect(),
            v.iter().map(|t| t.2).collect(),
        )
    }

    fn tiny() -> GemmaTokenizer {
        let (t, s, ty) = tiny_vocab();
        GemmaTokenizer::from_vocab(
            t,
            s,
            ty,
            SpecialIds {
                bos: 2,
                eos: 1,
                unk: Some(3),
            },
        )
        .expect("tiny vocabulary builds")
    }

    fn id(tok: &GemmaTokenizer, piece: &str) -> u32 {
        tok.piece_to_id(piece)
            .unwrap_or_else(|| panic!("{piece:?} not in vocab"))
    }

    #[test]
    fn merges_follow_the_converter_order() {
        // ids:          0    1    2    3    4    5     6     7      8     9     10    11
        let pieces = [
            "a", "b", "c", "x", "é", "ab", "bc", "abc", "éx", "xx", "ca", "cab",
        ];
        let scores = [
            -9.0, -9.0, -9.0, -9.0, -9.0, -1.0, -2.0, -0.5, -1.0, -1000.0, -3.0, -3.0,
        ];
        let mut types = vec![Normal; pieces.len()];
        types[9] = UserDefined;
        let want = vec![
            // "xx" is user-defined: its -1000 counts as 0, the best score here.
            (3, 3),
            // "abc" (-0.5): the longer left part first.
            (5, 2),
            (0, 6),
            // -1.0: "ab" and "éx" tie on lengths in characters ("é" is 2 bytes but 1 character),
            // so they keep vocabulary order.
            (0, 1),
            (4, 3),
            (1, 2),
            // -3.0: "ca"+"b" (left 2 chars), then "c"+"ab" before "c"+"a" (longer right part),
            // although "ca" precedes "cab" in the vocabulary.
            (10, 1),
            (2, 5),
            (2, 0),
        ];
        assert_eq!(derive_merges(&pieces, &scores, &types), want);
    }

    #[test]
    fn merge_scores_compare_like_python_floats() {
        // ids:          0    1    2     3     4     5     6
        let pieces = ["a", "b", "ab", "ba", "aa", "bb", "abb"];
        let scores = [0.0, 0.0, -0.0, 0.0, f32::NAN, f32::NEG_INFINITY, 1.0];
        let types = [Normal; 7];
        // "abb" (1.0) first; -0.0 and 0.0 tie, so "ab" then "ba" in vocabulary order; NaN (which
        // Python cannot sort) counts as -inf, tying with "bb".
        let want = vec![(2, 1), (0, 5), (0, 1), (1, 0), (0, 0), (1, 1)];
        assert_eq!(derive_merges(&pieces, &scores, &types), want);
        // Mismatched lengths use the common prefix instead of panicking.
        assert_eq!(derive_merges(&pieces, &scores[..3], &types), vec![(0, 1)]);
    }

    #[test]
    fn encodes_with_merges_and_leading_spaces() {
        let tok = tiny();
        let hello = id(&tok, "hello");
        let sp_hello = id(&tok, "▁hello");
        let two = 7; // user-defined "  ", stored with plain spaces
        assert_eq!(tok.id_to_piece(two), Some("▁▁"));
        assert_eq!(tok.encode("hello", false).unwrap(), vec![hello]);
        // No dummy prefix: only a real leading space gives "▁hello".
        assert_eq!(tok.encode(" hello", false).unwrap(), vec![sp_hello]);
        assert_eq!(
            tok.encode("hello hello", true).unwrap(),
            vec![2, hello, sp_hello]
        );
        // "▁▁" (score 0 as a user-defined piece) is the first merge, so it takes the spaces first.
        assert_eq!(
            tok.encode("hello  hello", false).unwrap(),
            vec![hello, two, hello]
        );
        assert_eq!(
            tok.encode("hello   hello", false).unwrap(),
            vec![hello, two, sp_hello]
        );
        assert_eq!(
            tok.encode("hello ", false).unwrap(),
            vec![hello, id(&tok, "▁")]
        );
        assert_eq!(tok.encode("", true).unwrap(), vec![2]);
        assert_eq!(tok.encode("", false).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn unknown_characters_fall_back_to_bytes() {
        let tok = tiny();
        let b = |x: u32| BYTES_AT + x;
        // "€" = E2 82 AC, "w" = 77: neither is a piece.
        assert_eq!(
            tok.encode("€w", false).unwrap(),
            vec![b(0xE2), b(0x82), b(0xAC), b(0x77)]
        );
        assert_eq!(tok.decode(&[b(0xE2), b(0x82), b(0xAC)]).unwrap(), "€");
        // A lone continuation byte is not text: one U+FFFD per byte, as tokenizers' ByteFallback.
        assert_eq!(tok.decode(&[b(0x82), b(0xAC)]).unwrap(), "\u{FFFD}\u{FFFD}");
    }

    #[test]
    fn control_tokens_are_not_split() {
        let tok = tiny();
        let hello = id(&tok, "hello");
        assert_eq!(
            tok.encode("<start_of_turn>hello<end_of_turn>\n", true)
                .unwrap(),
            vec![2, 4, hello, 5, 6]
        );
        // Only the exact piece is special; a prefix of it is ordinary text (bytes here).
        let partial = tok.encode("<start_of_turn", false).unwrap();
        assert_eq!(partial.len(), "<start_of_turn".len());
        assert!(!partial.contains(&4));
        assert_eq!(tok.decode(&partial).unwrap(), "<start_of_turn");
    }

    #[test]
    fn decode_inverts_encode() {
        let tok = tiny();
        for s in [
            "",
            "hello",
            " hello  hello\n\n",
            "héllo wörld €",
            "\t<bos>x<end_of_turn>\n",
            "   ",
            "<start_of_turn",
            "🙂 😶‍🌫️",
        ] {
            let ids = tok.encode(s, false).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), s, "{ids:?}");
        }
        let ids = tok.encode("hello", true).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), "<bos>hello");
    }

    #[test]
    fn decode_rejects_ids_outside_the_vocabulary() {
        let tok = tiny();
        let n = tok.vocab_size() as u32;
        assert!(matches!(tok.decode(&[2, n]), Err(Error::BadModel(_))));
        assert!(matches!(tok.decode(&[u32::MAX]), Err(Error::BadModel(_))));
        assert!(tok.id_to_piece(n).is_none());
        assert!(tok.id_to_piece(u32::MAX).is_none());
        assert!(StreamDecoder::new().push(&tok, n).is_err());
    }

    #[test]
    fn stream_decoder_emits_whole_characters_and_matches_decode() {
        let tok = tiny();
        let b = |x: u32| BYTES_AT + x;
        let hello = id(&tok, "hello");
        let sp_hello = id(&tok, "▁hello");
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(&tok, hello).unwrap(), "hello");
        assert_eq!(d.push(&tok, b(0xE2)).unwrap(), "");
        assert_eq!(d.push(&tok, b(0x82)).unwrap(), "");
        assert_eq!(d.push(&tok, b(0xAC)).unwrap(), "");
        assert_eq!(d.push(&tok, sp_hello).unwrap(), "€ hello");
        assert_eq!(d.push(&tok, b(0xF0)).unwrap(), "");
        assert_eq!(d.finish(), "\u{FFFD}");
        assert_eq!(d.finish(), "");

        // Any id sequence: the pieces of the stream concatenate to `decode`.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u32| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % u64::from(m)) as u32
        };
        let bytes = [
            0xE2, 0x82, 0xAC, 0xC3, 0xA9, 0xF0, 0x9F, 0x99, 0x82, 0xFF, 0x41,
        ];
        for _ in 0..300 {
            let len = next(12);
            let ids: Vec<u32> = (0..len)
                .map(|_| match next(3) {
                    0 => b(bytes[next(bytes.len() as u32) as usize]),
                    _ => next(tok.vocab_size() as u32),
                })
                .collect();
            let mut d = StreamDecoder::new();
            let mut text = String::new();
            for &i in &ids {
                text.push_str(&d.push(&tok, i).unwrap());
            }
            text.push_str(&d.finish());
            assert_eq!(text, tok.decode(&ids).unwrap(), "{ids:?}");
        }
    }

    #[test]
    fn stops_and_special_ids() {
        let tok = tiny();
        assert_eq!(tok.bos_id(), 2);
        assert_eq!(tok.eos_id(), 1);
        assert!(tok.is_stop(1));
        assert!(tok.is_stop(5)); // <end_of_turn>, found by its piece
        assert!(!tok.is_stop(2));
        assert!(!tok.is_stop(4));
        assert_eq!(tok.vocab_size(), 8 + 256 + 10);
    }

    #[test]
    fn bad_vocabularies_are_errors() {
        let ids = SpecialIds {
            bos: 2,
            eos: 1,
            unk: Some(3),
        };
        let build = |t: Vec<String>, s: Vec<f32>, ty: Vec<TokenType>, ids: SpecialIds| {
            GemmaTokenizer::from_vocab(t, s, ty, ids)
        };
        let (t, s, ty) = tiny_vocab();
        let mut short = s.clone();
        short.pop();
        let err = build(t.clone(), short, ty.clone(), ids).unwrap_err();
        assert!(err.to_string().contains("tokenizer.ggml.scores"), "{err}");
        let err = build(t.clone(), s.clone(), ty[1..].to_vec(), ids).unwrap_err();
        assert!(
            err.to_string().contains("tokenizer.ggml.token_type"),
            "{err}"
        );
        let far = SpecialIds {
            bos: t.len() as u32,
            ..ids
        };
        let err = build(t.clone(), s.clone(), ty.clone(), far).unwrap_err();
        assert!(err.to_string().contains("bos_token_id"), "{err}");
        let err = build(vec![], vec![], vec![], ids).unwrap_err();
        assert!(matches!(err, Error::BadModel(_)));
        // "  " (user-defined) becomes "▁▁": a normal "▁▁" piece would then appear twice.
        let (mut t2, mut s2, mut ty2) = (t.clone(), s.clone(), ty.clone());
        t2.push("▁▁".into());
        s2.push(-1.0);
        ty2.push(Normal);
        let err = build(t2, s2, ty2, ids).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        // Odd but harmless inputs build: empty and NaN-scored pieces, no <unk>.
        let (mut t3, mut s3, mut ty3) = (t, s, ty);
        t3.push(String::new());
        s3.push(f32::NAN);
        ty3.push(Normal);
        t3.push("zz".into());
        s3.push(f32::NAN);
        ty3.push(Control);
        let tok = build(t3, s3, ty3, SpecialIds { unk: None, ..ids }).unwrap();
        assert_eq!(
            tok.encode("zz", false).unwrap(),
            vec![tok.vocab_size() as u32 - 1]
        );
    }

    #[test]
    fn chat_format_matches_gemma_template() {
        let turns = [
            ChatTurn::new(Role::User, "Hi there  "),
            ChatTurn::new(Role::Model, "\nHello!"),
            ChatTurn::new(Role::User, "Write a haiku."),
        ];
        assert_eq!(
            format_chat(&turns, true),
            "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
             <start_of_turn>user\nWrite a haiku.<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            format_chat(&turns[..1], false),
            "<start_of_turn>user\nHi there<end_of_turn>\n"
        );
        // Google's template puts the system text, then a blank line, in front of the first user turn.
        let sys = [
            ChatTurn::new(Role::System, "Be brief."),
            ChatTurn::new(Role::User, " Why? "),
        ];
        assert_eq!(
            format_chat(&sys, true),
            "<start_of_turn>user\nBe brief.\n\nWhy?<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            format_chat(&sys[..1], false),
            "<start_of_turn>user\nBe brief.<end_of_turn>\n"
        );
        assert_eq!(format_chat(&[], true), "<start_of_turn>model\n");
        let tok = tiny();
        let ids = tok.encode_chat(&turns[..1], true).unwrap();
        assert_eq!(&ids[..2], &[2, 4]);
        assert_eq!(ids.iter().filter(|&&i| i == 4).count(), 2);
        assert_eq!(
            tok.decode(&ids).unwrap(),
            format!("<bos>{}", format_chat(&turns[..1], true))
        );
    }

    fn header(meta: Vec<(&str, MetaValue)>) -> GgufHeader {
        GgufHeader {
            version: 3,
            metadata: meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            tensors: vec![],
            alignment: 32,
            data_offset: 0,
        }
    }

    fn tiny_meta() -> Vec<(&'static str, MetaValue)> {
        let (t, s, ty) = tiny_vocab();
        let code = |t: TokenType| match t {
            Normal => 1,
            TokenType::Unknown => 2,
            Control => 3,
            UserDefined => 4,
            TokenType::Unused => 5,
            Byte => 6,
        };
        vec![
            ("tokenizer.ggml.model", MetaValue::Str("llama".into())),
            (
                "tokenizer.ggml.tokens",
                MetaValue::Array(t.into_iter().map(MetaValue::Str).collect()),
            ),
            (
                "tokenizer.ggml.scores",
                MetaValue::Array(s.into_iter().map(MetaValue::F32).collect()),
            ),
            (
                "tokenizer.ggml.token_type",
                MetaValue::Array(ty.into_iter().map(|t| MetaValue::I32(code(t))).collect()),
            ),
            ("tokenizer.ggml.bos_token_id", MetaValue::U32(2)),
            ("tokenizer.ggml.eos_token_id", MetaValue::U32(1)),
            ("tokenizer.ggml.unknown_token_id", MetaValue::U32(3)),
            ("tokenizer.ggml.padding_token_id", MetaValue::U32(0)),
        ]
    }

    #[test]
    fn from_gguf_reads_the_metadata() {
        let tok = GemmaTokenizer::from_gguf(&header(tiny_meta())).unwrap();
        let reference = tiny();
        for s in [" hello  hello", "<start_of_turn>€"] {
            assert_eq!(
                tok.encode(s, true).unwrap(),
                reference.encode(s, true).unwrap()
            );
        }
        // Without the id keys the pieces <bos>/<eos> are found by name.
        let meta: Vec<_> = tiny_meta()
            .into_iter()
            .filter(|(k, _)| !k.ends_with("_token_id"))
            .collect();
        let tok = GemmaTokenizer::from_gguf(&header(meta)).unwrap();
        assert_eq!((tok.bos_id(), tok.eos_id()), (2, 1));
    }

    #[test]
    fn from_gguf_names_the_bad_key() {
        let drop = |key: &str| -> Vec<(&'static str, MetaValue)> {
            tiny_meta().into_iter().filter(|(k, _)| *k != key).collect()
        };
        let replace = |key: &str, v: MetaValue| -> Vec<(&'static str, MetaValue)> {
            tiny_meta()
                .into_iter()
                .map(|(k, old)| if k == key { (k, v.clone()) } else { (k, old) })
                .collect()
        };
        let cases = [
            (drop("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens"),
            (drop("tokenizer.ggml.scores"), "tokenizer.ggml.scores"),
            (
                drop("tokenizer.ggml.token_type"),
                "tokenizer.ggml.token_type",
            ),
            (
                replace("tokenizer.ggml.tokens", MetaValue::Str("x".into())),
                "tokenizer.ggml.tokens",
            ),
            (
                replace(
                    "tokenizer.ggml.tokens",
                    MetaValue::Array(vec![MetaValue::Str("a".into()), MetaValue::U8(1)]),
                ),
                "tokenizer.ggml.tokens[1]",
            ),
            (
                replace(
                    "tokenizer.ggml.scores",
                    MetaValue::Array(vec![MetaValue::Str("a".into())]),
                ),
                "tokenizer.ggml.scores[0]",
            ),
            (
                replace(
                    "tokenizer.ggml.token_type",
                    MetaValue::Array(vec![MetaValue::I32(9)]),
                ),
                "tokenizer.ggml.token_type[0]",
            ),
            (
                replace("tokenizer.ggml.bos_token_id", MetaValue::I32(-1)),
                "tokenizer.ggml.bos_token_id",
            ),
            (
                replace("tokenizer.ggml.eos_token_id", MetaValue::U32(1 << 20)),
                "tokenizer.ggml.eos_token_id",
            ),
        ];
        for (meta, key) in cases {
            match GemmaTokenizer::from_gguf(&header(meta)) {
                Err(Error::BadModel(msg)) => assert!(msg.contains(key), "{key}: {msg}"),
                other => panic!("{key}: expected BadModel, got {other:?}"),
            }
        }
        let gpt2 = replace("tokenizer.ggml.model", MetaValue::Str("gpt2".into()));
        assert!(matches!(
            GemmaTokenizer::from_gguf(&header(gpt2)),
            Err(Error::Unsupported(_))
        ));
    }
}
