//! The engine's wasm surface (wasm32 only): load a model from any JS byte reader onto the GPU or
//! the CPU engine (`backend`: auto, webgpu, cpu), generate with streaming text, interrupt, unload,
//! tokenize, capabilities. `www/worker.js` drives it inside a
//! dedicated worker; the page never calls it directly.
//!
//! Every method returns at once (a `Promise` for the slow ones) and keeps no borrow of the
//! engine across an `await`, so `interrupt()` can be called while a generation is running: the
//! generation checks the flag between tokens and between prefill blocks, and `tokenize()` works
//! meanwhile (the tokenizer is kept apart from the model the generation holds). Errors are JS `Error` objects with a stable `code`
//! (see `web.rs`). Requests and results cross as plain JS objects (serde-wasm-bindgen); their
//! TypeScript types are in `www/wasm-types.d.ts`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::{future_to_promise, JsFuture};

use crate::gpu::{Caps, Gpu, GpuOptions};
use crate::model::gemma_cpu::CpuModel;
use crate::model::generate::chat_turn_ids;
use crate::model::loader::LoadOptions;
use crate::model::{
    ByteSource, Engine, GenerateOptions, Generation, Model, ModelOptions, SamplingParams, Session,
    StopReason,
};
use crate::summary::HeaderSummary;
use crate::tokenizer::{format_chat, ChatTurn, GemmaTokenizer, Role, StreamDecoder};
use crate::web::{from_js, js_error, to_js};
use crate::Error;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "ByteReader")]
    pub type ByteReader;

    #[wasm_bindgen(method, getter)]
    fn size(this: &ByteReader) -> f64;

    #[wasm_bindgen(method, catch)]
    fn read(this: &ByteReader, offset: f64, length: u32) -> Result<Promise, JsValue>;
}

/// An `Error` thrown by JS (a reader, a callback) as one of ours: its `code` when it has a known
/// one, `Network` otherwise (readers are the only JS the engine awaits).
fn error_from_js(v: &JsValue) -> Error {
    let code = js_sys::Reflect::get(v, &"code".into())
        .ok()
        .and_then(|c| c.as_string())
        .unwrap_or_default();
    let message = js_sys::Reflect::get(v, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| v.as_string())
        .unwrap_or_else(|| "unknown JS error".into());
    match code.as_str() {
        "Aborted" => Error::Aborted,
        "BadModel" => Error::BadModel(message),
        "Integrity" => Error::Integrity(message),
        "Quota" => Error::Quota(message),
        "Unsupported" => Error::Unsupported(message),
        "WebGPUUnavailable" => Error::WebGpuUnavailable(message),
        "DeviceLost" => Error::DeviceLost(message),
        "OutOfMemory" => Error::OutOfMemory(message),
        "Io" => Error::Io(message),
        _ => Error::Network(message),
    }
}

/// The loader's byte source over a JS [`ByteReader`].
struct JsSource {
    reader: ByteReader,
    len: u64,
}

impl JsSource {
    fn new(reader: ByteReader) -> Result<Self, Error> {
        let size = reader.size();
        // 2^53: past it a JS number cannot be an exact byte count.
        if !(size.is_finite() && size >= 0.0 && size.fract() == 0.0 && size <= 9.007e15) {
            return Err(Error::BadModel(format!(
                "reader size {size} is not a byte count"
            )));
        }
        Ok(JsSource {
            reader,
            len: size as u64,
        })
    }
}

impl ByteSource for JsSource {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let want = u32::try_from(buf.len())
            .map_err(|_| Error::Unsupported(format!("a read of {} bytes", buf.len())))?;
        if offset
            .checked_add(u64::from(want))
            .is_none_or(|e| e > self.len)
        {
            return Err(Error::BadModel(format!(
                "read of {want} bytes at {offset} past the end ({} bytes)",
                self.len
            )));
        }
        let promise = self
            .reader
            .read(offset as f64, want)
            .map_err(|e| error_from_js(&e))?;
        let value = JsFuture::from(promise)
            .await
            .map_err(|e| error_from_js(&e))?;
        let bytes: Uint8Array = value
            .dyn_into()
            .map_err(|_| Error::Network("the reader did not return a Uint8Array".into()))?;
        if bytes.length() != want {
            return Err(Error::Network(format!(
                "asked for {want} bytes at {offset}, the reader returned {}",
                bytes.length()
            )));
        }
        bytes.copy_to(buf);
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct JsLoadOptions {
    context_length: Option<u32>,
    prefill_chunk: Option<u32>,
    backend: BackendChoice,
}

/// Where the page asks the model to run.
#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum BackendChoice {
    /// A hardware WebGPU adapter when there is one, else the CPU.
    #[default]
    Auto,
    /// WebGPU, even a software adapter; `WebGPUUnavailable` without one.
    Webgpu,
    /// The CPU engine, on this worker's thread and its pool's.
    Cpu,
}

