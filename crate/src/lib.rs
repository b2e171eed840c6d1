//! gemma-web: Gemma language models running on WGSL compute shaders over WebGPU (wgpu),
//! the same engine natively and in the browser.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench_kernels;
pub mod cpu;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod rng;
#[cfg(not(target_arch = "wasm32"))]
pub mod serve;
pub mod storage;
pub mod summary;
pub mod testing;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;
#[cfg(target_arch = "wasm32")]
pub mod web_engine;
#[cfg(target_arch = "wasm32")]
pub mod web_store;
#[cfg(all(target_arch = "wasm32", feature = "threads"))]
pub mod web_threads;

pub use error::Error;
