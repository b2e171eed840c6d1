//! gemma-web: Gemma language models running on WGSL compute shaders over WebGPU (wgpu),
//! the same engine natively and in the browser.

pub mod error;
pub mod gguf;

pub use error::Error;
