//! Sampling on the GPU, right after the LM head, over the whole vocabulary with no sort and
//! no read-back of the logits: the repetition penalty on the logits (`penalty.wgsl`); radix
//! selects that find where the top-k and then the top-p prefix end (`select_*.wgsl`, one byte
//! of a (logit, index) rank key a pass); then a Gumbel-max argmax over the kept tokens, which
//! draws from their softmax with counter-based random numbers (`sample_gumbel.wgsl`,
//! `sample_pick.wgsl`). The CPU reads back one [`Draw`] of 16 bytes. The CPU reference is the
//! model's `Sampler`.

use super::kernels::{argmax, TopK};
use super::op::need_floats;
use super::{Gpu, Op, PipelineDesc};
use crate::Error;

/// Most distinct recent tokens the penalty kernel takes (its workgroup size).
pub const PENALTY_IDS: u32 = 64;

/// What to draw: the GPU half of the model's `SamplingParams`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuSampling {
    /// 0: the best candidate (after the penalty).
    pub temperature: f32,
    /// Tokens kept, most likely first; 0 keeps every token.
    pub top_k: u32,
    pub top_p: f32,
    /// 1 is off.
    pub penalty: f32,
    pub seed: u64,
}

/// One draw as read back: 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Draw {
    /// u32::MAX when no logit was finite.
    pub id: u32,
    /// Its logit after the penalty (and soft-cap).
    pub logit: f32,
    /// Its probability among the kept candidates.
    pub prob: f32,
    pub _pad: u32,
}

/// The bound sampling ops over one logit vector: the penalty, the largest logit (`argmax`), a
/// count select for top-k, a mass select for top-p inside it, then the Gumbel-max draw over
/// what they kept. Greedy (temperature 0, after the penalty) skips the selects and the noise.
pub struct SampleOps {
    pub vocab: u32,
    pub max_draws: u32,
    penalty: Op,
    penalty_params: wgpu::Buffer,
    recent: wgpu::Buffer,
    /// Index bytes of the rank key ([`index_bytes`]); a select takes 4 + digits passes.
    digits: u32,
    largest: TopK,
    by_count: RadixSelect,
    by_mass: RadixSelect,
    /// The [`SelectState`].
    pub state: wgpu::Buffer,
    draw_params: wgpu::Buffer,
    groups: u32,
    gumbel: Op,
    pick: Op,
    /// (max_draws) [`Draw`]s.
    pub out: wgpu::Buffer,
}

