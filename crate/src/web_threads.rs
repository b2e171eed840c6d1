//! The shared-memory wasm build's thread pool (feature `threads`, www/pkg-threads): rayon's global
//! pool on Web Workers that share this module's memory, and a check of the split matrix products
//! on it.
//!
//! Starting it takes both sides (www/wasm-loader.js): the engine's worker starts `n` pool workers
//! (www/pool-worker.js), each instantiates this module on the shared memory and calls
//! [`run_pool_worker`], which waits for a rayon thread to run; then the engine's worker calls
//! [`build_thread_pool`], which builds rayon's pool with a spawn handler that hands each thread to
//! a waiting worker. This must come before anything touches rayon (a first use starts a one-thread
//! pool that cannot be replaced). std cannot start threads in wasm, which is why the handler hands
//! them over instead.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use rayon::ThreadBuilder;
use wasm_bindgen::prelude::*;

use crate::web::js_error;
use crate::Error;

/// rayon's threads on their way from the spawn handler to the pool workers.
struct Handover {
    sender: Mutex<Sender<ThreadBuilder>>,
    receiver: Mutex<Receiver<ThreadBuilder>>,
}

fn handover() -> &'static Handover {
    static HANDOVER: OnceLock<Handover> = OnceLock::new();
    HANDOVER.get_or_init(|| {
        let (sender, receiver) = channel();
        Handover {
            sender: Mutex::new(sender),
            receiver: Mutex::new(receiver),
        }
    })
}

/// In a pool worker: waits for one of rayon's threads and runs it, which returns only when the
/// pool ends (never, for the global pool).
#[wasm_bindgen(js_name = runPoolWorker)]
pub fn run_pool_worker() {
    let thread = match handover().receiver.lock() {
        Ok(receiver) => receiver.recv(),
        Err(_) => return,
    };
    if let Ok(thread) = thread {
        thread.run();
    }
}

/// In the engine's worker, once `threads` pool workers wait in `runPoolWorker`: builds rayon's
/// global pool on them and answers its thread count.
#[wasm_bindgen(js_name = buildThreadPool)]
pub fn build_thread_pool(threads: usize) -> Result<usize, JsValue> {
    let failed = |what: String| JsValue::from(js_error(&Error::Unsupported(what)));
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .spawn_handler(|thread| {
            let sender = handover()
                .sender
                .lock()
                .map_err(|_| std::io::Error::other("the handover lock is poisoned"))?;
            sender
                .send(thread)
                .map_err(|_| std::io::Error::other("the pool workers are gone"))
        })
        .build_global()
        .map_err(|e| failed(format!("the thread pool: {e}")))?;
    Ok(rayon::current_num_threads())
}

/// This module, for the pool workers to instantiate.
#[wasm_bindgen(js_name = sharedModule)]
pub fn wasm_module() -> JsValue {
    wasm_bindgen::module()
}

/// This module's shared memory, for the pool workers to instantiate the module on.
#[wasm_bindgen(js_name = sharedMemory)]
pub fn wasm_memory() -> JsValue {
    wasm_bindgen::memory()
}

/// Random matrices of a few types and odd sizes through the row split on the pool and through
/// candle's kernel unsplit: how many of their outputs differ in any bit (0 when the split is
/// right). The e2e test calls it on the running pool.
#[wasm_bindgen(js_name = splitMatmulMismatches)]
pub fn split_matmul_mismatches() -> Result<usize, JsValue> {
    crate::cpu::quant::split_mismatches(rayon::current_num_threads() * 4)
        .map_err(|e| js_error(&e).into())
}
