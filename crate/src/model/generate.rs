//! Generation: sampling (greedy, temperature, top-k, top-p, repetition penalty, seeded), the
//! decode loop with its stop conditions, and a [`Session`] that keeps the KV cache of earlier
//! turns so a chat never re-runs them.
//!
//! The sampler asks the GPU for as little as it needs: the argmax (4 bytes) when greedy, else
//! a token drawn on the GPU (16 bytes), whatever the top-k and top-p. The CPU [`Sampler`]
//! samples from logits: the CPU engine's path, and the reference the GPU draw is tested
//! against.

use crate::gpu::sample::GpuSampling;
use crate::model::engine::Engine;
use crate::model::gemma::{Head, Output};
use crate::rng::SplitMix64;
use crate::tokenizer::{format_chat, ChatTurn, GemmaTokenizer, Role};
use crate::Error;

/// How the next token is chosen.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 (or less): greedy.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: u32,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Divides positive (multiplies negative) logits of tokens among the last
    /// [`PENALTY_WINDOW`] of the context; 1 is off.
    pub repetition_penalty: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_k: 64,
            top_p: 0.95,
            repetition_penalty: 1.0,
            seed: 0,
        }
    }
}

/// Tokens of the context the repetition penalty looks at (llama.cpp's default).
pub const PENALTY_WINDOW: usize = 64;

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    fn is_greedy(&self) -> bool {
        // `check` has rejected NaN.
        self.temperature <= 0.0 || self.top_k == 1
    }

    fn has_penalty(&self) -> bool {
        self.repetition_penalty != 1.0
    }

    /// Rejects NaN and out-of-range values with a message naming the parameter.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |what: String| Err(Error::Unsupported(what));
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return bad(format!("temperature {} (needs >= 0)", self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top-p {} (needs 0 < p <= 1)", self.top_p));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad(format!(
                "repetition penalty {} (needs > 0)",
                self.repetition_penalty
            ));
        }
        Ok(())
    }

    /// What the GPU must hand back for this sampler: the argmax when greedy, else a token
    /// drawn on the GPU ([`Head::Sample`], 16 bytes), whatever the top-k.
    pub fn head(&self) -> Head {
        let greedy = self.is_greedy();
        if greedy && !self.has_penalty() {
            Head::Argmax
        } else {
            Head::Sample(GpuSampling {
                temperature: if greedy { 0.0 } else { self.temperature },
                top_k: if greedy { 1 } else { self.top_k },
                top_p: self.top_p,
                penalty: self.repetition_penalty,
                seed: self.seed,
            })
        }
    }
}

/// Chooses tokens from what the GPU handed back. Keeps a scratch vector, reused every token.
#[derive(Clone, Debug)]
pub struct Sampler {
    pub params: SamplingParams,
    rng: SplitMix64,
    candidates: Vec<(u32, f32)>,
    probs: Vec<f64>,
    /// The distinct tokens of the penalty window.
    seen: Vec<u32>,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Result<Self, Error> {
        params.check()?;
        Ok(Sampler {
            rng: SplitMix64::new(params.seed),
            params,
            candidates: Vec::new(),
            probs: Vec::new(),
            seen: Vec::new(),
        })
    }