impl SampleOps {
    /// Binds the ops to `logits` (vocab f32, changed in place by the penalty); `max_draws`
    /// draws per dispatch at most (1 for the model).
    pub async fn new(
        gpu: &Gpu,
        logits: &wgpu::Buffer,
        vocab: u32,
        max_draws: u32,
    ) -> Result<SampleOps, Error> {
        need_floats("sample logits", logits, u64::from(vocab))?;
        if max_draws == 0 || vocab == 0 {
            return Err(Error::Unsupported(format!(
                "sampling {max_draws} draws from {vocab} tokens"
            )));
        }
        let penalty_pipeline = gpu.pipeline(&PipelineDesc::kernel("penalty")).await?;
        let recent = gpu.storage("penalty ids", u64::from(PENALTY_IDS) * 4)?;
        let penalty_params = gpu.uniform_u32("penalty params", &[0, vocab, 1f32.to_bits(), 0])?;
        let penalty = gpu
            .bound_op(
                "penalty",
                &penalty_pipeline,
                &[logits, &recent, &penalty_params],
                [1, 1, 1],
            )
            .await?;
        let largest = argmax(gpu, logits, vocab).await?;
        let state = gpu.storage("select state", std::mem::size_of::<SelectState>() as u64)?;
        let hist = gpu.storage("select histogram", 3 * 256 * 4)?;
        let groups = vocab.div_ceil(CHUNK);
        let lib: &[&str] = &["select_common"];
        let chunk = [("CHUNK", f64::from(CHUNK))];
        let init_pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "select_init",
                libs: lib,
                ..Default::default()
            })
            .await?;
        let hist_pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "select_hist",
                libs: lib,
                constants: &chunk,
                ..Default::default()
            })
            .await?;
        let scan_pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "select_scan",
                libs: lib,
                ..Default::default()
            })
            .await?;
        let select = async |label: &str| -> Result<RadixSelect, Error> {
            let params = gpu.uniform_u32(label, &[0; 8])?;
            Ok(RadixSelect {
                init: gpu
                    .bound_op(label, &init_pipeline, &[&state, &hist, &params], [1, 1, 1])
                    .await?,
                hist: gpu
                    .bound_op(
                        label,
                        &hist_pipeline,
                        &[logits, &largest.val, &state, &hist, &params],
                        super::fold_workgroups(groups),
                    )
                    .await?,
                scan: gpu
                    .bound_op(label, &scan_pipeline, &[&state, &hist, &params], [1, 1, 1])
                    .await?,
                params,
            })
        };
        let by_count = select("select top-k").await?;
        let by_mass = select("select top-p").await?;
        let draw_params = gpu.uniform_u32("draw params", &[0; 12])?;
        let partial = gpu.storage("draw partial", u64::from(max_draws) * u64::from(groups) * 8)?;
        let out = gpu.storage("sample out", u64::from(max_draws) * 16)?;
        let gumbel_pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "sample_gumbel",
                libs: &["select_common", "workgroup_best"],
                constants: &chunk,
                ..Default::default()
            })
            .await?;
        let gumbel = gpu
            .bound_op(
                "sample_gumbel",
                &gumbel_pipeline,
                &[logits, &largest.val, &state, &partial, &draw_params],
                super::fold_workgroups(groups),
            )
            .await?;
        let pick_pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "sample_pick",
                libs: &["select_common", "workgroup_best"],
                ..Default::default()
            })
            .await?;
        let pick = gpu
            .bound_op(
                "sample_pick",
                &pick_pipeline,
                &[logits, &largest.val, &state, &partial, &out, &draw_params],
                super::fold_workgroups(1),
            )
            .await?;
        Ok(SampleOps {
            vocab,
            max_draws,
            penalty,
            penalty_params,
            recent,
            digits: index_bytes(vocab),
            largest,
            by_count,
            by_mass,
            state,
            draw_params,
            groups,
            gumbel,
            pick,
            out,
        })
    }

    /// Writes this step's parameters: `recent` (distinct ids, at most [`PENALTY_IDS`] are
    /// used) and `draws` draws with counters `counter..`. Returns the ops to record in order;
    /// the draws land in [`SampleOps::out`].
    pub fn set(
        &mut self,
        gpu: &Gpu,
        s: &GpuSampling,
        recent: &[u32],
        counter: u64,
        draws: u32,
    ) -> Result<Vec<&Op>, Error> {
        if !(s.temperature >= 0.0 && s.temperature.is_finite())
            || !(s.top_p > 0.0 && s.top_p <= 1.0)
        {
            return Err(Error::Unsupported(format!(
                "GPU sampling at temperature {} with top-p {}",
                s.temperature, s.top_p
            )));
        }
        if draws == 0 || draws > self.max_draws {
            return Err(Error::Unsupported(format!(
                "{draws} GPU draws (1..={})",
                self.max_draws
            )));
        }
        let mut ops = Vec::with_capacity(40);
        if s.penalty != 1.0 && !recent.is_empty() {
            let ids = &recent[..recent.len().min(PENALTY_IDS as usize)];
            gpu.write_u32(&self.recent, 0, ids)?;
            gpu.write_u32(
                &self.penalty_params,
                0,
                &[ids.len() as u32, self.vocab, s.penalty.to_bits(), 0],
            )?;
            ops.push(&self.penalty);
        }
        let n = self.vocab;
        let digits = self.digits;
        let passes = 4 + digits;
        let k = if s.top_k == 0 { n } else { s.top_k.min(n) };
        let words = |mode: u32, first: u32| {
            [
                n,
                s.temperature.to_bits(),
                digits,
                mode,
                k,
                s.top_p.to_bits(),
                first,
                0,
            ]
        };
        if s.temperature == 0.0 {
            // Greedy: the best logit of every token, so only the kept set is reset.
            gpu.write_u32(&self.by_count.params, 0, &words(0, 1))?;
            ops.push(&self.by_count.init);
        } else {
            ops.extend([&self.largest.stage1, &self.largest.merge]);
            // The count select runs for a top-k below the vocabulary, or, keeping every
            // token, for the kept mass alone (one pass: its target is never crossed), which
            // the mass select sums itself when there is one.
            let by_mass = s.top_p < 1.0;
            if k < n || !by_mass {
                gpu.write_u32(&self.by_count.params, 0, &words(0, 1))?;
                ops.push(&self.by_count.init);
                let count_passes = if k < n { passes } else { 1 };
                for _ in 0..count_passes {
                    ops.extend([&self.by_count.hist, &self.by_count.scan]);
                }
            }
            if by_mass {
                let first = u32::from(k == n);
                gpu.write_u32(&self.by_mass.params, 0, &words(1, first))?;
                ops.push(&self.by_mass.init);
                for _ in 0..passes {
                    ops.extend([&self.by_mass.hist, &self.by_mass.scan]);
                }
            }
        }
        gpu.write_u32(
            &self.draw_params,
            0,
            &[
                n,
                s.temperature.to_bits(),
                digits,
                draws,
                self.groups,
                s.seed as u32,
                (s.seed >> 32) as u32,
                counter as u32,
                (counter >> 32) as u32,
                0,
                0,
                0,
            ],
        )?;
        let groups = draws.checked_mul(self.groups).ok_or_else(|| {
            Error::Unsupported(format!("{draws} draws over {n} tokens in one dispatch"))
        })?;
        self.gumbel.workgroups = super::fold_workgroups(groups);
        self.pick.workgroups = super::fold_workgroups(draws);
        ops.extend([&self.gumbel, &self.pick]);
        Ok(ops)
    }
}

