//! gemma-web: Gemma language models running on WGSL compute shaders over WebGPU (wgpu),
//! the same engine natively and in the browser.

pub mod error;
pub mod gguf;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;

pub use error::Error;