/// Where the model runs, and why there.
struct Placement {
    gpu: Option<Gpu>,
    reason: String,
}

/// Opens the GPU when the choice and the adapter call for it. `auto` takes a hardware adapter
/// and leaves a software one (SwiftShader, WARP, lavapipe: a CPU device type, or the browser's
/// fallback adapter) to the CPU engine, which runs the same model many times faster there.
async fn place(choice: BackendChoice) -> Result<Placement, Error> {
    let adapter = |gpu: &Gpu| {
        if gpu.caps.adapter_name.is_empty() {
            "an unnamed adapter".to_string()
        } else {
            gpu.caps.adapter_name.clone()
        }
    };
    match choice {
        BackendChoice::Cpu => Ok(Placement {
            gpu: None,
            reason: "the CPU backend was asked for".into(),
        }),
        BackendChoice::Webgpu => {
            let gpu = open_gpu().await?;
            let reason = format!("WebGPU was asked for ({})", adapter(&gpu));
            Ok(Placement {
                gpu: Some(gpu),
                reason,
            })
        }
        BackendChoice::Auto => match open_gpu().await {
            Ok(gpu) if !gpu.caps.cpu => {
                let reason = format!("a hardware WebGPU adapter ({})", adapter(&gpu));
                Ok(Placement {
                    gpu: Some(gpu),
                    reason,
                })
            }
            Ok(gpu) => Ok(Placement {
                reason: format!(
                    "WebGPU offers only a software adapter ({}), slower than the CPU engine",
                    adapter(&gpu)
                ),
                gpu: None,
            }),
            Err(e) => Ok(Placement {
                gpu: None,
                reason: format!("no usable WebGPU ({e})"),
            }),
        },
    }
}

/// Context asked for when the page does not say: enough for a chat, small enough that the KV
/// cache of a 2B model stays modest.
const DEFAULT_WEB_CONTEXT: u32 = 2048;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsCaps {
    adapter_name: String,
    backend: String,
    cpu: bool,
    device_type: String,
    f16: bool,
    subgroups: bool,
    max_binding: u64,
    max_buffer: u64,
    max_storage_buffers: u32,
    tier: String,
}