/// Index bytes of the rank key (`select_common.wgsl`) for a vocabulary of `n` tokens.
fn index_bytes(n: u32) -> u32 {
    (32 - n.saturating_sub(1).leading_zeros())
        .div_ceil(8)
        .max(1)
}

/// Tokens a workgroup of `select_hist.wgsl` and `sample_gumbel.wgsl` takes.
const CHUNK: u32 = 4096;

/// The search state of the selects, as `select_common.wgsl` lays it out (read
/// back by the tests).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SelectState {
    /// The kept set: tokens whose rank key (order(logit), then lower index first) is at least
    /// (floor_hi, floor_lo).
    pub floor_hi: u32,
    pub floor_lo: u32,
    pub prefix_hi: u32,
    pub prefix_lo: u32,
    pub pass: u32,
    pub done: u32,
    pub above: u32,
    pub above_lo: u32,
    pub above_hi: u32,
    /// Tokens kept.
    pub kept: u32,
    /// Their mass, exp((logit - max) / temperature) summed in fixed point (2^31 is 1).
    pub kept_lo: u32,
    pub kept_hi: u32,
    /// A mass select's target: top_p times the kept mass it started from.
    pub goal: f32,
    pub _pad: [u32; 3],
}

impl SelectState {
    /// The kept tokens' mass as a number (the largest token's is 1).
    pub fn kept_mass(&self) -> f64 {
        (f64::from(self.kept_hi) * 4294967296.0 + f64::from(self.kept_lo)) / 2147483648.0
    }

    /// The rank key the kernels give token `id` with logit `l` in a vocabulary of `vocab`.
    pub fn rank_key(l: f32, id: u32, vocab: u32) -> u64 {
        let b = if l == 0.0 { 0 } else { l.to_bits() };
        let order = if b & 0x8000_0000 != 0 {
            !b
        } else {
            b | 0x8000_0000
        };
        (u64::from(order) << 32) | u64::from((!id) << (32 - 8 * index_bytes(vocab)))
    }

    /// Whether the kept set holds a token of rank key `key`.
    pub fn keeps(&self, key: u64) -> bool {
        key >= (u64::from(self.floor_hi) << 32 | u64::from(self.floor_lo))
    }
}

/// One radix select (`select_init`, then `select_hist` and `select_scan` once per byte of the
/// rank key), bound to its own parameters: a count (top-k) or a mass (top-p) target.
struct RadixSelect {
    params: wgpu::Buffer,
    init: Op,
    hist: Op,
    scan: Op,
}