    /// The next token from `out` (the answer to [`SamplingParams::head`]); `recent` is the
    /// context so far, for the repetition penalty.
    pub fn sample(&mut self, out: &Output, recent: &[u32]) -> Result<u32, Error> {
        let p = &self.params;
        self.candidates.clear();
        match out {
            Output::Argmax(id) | Output::Sampled { id, .. } => return Ok(*id),
            Output::TopK(pairs) => self.candidates.extend_from_slice(pairs),
            Output::Logits(logits) => {
                self.candidates
                    .extend(logits.iter().enumerate().map(|(i, &l)| (i as u32, l)));
            }
            Output::None => {
                return Err(Error::Unsupported("sampling without logits".into()));
            }
        }
        if p.has_penalty() {
            // Once per distinct token of the window, as llama.cpp and Hugging Face apply it: a
            // token seen five times is divided by the penalty once, not five times.
            self.seen.clear();
            self.seen
                .extend_from_slice(&recent[recent.len().saturating_sub(PENALTY_WINDOW)..]);
            self.seen.sort_unstable();
            self.seen.dedup();
            for &id in &self.seen {
                // Candidates from full logits are indexed by id.
                if let Some(c) = self.candidates.get_mut(id as usize).filter(|c| c.0 == id) {
                    c.1 = if c.1 > 0.0 {
                        c.1 / p.repetition_penalty
                    } else {
                        c.1 * p.repetition_penalty
                    };
                }
            }
        }
        // NaN logits never win. Without them the order is total (and -0 ties with +0, as on
        // the GPU).
        self.candidates.retain(|c| !c.1.is_nan());
        let better = |a: &(u32, f32), b: &(u32, f32)| {
            b.1.partial_cmp(&a.1)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.0.cmp(&b.0))
        };
        if p.is_greedy() {
            return self
                .candidates
                .iter()
                .min_by(|a, b| better(a, b))
                .map(|c| c.0)
                .ok_or_else(|| Error::Unsupported("no finite logits to sample from".into()));
        }
        // Top-k, most likely first.
        let k = if p.top_k == 0 {
            self.candidates.len()
        } else {
            (p.top_k as usize).min(self.candidates.len())
        };
        if k == 0 {
            return Err(Error::Unsupported("no finite logits to sample from".into()));
        }
        if k < self.candidates.len() {
            self.candidates.select_nth_unstable_by(k - 1, better);
            self.candidates.truncate(k);
        }
        let sorted = p.top_p < 1.0;
        if sorted {
            self.candidates.sort_unstable_by(better);
        }
        // Softmax at temperature T, in f64.
        let max = self
            .candidates
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, f32::max);
        let t = f64::from(p.temperature);
        self.probs.clear();
        self.probs.extend(
            self.candidates
                .iter()
                .map(|c| ((f64::from(c.1) - f64::from(max)) / t).exp()),
        );
        let total: f64 = self.probs.iter().sum();
        // Top-p: the shortest prefix whose probability reaches p.
        let mut keep = self.probs.len();
        if sorted {
            let mut acc = 0.0;
            for (i, q) in self.probs.iter().enumerate() {
                acc += q / total;
                if acc >= f64::from(p.top_p) {
                    keep = i + 1;
                    break;
                }
            }
        }
        let kept: f64 = self.probs.iter().take(keep).sum();
        let mut u = self.rng.unit_f64() * kept;
        for (c, q) in self.candidates.iter().zip(&self.probs).take(keep) {
            if u < *q {
                return Ok(c.0);
            }
            u -= q;
        }
        // Rounding left u past the last one.
        self.candidates
            .get(keep.saturating_sub(1))
            .map(|c| c.0)
            .ok_or_else(|| Error::Unsupported("no finite logits to sample from".into()))
    }
}

/// Options of one [`Session::generate`] call.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    /// Tokens that end the answer (`<eos>`, `<end_of_turn>`); they are reported, not fed.
    pub stop_ids: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop_ids: vec![1, 106],
        }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// A stop token was sampled.
    Stop,
    MaxTokens,
    /// The KV cache is full.
    ContextFull,
    /// The token callback asked to stop.
    Aborted,
}

/// What one [`Session::generate`] call did.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Generation {
    /// Tokens fed this call (the prompt, after any pending token of the previous call).
    pub prompt_ids: Vec<u32>,
    /// Sampled tokens, the stop token included.
    pub generated_ids: Vec<u32>,
    pub stop: StopReason,
    pub prefill_secs: f64,
    pub decode_secs: f64,
}

impl Generation {
    pub fn prefill_tok_s(&self) -> f64 {
        self.prompt_ids.len() as f64 / self.prefill_secs.max(1e-9)
    }

    /// Decode steps are all sampled tokens after the first (which comes out of the prefill).
    pub fn decode_tok_s(&self) -> f64 {
        self.generated_ids.len().saturating_sub(1) as f64 / self.decode_secs.max(1e-9)
    }
}