impl From<&Caps> for JsCaps {
    fn from(c: &Caps) -> Self {
        JsCaps {
            adapter_name: c.adapter_name.clone(),
            backend: c.backend.clone(),
            cpu: c.cpu,
            device_type: c.device_type.clone(),
            f16: c.f16,
            subgroups: c.subgroups,
            max_binding: c.max_binding,
            max_buffer: c.max_buffer,
            max_storage_buffers: c.max_storage_buffers,
            tier: c.tier.clone(),
        }
    }
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct WasmMemory {
    at_start: u64,
    after_weights: u64,
    after_tokenizer: u64,
}

/// Bytes of this module's linear memory now.
fn wasm_memory_bytes() -> u64 {
    core::arch::wasm32::memory_size(0) as u64 * 65536
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsModelInfo<'a> {
    header: &'a HeaderSummary,
    /// "webgpu" or "cpu".
    backend: &'static str,
    /// Why the model runs there, in words for the reader.
    backend_reason: &'a str,
    /// Threads the CPU engine computes on (1 on WebGPU: the worker's).
    threads: usize,
    /// The GPU in use; `None` on the CPU backend.
    capabilities: Option<JsCaps>,
    context_length: u32,
    /// Bytes of the weights where they are used: GPU buffers, or wasm memory on the CPU.
    weight_bytes: u64,
    /// Bytes of the weights on the GPU (0 on the CPU backend).
    weight_gpu_bytes: u64,
    kv_cache_bytes: u64,
    /// The KV cache's element type: "f16" on WebGPU with shader-f16, else "f32".
    kv_cache_type: &'static str,
    load_seconds: f64,
    wasm_memory: WasmMemory,
}

#[derive(Deserialize, Clone, PartialEq)]
struct JsMessage {
    role: String,
    content: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct JsGenerateRequest {
    messages: Option<Vec<JsMessage>>,
    prompt: Option<String>,
    max_tokens: Option<u32>,
    temperature: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
    repetition_penalty: Option<f32>,
    seed: Option<f64>,
    resume_ids: Option<Vec<u32>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsGenerateResult {
    text: String,
    prompt_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    finish_reason: &'static str,
    prompt_tokens: usize,
    completion_tokens: usize,
    reused_tokens: usize,
    prefill_seconds: f64,
    decode_seconds: f64,
    prefill_tok_s: f64,
    decode_tok_s: f64,
    /// The sampler's seed (the request's, or the one drawn for it).
    seed: u64,
    /// Where it ran: "webgpu" or "cpu", and on how many threads.
    backend: &'static str,
    threads: usize,
}

/// A loaded model and what its KV cache holds.
struct Loaded {
    session: Session,
    tokenizer: Rc<GemmaTokenizer>,
    summary: HeaderSummary,
    backend_reason: String,
    load_seconds: f64,
    wasm_memory: WasmMemory,
    /// The chat messages whose tokens are in the KV cache (replies exactly as generated), when
    /// the cache holds a chat; `None` after a text completion or a failure.
    conversation: Option<Vec<JsMessage>>,
}

struct Inner {
    /// `None` while a generation has it (taken out, so no borrow lives across an `await`) and
    /// after `unload`.
    loaded: RefCell<Option<Loaded>>,
    busy: Cell<bool>,
    interrupted: Cell<bool>,
    unloaded: Cell<bool>,
    /// The model's GPU device (none on the CPU backend), reachable while a generation holds
    /// the model.
    device: Option<wgpu::Device>,
    /// The model's tokenizer, reachable while a generation holds the model.
    tokenizer: Rc<GemmaTokenizer>,
}

/// A model on the GPU or the CPU, ready to generate. Create with `WebEngine.load`.
#[wasm_bindgen]
pub struct WebEngine {
    inner: Rc<Inner>,
}

fn reject(e: Error) -> JsValue {
    js_error(&e).into()
}

async fn open_gpu() -> Result<Gpu, Error> {
    Gpu::new(GpuOptions::default()).await
}

#[wasm_bindgen]
impl WebEngine {
    /// What this browser's GPU offers (opens a device and closes it again). Rejects with
    /// `WebGPUUnavailable` when there is no adapter.
    #[wasm_bindgen(unchecked_return_type = "Promise<Capabilities>")]
    pub fn capabilities() -> Promise {
        future_to_promise(async {
            let gpu = open_gpu().await.map_err(reject)?;
            to_js(&JsCaps::from(&gpu.caps)).map_err(reject)
        })
    }

    /// Streams a Gemma GGUF from `reader` to the GPU in bounded slices (host memory never holds
    /// the file) and builds the tokenizer. `onProgress(loaded, total)` follows the tensor bytes.
    #[wasm_bindgen(unchecked_return_type = "Promise<WebEngine>")]
    pub fn load(
        reader: ByteReader,
        #[wasm_bindgen(unchecked_param_type = "LoadOptions | undefined")] options: JsValue,
        #[wasm_bindgen(unchecked_param_type = "LoadProgress")] on_progress: Function,
    ) -> Promise {
        future_to_promise(async move {
            let engine = load(reader, options, on_progress).await.map_err(reject)?;
            Ok(engine.into())
        })
    }

    /// The loaded model: its header summary, the GPU capabilities in use, sizes.
    #[wasm_bindgen(unchecked_return_type = "ModelInfo")]
    pub fn info(&self) -> Result<JsValue, js_sys::Error> {
        let guard = self.inner.loaded.borrow();
        let l = guard.as_ref().ok_or_else(|| js_error(&self.not_ready()))?;
        let engine = &l.session.engine;
        let (capabilities, weight_bytes, weight_gpu_bytes, kv_cache_bytes, kv_cache_type) =
            match engine {
                Engine::Gpu(m) => (
                    Some(JsCaps::from(&m.gpu.caps)),
                    m.stats.weight_gpu_bytes,
                    m.stats.weight_gpu_bytes,
                    m.stats.kv_cache_bytes,
                    m.stats.kv_cache_type,
                ),
                Engine::Cpu(m) => (None, m.stats.weight_bytes, 0, m.stats.kv_cache_bytes, "f32"),
            };
        to_js(&JsModelInfo {
            header: &l.summary,
            backend: backend_name(engine),
            backend_reason: &l.backend_reason,
            threads: threads(engine),
            capabilities,
            context_length: engine.context_len(),
            weight_bytes,
            weight_gpu_bytes,
            kv_cache_bytes,
            kv_cache_type,
            load_seconds: l.load_seconds,
            wasm_memory: l.wasm_memory,
        })
        .map_err(|e| js_error(&e))
    }

    /// Token ids of `text` (with BOS first when `addBos`), also while a generation runs.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<u32>, js_sys::Error> {
        if self.inner.unloaded.get() {
            return Err(js_error(&self.not_ready()));
        }
        self.inner
            .tokenizer
            .encode(text, add_bos)
            .map_err(|e| js_error(&e))
    }

    /// Generates for a chat (`messages`) or a raw text (`prompt`), calling `onPiece` with each
    /// piece of text as it is decoded. One generation at a time.
    #[wasm_bindgen(unchecked_return_type = "Promise<GenerateResult>")]
    pub fn generate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GenerateRequest")] request: JsValue,
        #[wasm_bindgen(unchecked_param_type = "OnPiece")] on_piece: Function,
    ) -> Promise {
        let inner = self.inner.clone();
        // Checked and marked busy before this returns, so an `interrupt()` right after the call
        // already applies to this generation.
        let mut request: JsGenerateRequest = match from_js(request, "the generate request") {
            Ok(r) => r,
            Err(e) => return Promise::reject(&reject(e)),
        };
        // Without a seed, a fresh one, reported in the result (and kept for a resume after a
        // device loss) so that the answer can be asked for again.
        let seed = match request_seed(request.seed) {
            Ok(s) => s,
            Err(e) => return Promise::reject(&reject(e)),
        };
        request.seed = Some(seed as f64);
        if inner.busy.get() {
            return Promise::reject(&reject(Error::Unsupported(
                "a generation is already running (one at a time)".into(),
            )));
        }
        let Some(mut loaded) = inner.loaded.borrow_mut().take() else {
            return Promise::reject(&reject(self.not_ready()));
        };
        inner.busy.set(true);
        inner.interrupted.set(false);
        future_to_promise(async move {
            let mut sampled = request.resume_ids.clone().unwrap_or_default();
            let result = generate(
                &mut loaded,
                &request,
                &on_piece,
                &inner.interrupted,
                &mut sampled,
            )
            .await;
            inner.busy.set(false);
            // `unload` during the generation: drop the model now instead of keeping it.
            if !inner.unloaded.get() {
                *inner.loaded.borrow_mut() = Some(loaded);
            }
            match result {
                Ok(result) => to_js(&result).map_err(reject),
                Err(e @ Error::DeviceLost(_)) => {
                    // What a new engine needs to pick the answer up where it stopped.
                    let err = js_error(&e);
                    let ids: js_sys::Array = sampled.iter().map(|&id| JsValue::from(id)).collect();
                    let _ = js_sys::Reflect::set(&err, &"generatedIds".into(), &ids);
                    let _ = js_sys::Reflect::set(&err, &"seed".into(), &(seed as f64).into());
                    Err(err.into())
                }
                Err(e) => Err(reject(e)),
            }
        })
    }

