//! The engine a [`Session`](crate::model::Session) drives: the GPU forward pass (`gemma.rs`)
//! or the CPU one (`gemma_cpu.rs`). Both answer the same [`Head`] requests with the same
//! [`Output`]s, so everything above (sampling, chat, KV-cache reuse) is shared.

use crate::gguf::GgufHeader;
use crate::model::config::GemmaConfig;
use crate::model::gemma::{Head, Model, Output};
use crate::model::gemma_cpu::CpuModel;
use crate::Error;

/// Where the forward pass runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// WGSL kernels over WebGPU (wgpu).
    Gpu,
    /// The host CPU (`cpu` module).
    Cpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gpu => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

#[derive(Debug)]
pub enum Engine {
    Gpu(Model),
    Cpu(CpuModel),
}

impl From<Model> for Engine {
    fn from(m: Model) -> Self {
        Engine::Gpu(m)
    }
}

impl From<CpuModel> for Engine {
    fn from(m: CpuModel) -> Self {
        Engine::Cpu(m)
    }
}

impl Engine {
    pub fn backend(&self) -> Backend {
        match self {
            Engine::Gpu(_) => Backend::Gpu,
            Engine::Cpu(_) => Backend::Cpu,
        }
    }

    /// The GPU model, when this engine is one.
    pub fn gpu(&self) -> Option<&Model> {
        match self {
            Engine::Gpu(m) => Some(m),
            Engine::Cpu(_) => None,
        }
    }

    /// The GPU model, when this engine is one.
    pub fn gpu_mut(&mut self) -> Option<&mut Model> {
        match self {
            Engine::Gpu(m) => Some(m),
            Engine::Cpu(_) => None,
        }
    }

    /// Positions the KV cache holds.
    pub fn context_len(&self) -> u32 {
        match self {
            Engine::Gpu(m) => m.context_len,
            Engine::Cpu(m) => m.context_len,
        }
    }

    pub fn config(&self) -> &GemmaConfig {
        match self {
            Engine::Gpu(m) => &m.config,
            Engine::Cpu(m) => &m.config,
        }
    }

    pub fn header(&self) -> &GgufHeader {
        match self {
            Engine::Gpu(m) => &m.header,
            Engine::Cpu(m) => &m.header,
        }
    }

    /// Most tokens one prefill block runs.
    pub fn max_chunk(&self) -> u32 {
        match self {
            Engine::Gpu(m) => m.max_chunk(),
            Engine::Cpu(m) => m.max_chunk(),
        }
    }

    /// See [`Model::prefill`].
    pub async fn prefill(&mut self, tokens: &[u32], pos: u32, head: Head) -> Result<Output, Error> {
        match self {
            Engine::Gpu(m) => m.prefill(tokens, pos, head).await,
            Engine::Cpu(m) => m.prefill(tokens, pos, head).await,
        }
    }

    /// See [`Model::prefill_until`].
    pub async fn prefill_until(
        &mut self,
        tokens: &[u32],
        pos: u32,
        head: Head,
        stop: Option<&mut dyn FnMut() -> bool>,
    ) -> Result<Output, Error> {
        match self {
            Engine::Gpu(m) => m.prefill_until(tokens, pos, head, stop).await,
            Engine::Cpu(m) => m.prefill_until(tokens, pos, head, stop).await,
        }
    }

    /// See [`Model::forward_decode`].
    pub async fn forward_decode(
        &mut self,
        token: u32,
        pos: u32,
        head: Head,
    ) -> Result<Output, Error> {
        match self {
            Engine::Gpu(m) => m.forward_decode(token, pos, head).await,
            Engine::Cpu(m) => m.forward_decode(token, pos, head).await,
        }
    }

    /// See [`Model::score`].
    pub async fn score(
        &mut self,
        tokens: &[u32],
        pos: u32,
        each: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), Error> {
        match self {
            Engine::Gpu(m) => m.score(tokens, pos, each).await,
            Engine::Cpu(m) => m.score(tokens, pos, each).await,
        }
    }
}
