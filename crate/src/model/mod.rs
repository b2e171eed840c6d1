//! The Gemma model: configuration, loading, the forward pass and generation.

pub mod config;
pub mod gemma;
pub mod generate;
pub mod linear;
pub mod loader;
pub mod random;

pub use gemma::{Head, Model, ModelOptions, Output};
pub use generate::{GenerateOptions, Generation, Sampler, SamplingParams, Session, StopReason};
pub use loader::ByteSource;
#[cfg(not(target_arch = "wasm32"))]
pub use loader::FileSource;