/// Seconds on a monotonic clock (`web_time::Instant` is `performance.now()` in the browser,
/// where `std::time::Instant` panics).
pub fn now_secs() -> f64 {
    use std::sync::OnceLock;
    use web_time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// A conversation with the model: the tokens whose keys and values are in the cache, and the
/// last sampled token, which is fed at the start of the next call.
#[derive(Debug)]
pub struct Session {
    /// The GPU or CPU forward pass.
    pub engine: Engine,
    /// Tokens at positions 0.. of the KV cache.
    history: Vec<u32>,
    /// Sampled but not yet run through the model.
    pending: Option<u32>,
    sampler: Option<Sampler>,
}

impl Session {
    pub fn new(engine: impl Into<Engine>) -> Self {
        Session {
            engine: engine.into(),
            history: Vec::new(),
            pending: None,
            sampler: None,
        }
    }

    /// Forgets the conversation (the cache is simply overwritten from position 0).
    pub fn reset(&mut self) {
        self.history.clear();
        self.pending = None;
        self.sampler = None;
    }

    /// Tokens in the KV cache.
    pub fn history(&self) -> &[u32] {
        &self.history
    }

    /// The last sampled token not yet in the cache (a stop token, or the token that hit the
    /// limit).
    pub fn pending(&self) -> Option<u32> {
        self.pending
    }

    /// Positions still free after `pending` and `extra` more tokens; an error when they don't fit.
    fn reserve(&self, extra: usize) -> Result<(), Error> {
        let tokens = self.history.len() + usize::from(self.pending.is_some()) + extra;
        let context = self.engine.context_len();
        if tokens > context as usize {
            return Err(Error::PromptTooLong {
                tokens: tokens as u64,
                context: u64::from(context),
            });
        }
        Ok(())
    }

    /// Feeds `prompt` (after the previous call's pending token, if any) and samples up to
    /// `opts.max_tokens` tokens, handing each to `on_token` as it comes; `on_token` returns
    /// false to stop. A prompt that does not fit the context is [`Error::PromptTooLong`] before
    /// anything runs. The sampler's random stream continues across calls with the same
    /// parameters (so a chat is deterministic for a seed) and restarts when they change.
    pub async fn generate(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation, Error> {
        self.generate_until(prompt, opts, on_token, None).await
    }

    /// [`Session::generate`] whose prefill asks `stop` between blocks (see
    /// [`Model::prefill_until`]): when it says stop, the call ends with [`StopReason::Aborted`]
    /// and no token, and the session is as it was before the call (its conversation intact).
    pub async fn generate_until(
        &mut self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
        stop: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Generation, Error> {
        self.reserve(prompt.len())?;
        let mut fed: Vec<u32> = self
            .pending
            .into_iter()
            .chain(prompt.iter().copied())
            .collect();
        if fed.is_empty() {
            return Err(Error::Unsupported("an empty prompt".into()));
        }
        if self.sampler.as_ref().map(|s| &s.params) != Some(&opts.sampling) {
            self.sampler = Some(Sampler::new(opts.sampling.clone())?);
        }
        let Some(sampler) = self.sampler.as_mut() else {
            return Err(Error::Unsupported("no sampler".into()));
        };
        let head = opts.sampling.head();
        let context = self.engine.context_len() as usize;

        let t0 = now_secs();
        let pos = self.history.len() as u32;
        let out = self.engine.prefill_until(&fed, pos, head, stop).await;
        let out = match out {
            Ok(o) => o,
            // Nothing of this call reached the history: the next call overwrites what it wrote.
            Err(Error::Aborted) => {
                return Ok(Generation {
                    prompt_ids: prompt.to_vec(),
                    generated_ids: Vec::new(),
                    stop: StopReason::Aborted,
                    prefill_secs: now_secs() - t0,
                    decode_secs: 0.0,
                })
            }
            Err(e) => {
                // The cache may hold part of the prompt: start over next time.
                self.reset();
                return Err(e);
            }
        };
        self.history.append(&mut fed);
        self.pending = None;
        let prompt_ids = prompt.to_vec();
        let t1 = now_secs();

        let mut generated = Vec::new();
        let mut out = out;
        let stop = loop {
            if generated.len() as u64 >= u64::from(opts.max_tokens) {
                break StopReason::MaxTokens;
            }
            let next = sampler.sample(&out, &self.history)?;
            generated.push(next);
            self.pending = Some(next);
            if !on_token(next) {
                break StopReason::Aborted;
            }
            if opts.stop_ids.contains(&next) {
                break StopReason::Stop;
            }
            if generated.len() as u64 >= u64::from(opts.max_tokens) {
                break StopReason::MaxTokens;
            }
            if self.history.len() >= context {
                break StopReason::ContextFull;
            }
            let pos = self.history.len() as u32;
            out = match self.engine.forward_decode(next, pos, head).await {
                Ok(o) => o,
                Err(e) => {
                    self.reset();
                    return Err(e);
                }
            };
            self.history.push(next);
            self.pending = None;
        };
        Ok(Generation {
            prompt_ids,
            generated_ids: generated,
            stop,
            prefill_secs: t1 - t0,
            decode_secs: now_secs() - t1,
        })
    }

    /// Continues a generation that was cut off (a lost GPU device) after it had sampled
    /// `sampled`, on a freshly loaded model: the prompt and those tokens run as one prefill, so
    /// the cache holds the conversation again, and only the rest of `opts.max_tokens` is
    /// sampled. `on_token` sees only the new tokens; the result reads as one generation of
    /// `prompt` (its `generated_ids` start with `sampled`). Greedy decoding continues exactly
    /// where it stopped; so does a sampled one drawn on the GPU (each draw depends only on the
    /// seed and its position), while one sampled on the CPU engine continues with a fresh
    /// random stream.
    pub async fn resume(
        &mut self,
        prompt: &[u32],
        sampled: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<Generation, Error> {
        self.resume_until(prompt, sampled, opts, on_token, None)
            .await
    }

    /// [`Session::resume`] with a `stop` check between prefill blocks, as in
    /// [`Session::generate_until`].
    pub async fn resume_until(
        &mut self,
        prompt: &[u32],
        sampled: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(u32) -> bool,
        stop: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Generation, Error> {
        let done = u32::try_from(sampled.len()).unwrap_or(u32::MAX);
        if done >= opts.max_tokens {
            return Err(Error::Unsupported(format!(
                "nothing to resume: {done} of {} tokens were already sampled",
                opts.max_tokens
            )));
        }
        if sampled.iter().any(|id| opts.stop_ids.contains(id)) {
            return Err(Error::Unsupported(
                "nothing to resume: the generation had already stopped".into(),
            ));
        }
        let fed: Vec<u32> = prompt.iter().chain(sampled).copied().collect();
        let rest = GenerateOptions {
            max_tokens: opts.max_tokens - done,
            ..opts.clone()
        };
        let mut g = self.generate_until(&fed, &rest, on_token, stop).await?;
        g.prompt_ids.truncate(prompt.len());
        g.generated_ids.splice(0..0, sampled.iter().copied());
        Ok(g)
    }
}

/// The ids that open the next user turn of a chat in `session`: BOS and the turn on an empty
/// session; otherwise the model's open turn is closed first (its `<end_of_turn>` is usually the
/// pending stop token, fed with these ids) and the new turn follows. Ends with the generation
/// prompt `<start_of_turn>model\n`.
pub fn chat_turn_ids(
    tokenizer: &GemmaTokenizer,
    session: &Session,
    text: &str,
) -> Result<Vec<u32>, Error> {
    let turn = format_chat(&[ChatTurn::new(Role::User, text)], true);
    if session.history().is_empty() && session.pending().is_none() {
        return tokenizer.encode(&turn, true);
    }
    let end = tokenizer.piece_to_id("<end_of_turn>");
    let closed = end.is_some() && session.pending() == end;
    let prefix = if closed { "\n" } else { "<end_of_turn>\n" };
    tokenizer.encode(&format!("{prefix}{turn}"), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits(v: &[f32]) -> Output {
        Output::Logits(v.to_vec())
    }

    #[test]
    fn greedy_takes_the_lowest_of_equal_maxima() {
        let mut s = Sampler::new(SamplingParams::greedy()).unwrap();
        assert_eq!(s.sample(&logits(&[0.0, 3.0, 1.0, 3.0]), &[]).unwrap(), 1);
        assert_eq!(s.sample(&Output::Argmax(7), &[]).unwrap(), 7);
        assert_eq!(
            s.sample(&logits(&[f32::NAN, -1.0, -2.0]), &[]).unwrap(),
            1,
            "NaN never wins"
        );
    }

    #[test]
    fn penalty_demotes_recent_tokens() {
        let p = SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        };
        assert!(matches!(p.head(), Head::Sample(g) if g.top_k == 1 && g.temperature == 0.0));
        let mut s = Sampler::new(p).unwrap();
        // 4.0 / 2 = 2.0 < 3.0: token 0 loses to token 1.
        assert_eq!(s.sample(&logits(&[4.0, 3.0, -1.0]), &[0]).unwrap(), 1);
        // Negative logits are multiplied: -1 * 2 = -2 < -1.5.
        assert_eq!(s.sample(&logits(&[-1.0, -1.5]), &[0]).unwrap(), 1);
    }

    /// A token repeated in the window is penalised once (llama.cpp, Hugging Face), not once
    /// per occurrence: 4 / 2 = 2 still beats 1.5, where 4 / 2^3 = 0.5 would not.
    #[test]
    fn penalty_applies_once_per_distinct_token() {
        let mut s = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..SamplingParams::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&logits(&[4.0, 1.5]), &[0, 0, 0]).unwrap(), 0);
        assert_eq!(s.sample(&logits(&[-1.0, -1.5]), &[0, 5, 0]).unwrap(), 1);
        // Only the last PENALTY_WINDOW tokens count.
        let mut old = vec![0u32; 3];
        old.extend(std::iter::repeat_n(7, PENALTY_WINDOW));
        assert_eq!(s.sample(&logits(&[4.0, 3.0]), &old).unwrap(), 0);
    }

    /// Sampling frequencies follow softmax(logits / T) restricted by top-k and top-p.
    #[test]
    fn frequencies_follow_the_distribution() {
        let l = [2.0f32, 1.0, 0.5, 0.0, -1.0];
        let t = 0.7f64;
        let n = 40_000;
        for (top_k, top_p) in [(0u32, 1.0f32), (3, 1.0), (0, 0.8)] {
            let mut s = Sampler::new(SamplingParams {
                temperature: t as f32,
                top_k,
                top_p,
                repetition_penalty: 1.0,
                seed: 42,
            })
            .unwrap();
            let mut counts = [0usize; 5];
            for _ in 0..n {
                counts[s.sample(&logits(&l), &[]).unwrap() as usize] += 1;
            }
            let w: Vec<f64> = l.iter().map(|&x| (f64::from(x) / t).exp()).collect();
            let total: f64 = w.iter().sum();
            // Which tokens survive, computed independently of the sampler.
            let mut keep = if top_k == 0 { 5 } else { top_k as usize };
            if top_p < 1.0 {
                let mut acc = 0.0;
                for (i, x) in w.iter().enumerate() {
                    acc += x / total;
                    if acc >= f64::from(top_p) {
                        keep = keep.min(i + 1);
                        break;
                    }
                }
            }
            let kept: f64 = w[..keep].iter().sum();
            for i in 0..5 {
                let want = if i < keep { w[i] / kept } else { 0.0 };
                let got = counts[i] as f64 / n as f64;
                assert!(
                    (got - want).abs() < 0.012,
                    "top_k {top_k} top_p {top_p} token {i}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn same_seed_same_tokens() {
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            seed: 9,
        };
        let l: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone()).unwrap();
            (0..50)
                .map(|_| s.sample(&logits(&l), &[]).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(&p), run(&p));
        assert_ne!(
            run(&p),
            run(&SamplingParams {
                seed: 10,
                ..p.clone()
            })
        );
    }

    #[test]
    fn bad_parameters_are_errors() {
        for p in [
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                repetition_penalty: -1.0,
                ..Default::default()
            },
        ] {
            assert!(Sampler::new(p).is_err());
        }
    }
}
