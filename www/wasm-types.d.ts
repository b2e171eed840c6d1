// Types of the values the wasm engine (pkg/gemma_web.js, built from crate/src/web.rs and web_engine.rs) takes and
// returns. The generated pkg/gemma_web.d.ts imports them; gemma-web.d.ts re-exports the ones its API hands out.
// Field names are those of the Rust structs' serde names (camelCase).

/** The header goes on past the prefix: read the file's first `needMore` bytes next (at most 256 MiB). */
export interface NeedMore { needMore: number }
export interface TensorSummary { name: string; type: string; dims: number[]; bytes: number }
export interface TypeTotal { type: string; count: number; bytes: number }
export interface ConfigSummary {
  layers: number; dModel: number; ffn: number; heads: number; kvHeads: number; headDim: number;
  eps: number; ropeBaseGlobal: number; ropeBaseLocal: number;
  slidingWindow: number | null; slidingPattern: number; globalLayers: number[];
  attnSoftcap: number | null; finalSoftcap: number | null; queryScale: number;
  contextLength: number; vocab: number;
}
export interface HeaderSummary {
  version: number; architecture: string; name: string | null;
  fileBytes: number; dataOffset: number; tensorBytes: number; metadataCount: number;
  config: ConfigSummary; tensors: TensorSummary[]; types: TypeTotal[];
}
/** Thrown by every function of the wasm module. */
export interface GemmaError extends Error {
  code: "WebGPUUnavailable" | "Unsupported" | "BadModel" | "Integrity" | "Quota" | "Network"
      | "DeviceLost" | "OutOfMemory" | "Aborted" | "PromptTooLong" | "Io";
}

/** Random access to a model file's bytes: HTTP Range requests, a File, browser storage, ... */
export interface ByteReader {
  /** Total length in bytes. */
  readonly size: number;
  /** Exactly `length` bytes at `offset` (a reject with an Error carrying `code` on failure). */
  read(offset: number, length: number): Promise<Uint8Array>;
}
export interface LoadOptions {
  /** KV-cache positions (capped by the model's context); default 2048. */
  contextLength?: number;
  /** Prompt tokens per prefill block; default 64. */
  prefillChunk?: number;
  /** "auto" (default): a hardware WebGPU adapter, else the CPU engine; "webgpu" or "cpu" insist. */
  backend?: "auto" | "webgpu" | "cpu";
}
/** Called after each slice of tensor data reaches the GPU. */
export type LoadProgress = (loadedBytes: number, totalBytes: number) => void;
export interface Capabilities {
  adapterName: string; backend: string;
  /** A CPU adapter (the browser's fallback adapter, e.g. SwiftShader): the kernels use their CPU layout. */
  cpu: boolean;
  /** "cpu", or "other" for a browser's GPU (browsers say no more). */
  deviceType: string;
  f16: boolean; subgroups: boolean;
  maxBinding: number; maxBuffer: number; maxStorageBuffers: number;
  /** "f16+subgroups", "f16", "subgroups" or "baseline". */
  tier: string;
}
/** The wasm module's linear memory (it only grows, so each figure is the peak up to then). */
export interface WasmMemory {
  /** Bytes when this load started (earlier loads included). */
  atStart: number;
  /** After every tensor reached the GPU: the streaming loader's peak. */
  afterWeights: number;
  /** After the tokenizer was built from the GGUF's vocabulary. */
  afterTokenizer: number;
}
export interface ModelInfo {
  header: HeaderSummary;
  /** Where the model runs. */
  backend: "webgpu" | "cpu";
  /** Why there, in words for the reader (e.g. "WebGPU offers only a software adapter ..."). */
  backendReason: string;
  /** Threads the CPU engine computes on (1 on WebGPU). */
  threads: number;
  /** Why the CPU engine runs on one thread where its load asked for more (e.g. "the page is not cross-origin
   *  isolated ..."); null when it runs on the threads asked for, and on WebGPU. */
  threadsReason: string | null;
  /** The GPU in use; null on the CPU backend. */
  capabilities: Capabilities | null;
  /** KV-cache positions this load holds. */
  contextLength: number;
  /** The weights' bytes where they are used: GPU buffers, or wasm memory on the CPU backend. */
  weightBytes: number;
  /** The weights' bytes on the GPU (0 on the CPU backend). */
  weightGpuBytes: number;
  kvCacheBytes: number;
  /** The KV cache's element type: "f16" on WebGPU where the adapter has shader-f16, else "f32". */
  kvCacheType: "f16" | "f32";
  loadSeconds: number;
  wasmMemory: WasmMemory;
}
export interface ChatMessage { role: "system" | "developer" | "user" | "assistant"; content: string }
export interface GenerateRequest {
  /** Chat mode: the whole conversation, ending with a user message. Earlier turns that match
   *  what this engine already ran are not run again (their KV cache is reused). */
  messages?: ChatMessage[];
  /** Text mode: raw text, continued by the model (BOS added, no chat template). */
  prompt?: string;
  maxTokens?: number;
  /** 0 (default): greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  /** Default: a fresh random seed for each request (reported as `GenerateResult.seed`). */
  seed?: number;
  /** Recovery after a lost GPU device, on a newly loaded engine: the tokens the cut-off
   *  generation had sampled (`generatedIds` of its `DeviceLost` error). They run with the prompt
   *  without being streamed again, and the generation continues after them. */
  resumeIds?: number[];
}
/** A generation that ended because the GPU device was lost; `generatedIds` lets a new engine
 *  resume it (`GenerateRequest.resumeIds`). */
export interface DeviceLostError extends GemmaError {
  code: "DeviceLost";
  generatedIds: number[];
  /** The call's seed, for the resumed call to report. */
  seed: number;
}
/** One piece of streamed text and the token that completed it. */
export type OnPiece = (text: string, tokenId: number) => void;
export interface GenerateResult {
  text: string;
  promptIds: number[];
  generatedIds: number[];
  /** "stop" (a stop token), "length" (max tokens or a full context), "abort" (interrupted). */
  finishReason: "stop" | "length" | "abort";
  /** Tokens run through the model this call (earlier turns reused from the cache excluded). */
  promptTokens: number;
  completionTokens: number;
  /** Tokens of the conversation in the KV cache before this call. */
  reusedTokens: number;
  prefillSeconds: number;
  decodeSeconds: number;
  prefillTokS: number;
  decodeTokS: number;
  /** The sampler's seed: the request's, or the one drawn for it. */
  seed: number;
  /** Where it ran, and on how many threads (1 on WebGPU). */
  backend: "webgpu" | "cpu";
  threads: number;
}
