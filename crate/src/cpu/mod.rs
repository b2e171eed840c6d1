//! Tensor math on the host CPU, for when there is no usable GPU: quantized matrix products
//! straight from GGUF blocks, RMSNorm, RoPE, GELU, soft-caps and attention over a KV cache.
//! It knows no Gemma; `model::gemma_cpu` is the forward pass built from it.
//!
//! Threads: natively the matrix products run on candle-core's worker pool, attention of a prompt
//! block on rayon's; both follow `CANDLE_NUM_THREADS` / `RAYON_NUM_THREADS` (default: the
//! physical cores). In wasm without shared memory everything runs on the calling thread. The
//! shared-memory wasm build (feature `threads`) has rayon's pool on Web Workers, built by
//! www/wasm-loader.js (`buildThreadPool`, `crate::web_threads`) before anything else touches
//! rayon; the matrix products split their rows across it ([`QMatrix::matmul_split`]), since
//! candle's own pool cannot start threads there.

pub mod attention;
pub mod kquant;
pub mod ops;
pub mod q8;
pub mod quant;

pub use attention::{attend, AttentionShape, KvCache};

pub use quant::{QMatrix, QMatrixBuilder};

use rayon::prelude::*;

/// y (m, rows) from `task(first_row, out)`, which fills `out` (its rows, m) with rows
/// first_row.. against every token: tasks of `rows_per_task` rows on rayon's pool, so that each
/// row meets every token while it is in L1; the result is transposed into y afterwards.
pub(crate) fn rows_in_parallel(
    rows: usize,
    m: usize,
    rows_per_task: usize,
    y: &mut [f32],
    task: impl Fn(usize, &mut [f32]) + Sync,
) {
    if m == 1 {
        y[..rows]
            .par_chunks_mut(rows_per_task)
            .enumerate()
            .for_each(|(i, out)| task(i * rows_per_task, out));
        return;
    }
    let mut yt = vec![0f32; rows * m];
    yt.par_chunks_mut(rows_per_task * m)
        .enumerate()
        .for_each(|(i, out)| task(i * rows_per_task, out));
    for (r, col) in yt.chunks_exact(m).enumerate() {
        for (t, &v) in col.iter().enumerate() {
            y[t * rows + r] = v;
        }
    }
}

/// Threads the matrix products use.
///
/// In the shared-memory wasm build: rayon's pool, so call it only after `buildThreadPool` (a
/// first use of rayon before that starts a one-thread pool that cannot be replaced).
#[cfg(all(target_arch = "wasm32", target_feature = "atomics"))]
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Threads the matrix products use.
#[cfg(not(all(target_arch = "wasm32", target_feature = "atomics")))]
pub fn threads() -> usize {
    // In a browser without shared memory: 1 (rayon's fallback pool is the calling thread).
    if cfg!(target_arch = "wasm32") {
        return rayon::current_num_threads();
    }
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(candle_core::utils::get_num_threads)
}

/// Sets the thread count of both pools; only effective before the first CPU computation of
/// the process (native).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_threads(n: usize) {
    let n = n.max(1).to_string();
    std::env::set_var("CANDLE_NUM_THREADS", &n);
    std::env::set_var("RAYON_NUM_THREADS", &n);
}