    /// Stops the running generation after its current token, or after the current block of its
    /// prefill (it resolves with `finishReason: "abort"`); does nothing when none runs.
    pub fn interrupt(&self) {
        if self.inner.busy.get() {
            self.inner.interrupted.set(true);
        }
    }

    /// Destroys the GPU device as a driver reset would (for tests of the recovery path): the
    /// running generation, or the next one, fails with `DeviceLost`. Nothing on the CPU backend.
    #[wasm_bindgen(js_name = simulateDeviceLoss)]
    pub fn simulate_device_loss(&self) {
        if let Some(device) = &self.inner.device {
            device.destroy();
        }
    }

    /// Forgets the conversation held in the KV cache (the next call starts afresh).
    pub fn reset(&self) {
        if let Some(l) = self.inner.loaded.borrow_mut().as_mut() {
            l.session.reset();
            l.conversation = None;
        }
    }

    /// Frees the model's memory (a running generation is interrupted first).
    pub fn unload(&self) {
        self.inner.unloaded.set(true);
        self.inner.interrupted.set(true);
        self.inner.loaded.borrow_mut().take();
    }
}

impl WebEngine {
    fn not_ready(&self) -> Error {
        if self.inner.unloaded.get() {
            Error::Unsupported("the model was unloaded".into())
        } else {
            Error::Unsupported("a generation is running".into())
        }
    }
}

async fn load(
    reader: ByteReader,
    options: JsValue,
    on_progress: Function,
) -> Result<WebEngine, Error> {
    let opts: JsLoadOptions = from_js(options, "the load options")?;
    let t0 = crate::model::generate::now_secs();
    let at_start = wasm_memory_bytes();
    let mut src = JsSource::new(reader)?;
    let placement = place(opts.backend).await?;
    let model_opts = ModelOptions {
        context_len: Some(opts.context_length.unwrap_or(DEFAULT_WEB_CONTEXT)),
        prefill_chunk: opts
            .prefill_chunk
            .unwrap_or(crate::model::gemma::DEFAULT_PREFILL_CHUNK),
        min_matmul_block: None,
        kv_cache: None,
        load: LoadOptions::default(),
    };
    let mut progress = |done: u64, total: u64| {
        // A throwing progress callback must not stop the load.
        let _ = on_progress.call2(
            &JsValue::NULL,
            &(done as f64).into(),
            &(total as f64).into(),
        );
    };
    let engine: Engine = match placement.gpu {
        Some(gpu) => Model::load(gpu, &mut src, &model_opts, &mut progress)
            .await?
            .into(),
        None => CpuModel::load(&mut src, &model_opts, &mut progress)
            .await?
            .into(),
    };
    let after_weights = wasm_memory_bytes();
    let tokenizer = Rc::new(GemmaTokenizer::from_gguf(engine.header())?);
    let summary = HeaderSummary::new(engine.header(), src.len())?;
    let load_seconds = crate::model::generate::now_secs() - t0;
    let device = engine.gpu().map(|m| m.gpu.device.clone());
    Ok(WebEngine {
        inner: Rc::new(Inner {
            loaded: RefCell::new(Some(Loaded {
                session: Session::new(engine),
                tokenizer: tokenizer.clone(),
                summary,
                backend_reason: placement.reason,
                load_seconds,
                wasm_memory: WasmMemory {
                    at_start,
                    after_weights,
                    after_tokenizer: wasm_memory_bytes(),
                },
                conversation: None,
            })),
            busy: Cell::new(false),
            interrupted: Cell::new(false),
            unloaded: Cell::new(false),
            device,
            tokenizer,
        }),
    })
}

fn backend_name(engine: &Engine) -> &'static str {
    match engine {
        Engine::Gpu(_) => "webgpu",
        Engine::Cpu(_) => "cpu",
    }
}

