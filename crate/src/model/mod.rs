//! The Gemma model: configuration, loading, the forward pass (GPU and CPU) and generation.

pub mod config;
pub mod engine;
pub mod gemma;
pub mod gemma_cpu;
pub mod generate;
pub mod linear;
pub mod loader;
pub mod random;

pub use engine::{Backend, Engine};
pub use gemma::{Head, Model, ModelOptions, Output};
pub use gemma_cpu::CpuModel;
pub use generate::{GenerateOptions, Generation, Sampler, SamplingParams, Session, StopReason};
pub use loader::ByteSource;
#[cfg(not(target_arch = "wasm32"))]
pub use loader::FileSource;
