//! Sampling on the GPU, right after the LM head: the repetition penalty on the logits
//! (`shaders/penalty.wgsl`), the [`SAMPLE_K`] best candidates (`topk.wgsl`, `topk_merge.wgsl`),
//! then one draw among them (`shaders/sample.wgsl`) with a counter-based random number. The CPU
//! reads back one [`Draw`] of 16 bytes. The CPU reference is the model's `Sampler`.

use super::kernels::{topk, TopK};
use super::op::need_floats;
use super::{Gpu, Op, PipelineDesc};
use crate::Error;

/// Candidates the draw chooses among: top-k of at most this many runs on the GPU.
pub const SAMPLE_K: u32 = 64;
/// Most distinct recent tokens the penalty kernel takes (its workgroup size).
pub const PENALTY_IDS: u32 = 64;

/// What to draw: the GPU half of the model's `SamplingParams`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuSampling {
    /// 0: the best candidate (after the penalty).
    pub temperature: f32,
    /// 1..=[`SAMPLE_K`].
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

/// The bound sampling ops over one logit vector.
pub struct SampleOps {
    pub vocab: u32,
    pub penalty: Op,
    pub topk: TopK,
    pub sample: Op,
    penalty_params: wgpu::Buffer,
    recent: wgpu::Buffer,
    params: wgpu::Buffer,
    /// (max_draws) [`Draw`]s.
    pub out: wgpu::Buffer,
    pub max_draws: u32,
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
        if max_draws == 0 {
            return Err(Error::Unsupported("sampling with 0 draws".into()));
        }
        let k = SAMPLE_K.min(vocab);
        let topk = topk(gpu, logits, vocab, k).await?;
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
        let sample_pipeline = gpu
            .pipeline(&PipelineDesc {
                kernel: "sample",
                constants: &[("K", f64::from(k))],
                ..Default::default()
            })
            .await?;
        let params = gpu.uniform_u32("sample params", &[0; 8])?;
        let out = gpu.storage("sample out", u64::from(max_draws) * 16)?;
        let sample = gpu
            .bound_op(
                "sample",
                &sample_pipeline,
                &[&topk.idx, &topk.val, &out, &params],
                super::fold_workgroups(1),
            )
            .await?;
        Ok(SampleOps {
            vocab,
            penalty,
            topk,
            sample,
            penalty_params,
            recent,
            params,
            out,
            max_draws,
        })
    }

    /// Writes this step's parameters: `recent` (distinct ids, at most [`PENALTY_IDS`] are
    /// used) and `draws` draws with counters `counter..`. Returns the ops to record in order.
    pub fn set(
        &mut self,
        gpu: &Gpu,
        s: &GpuSampling,
        recent: &[u32],
        counter: u64,
        draws: u32,
    ) -> Result<Vec<&Op>, Error> {
        if !(1..=SAMPLE_K).contains(&s.top_k) || draws == 0 || draws > self.max_draws {
            return Err(Error::Unsupported(format!(
                "GPU sampling with top-k {} ({draws} draws)",
                s.top_k
            )));
        }
        let mut ops = Vec::with_capacity(4);
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
        ops.push(&self.topk.stage1);
        ops.push(&self.topk.merge);
        gpu.write_u32(
            &self.params,
            0,
            &[
                s.top_k,
                s.temperature.to_bits(),
                s.top_p.to_bits(),
                draws,
                s.seed as u32,
                (s.seed >> 32) as u32,
                counter as u32,
                (counter >> 32) as u32,
            ],
        )?;
        self.sample.workgroups = super::fold_workgroups(draws);
        ops.push(&self.sample);
        Ok(ops)
    }
}