fn threads(engine: &Engine) -> usize {
    match engine {
        Engine::Gpu(_) => 1,
        Engine::Cpu(m) => m.threads(),
    }
}

fn role(m: &JsMessage) -> Result<Role, Error> {
    match m.role.as_str() {
        "user" => Ok(Role::User),
        "assistant" | "model" => Ok(Role::Model),
        "system" | "developer" => Ok(Role::System),
        other => Err(Error::Unsupported(format!("message role {other:?}"))),
    }
}

/// The request's seed, or a fresh random one of 53 bits (a JS number holds it exactly, so the
/// reported seed can be passed back).
fn request_seed(seed: Option<f64>) -> Result<u64, Error> {
    match seed {
        None => getrandom::u64()
            .map(|s| s >> 11)
            .map_err(|e| Error::Unsupported(format!("no random source for a seed: {e}"))),
        Some(s) if s.is_finite() && s >= 0.0 && s.fract() == 0.0 && s <= 9.007e15 => Ok(s as u64),
        Some(s) => Err(Error::Unsupported(format!(
            "seed {s} (needs a whole number >= 0)"
        ))),
    }
}

fn sampling(r: &JsGenerateRequest) -> Result<SamplingParams, Error> {
    let d = SamplingParams::default();
    let seed = request_seed(r.seed)?;
    Ok(SamplingParams {
        temperature: r.temperature.unwrap_or(0.0),
        top_k: r.top_k.unwrap_or(d.top_k),
        top_p: r.top_p.unwrap_or(d.top_p),
        repetition_penalty: r.repetition_penalty.unwrap_or(d.repetition_penalty),
        seed,
    })
}

/// The ids to feed for this request, after resetting the session when its cache cannot be reused.
fn prompt_ids(l: &mut Loaded, r: &JsGenerateRequest) -> Result<Vec<u32>, Error> {
    match (&r.messages, &r.prompt) {
        (Some(messages), None) => {
            let (last, earlier) = messages
                .split_last()
                .ok_or_else(|| Error::Unsupported("an empty message list".into()))?;
            if role(last)? != Role::User {
                return Err(Error::Unsupported(
                    "the last message must be the user's".into(),
                ));
            }
            // The cache holds exactly `earlier`: only the new user turn runs.
            if l.conversation.as_deref() == Some(earlier) && !earlier.is_empty() {
                return chat_turn_ids(&l.tokenizer, &l.session, &last.content);
            }
            l.session.reset();
            let turns = messages
                .iter()
                .map(|m| Ok(ChatTurn::new(role(m)?, m.content.clone())))
                .collect::<Result<Vec<_>, Error>>()?;
            l.tokenizer.encode(&format_chat(&turns, true), true)
        }
        (None, Some(prompt)) => {
            l.session.reset();
            l.tokenizer.encode(prompt, true)
        }
        _ => Err(Error::Unsupported(
            "a request needs either messages or a prompt".into(),
        )),
    }
}

async fn generate(
    l: &mut Loaded,
    r: &JsGenerateRequest,
    on_piece: &Function,
    interrupted: &Cell<bool>,
    sampled: &mut Vec<u32>,
) -> Result<JsGenerateResult, Error> {
    let ids = prompt_ids(l, r)?;
    // Whatever happens below, the cache no longer matches a known conversation until the
    // generation completes (or stops in its prefill, which leaves the cache as it was).
    let held_before = l.conversation.take();
    let reused = l.session.history().len();
    let opts = GenerateOptions {
        max_tokens: r.max_tokens.unwrap_or(256),
        sampling: sampling(r)?,
        stop_ids: l.tokenizer.stop_ids().to_vec(),
    };
    let tokenizer = &*l.tokenizer;
    let mut decoder = StreamDecoder::new();
    let mut text = String::new();
    // A resumed generation: the text of the tokens before the loss was streamed already; the
    // decoder still has to see them, since a character may continue across the cut.
    let resume = sampled.clone();
    for &id in &resume {
        text.push_str(&decoder.push(tokenizer, id)?);
    }
    let mut failed = None;
    let mut on_token = |id: u32| {
        sampled.push(id);
        if tokenizer.is_stop(id) {
            return true;
        }
        match decoder.push(tokenizer, id) {
            Ok(piece) => {
                if !piece.is_empty() {
                    let _ = on_piece.call2(&JsValue::NULL, &piece.as_str().into(), &id.into());
                    text.push_str(&piece);
                }
                !interrupted.get()
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    };
    let mut stop = || interrupted.get();
    let g: Generation = if resume.is_empty() {
        l.session
            .generate_until(&ids, &opts, &mut on_token, Some(&mut stop))
            .await?
    } else {
        l.session
            .resume_until(&ids, &resume, &opts, &mut on_token, Some(&mut stop))
            .await?
    };
    if let Some(e) = failed {
        l.session.reset();
        return Err(e);
    }
    let tail = decoder.finish();
    if !tail.is_empty() {
        let _ = on_piece.call2(&JsValue::NULL, &tail.as_str().into(), &JsValue::from(0u32));
        text.push_str(&tail);
    }
    let stopped_in_prefill = g.stop == StopReason::Aborted && g.generated_ids.len() == resume.len();
    if stopped_in_prefill {
        // Nothing of this call is in the cache: it holds what it held before, if anything.
        if reused > 0 && l.session.history().len() == reused {
            l.conversation = held_before;
        }
    } else if let Some(messages) = &r.messages {
        // The cache now holds the conversation plus this reply (its last token possibly pending).
        let mut held = messages.clone();
        held.push(JsMessage {
            role: "assistant".into(),
            content: text.clone(),
        });
        l.conversation = Some(held);
    }
    let stop_tokens = g
        .generated_ids
        .last()
        .is_some_and(|&id| tokenizer.is_stop(id)) as usize;
    Ok(JsGenerateResult {
        finish_reason: match g.stop {
            StopReason::Stop => "stop",
            StopReason::MaxTokens | StopReason::ContextFull => "length",
            StopReason::Aborted => "abort",
        },
        prompt_tokens: g.prompt_ids.len(),
        completion_tokens: g.generated_ids.len().saturating_sub(stop_tokens),
        reused_tokens: reused,
        prefill_seconds: g.prefill_secs,
        decode_seconds: g.decode_secs,
        seed: opts.sampling.seed,
        backend: backend_name(&l.session.engine),
        threads: threads(&l.session.engine),
        prefill_tok_s: g.prefill_tok_s(),
        decode_tok_s: g.decode_tok_s(),
        prompt_ids: g.prompt_ids,
        generated_ids: g.generated_ids,
        text,
    })
}
