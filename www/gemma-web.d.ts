// Types of gemma-web.js, the public ES module: Gemma on the visitor's GPU through WebGPU, with an OpenAI-style API.
// The model's header, configuration and GPU capabilities are the wasm engine's own types (wasm-types.d.ts).

import type { Capabilities, ModelInfo } from "./wasm-types.js";

export type { Capabilities, ConfigSummary, HeaderSummary, ModelInfo, TensorSummary, TypeTotal } from "./wasm-types.js";

/** The stable error codes: every error gemma-web.js throws or rejects with is a GemmaWebError with one of them. */
export type GemmaWebErrorCode =
  | "WebGPUUnavailable"
  | "Unsupported"
  | "BadModel"
  | "Integrity"
  | "Quota"
  | "Network"
  | "DeviceLost"
  | "OutOfMemory"
  | "Aborted"
  | "PromptTooLong"
  | "Io";

export const ERROR_CODES: readonly GemmaWebErrorCode[];

export class GemmaWebError extends Error {
  constructor(code: GemmaWebErrorCode, message: string);
  readonly name: "GemmaWebError";
  readonly code: GemmaWebErrorCode;
}

/** How the page talks to a model: "chat" (instruction-tuned, Gemma's turn template) or "text" (a base model). */
export type ModelMode = "chat" | "text";

/** One model of catalog.json. */
export interface CatalogModel {
  id: string;
  name: string;
  /** Absolute (resolved against catalog.json). */
  url: string;
  mode: ModelMode;
  /** The file's exact size, where it was checked. */
  bytes?: number;
  /** The size as the model's repository lists it, where it could not be checked. */
  approxBytes?: number;
  /** Lowercase hex; the download is verified against it. */
  sha256?: string;
  /** Where the file lives on Hugging Face; without a 40-hex `revision` the hub's API pins the commit at load. */
  hf?: { repo: string; file: string; revision?: string };
  verified?: boolean;
  license?: string;
}

export interface Catalog {
  about?: string;
  /** The id of the model a page should offer first. */
  default: string;
  models: CatalogModel[];
}

/** catalog.json next to this module, with every model's URL made absolute. */
export function loadCatalog(): Promise<Catalog>;

/** Whether this browser exposes WebGPU at all (an adapter may still be missing). */
export function hasWebGpu(): boolean;

/** Whether this browser has the Origin Private File System the weight store needs. */
export function hasStorage(): boolean;

/** A model in this browser's storage (complete or not). */
export interface StoredModel {
  /** The storage name; pass it to deleteStoredModel. */
  id: string;
  url: string | null;
  size: number | null;
  /** Bytes the manifest vouches for. */
  storedBytes: number;
  /** The stored file's length (may hold more than storedBytes). */
  fileBytes: number;
  state: "partial" | "verifying" | "complete" | "unreadable";
  sha256: string | null;
  /** Complete and its hash checked: loading it downloads nothing. */
  usable: boolean;
}

export function listStoredModels(): Promise<StoredModel[]>;

/** Deletes a stored model (its id from listStoredModels); waits for a download of it in another tab to stop. */
export function deleteStoredModel(modelId: string): Promise<void>;

/** Loading progress. */
export interface LoadProgress {
  /** "download": into the browser's storage; "waiting": before a retry (the server asked to wait, or the connection
   * broke); "verify": a stored copy is hashed again; "load": weights to the GPU. */
  phase: "download" | "waiting" | "verify" | "load";
  loaded: number;
  total: number;
  /** Bytes that crossed the network so far. */
  fetched: number;
  bytesPerSecond: number;
  secondsLeft: number | null;
  /** "waiting" only: seconds until the retry, and why. */
  retryInSeconds?: number;
  reason?: string;
}

export interface CreateEngineOptions {
  /** A URL of a .gguf file, an id from catalog.json, `hf:org/repo/file.gguf` (optionally `@revision`), a
   * huggingface.co `blob/` or `resolve/` URL, or a File/Blob the user picked. */
  model: string | Blob;
  /** The hub `hf:` names resolve on (default https://huggingface.co). */
  hfEndpoint?: string;
  onProgress?: (progress: LoadProgress) => void;
  /** Aborting it stops the download or load; createEngine then rejects with "Aborted". */
  signal?: AbortSignal;
  /** KV-cache positions (capped by the model's context); default 2048. */
  contextLength?: number;
  /** Download a URL's weights once into the browser's storage (default where there is storage); false streams
   * them with Range requests on every load. */
  store?: boolean;
  /** Where the model runs. "auto" (default): a hardware WebGPU adapter, else the CPU engine (no WebGPU, or only a
   * software adapter such as SwiftShader). "webgpu" and "cpu" insist. */
  backend?: Backend;
  /** CPU engine threads (default: navigator.hardwareConcurrency, at most 8); more than one needs a cross-origin
   * isolated page (COOP/COEP headers). */
  threads?: number;
}

export type Backend = "auto" | "webgpu" | "cpu";

/** What a model string names, found before anything is downloaded. */
export interface ModelDescription {
  /** The catalog id, `org/repo/file.gguf`, or the file name. */
  name: string;
  /** The model's name in the browser's storage (StoredModel.url). */
  url: string;
  /** What is requested: for a hub file, its `/resolve/` URL at `revision`. */
  fetchUrl: string;
  /** Known for catalog and hub models; null for a plain URL (the download learns it). */
  size: number | null;
  sha256: string | null;
  /** The hub commit the file is read at. */
  revision: string | null;
  license: string | null;
  repo: string | null;
  file: string | null;
  entry: CatalogModel | null;
  /** The hub could not be reached and a complete stored copy stands in (size and sha256 as stored; no revision). */
  offline?: true;
}

/** Resolves a catalog id, `hf:` name or URL (a hub's through its API: commit, size, sha256); downloads no weights. */
export function describeModel(model: string, options?: { hfEndpoint?: string; signal?: AbortSignal }): Promise<ModelDescription>;

/** Loads a model into a new engine, which runs in its own worker. */
export function createEngine(options: CreateEngineOptions): Promise<Engine>;

/** A model stored by this load (a URL loaded through the browser's storage). */
export interface StoredLoad {
  id: string;
  url: string;
  size: number;
  sha256: string | null;
  /** Bytes downloaded by this load (0 when it came from storage). */
  fetchedBytes: number;
  fromStorage: boolean;
}

export interface EngineInfo extends ModelInfo {
  /** Where the weights came from, when they went through the browser's storage. */
  stored: StoredLoad | null;
}

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant";
  content: string;
}

export type FinishReason = "stop" | "length" | "abort";

/** Sampling and limits shared by chat and text completions (Gemma's recommended sampling by default). */
export interface SamplingOptions {
  /** Default 256. */
  max_tokens?: number;
  /** Default 1; 0 is greedy. */
  temperature?: number;
  /** Default 64; 0 keeps all tokens. */
  top_k?: number;
  /** Default 0.95. */
  top_p?: number;
  /** Default 1 (none). */
  repetition_penalty?: number;
  /** A whole number 0..2^53. The same seed and request give the same answer; without one, each request draws a
   * fresh seed and reports it as `gemma.seed`. */
  seed?: number;
  /** Aborting it stops the generation and rejects (or ends the stream) with "Aborted". */
  signal?: AbortSignal;
}

export interface ChatCompletionRequest extends SamplingOptions {
  /** The whole conversation, ending with the user's message. Earlier turns this engine already ran are not run
   * again (their KV cache is reused). */
  messages: ChatMessage[];
  stream?: boolean;
}

export interface CompletionRequest extends SamplingOptions {
  /** Raw text the model continues (no chat template). */
  prompt: string;
  stream?: boolean;
}

export interface Usage {
  /** Tokens run through the model this call (earlier turns reused from the cache excluded). */
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  /** Tokens of the conversation already in the KV cache before this call. */
  reused_tokens: number;
  prefill_tok_s: number;
  decode_tok_s: number;
  /** Where the call ran, and on how many threads (1 on WebGPU). */
  backend: "webgpu" | "cpu";
  threads: number;
}

/** Not in OpenAI's schema: token ids and timings. */
export interface GemmaExtra {
  prompt_ids: number[];
  generated_ids: number[];
  prefill_seconds: number;
  decode_seconds: number;
  /** How often the GPU device was lost and the model reloaded during this call. */
  device_recoveries: number;
  /** The sampling seed: the request's, or the one drawn for it (pass it as `seed` to get the same answer). */
  seed: number;
}

export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: [{ index: 0; message: { role: "assistant"; content: string }; finish_reason: FinishReason }];
  usage: Usage;
  gemma: GemmaExtra;
}

/** One streamed piece; the last chunk has an empty delta, the finish_reason, usage and gemma. */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: [{ index: 0; delta: { role?: "assistant"; content?: string }; finish_reason: FinishReason | null }];
  usage?: Usage;
  gemma?: GemmaExtra;
}

export interface TextCompletion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: [{ index: 0; text: string; finish_reason: FinishReason }];
  usage: Usage;
  gemma: GemmaExtra;
}

/** One streamed piece; the last chunk has empty text, the finish_reason, usage and gemma. */
export interface TextCompletionChunk {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: [{ index: 0; text: string; finish_reason: FinishReason | null }];
  usage?: Usage;
  gemma?: GemmaExtra;
}

/** Events of an engine. */
export interface EngineEventMap {
  /** The GPU device was lost; the model is being reloaded from the browser's storage and a running answer
   * continues afterwards. */
  devicelost: CustomEvent<{ message: string }>;
  /** The model is back on a new device. */
  recovered: CustomEvent<{ seconds: number }>;
}

/**
 * A loaded model (createEngine); the class itself is not exported. When the GPU device is lost, the engine loads the
 * model again on a new device from the browser's storage and the running answer goes on where it stopped, with
 * `devicelost` and `recovered` events; a second loss during the same call rejects it with "DeviceLost".
 */
export interface Engine extends EventTarget {
  /** The model's header summary, where it runs and why, the GPU capabilities in use, sizes, and where the weights
   * came from. */
  readonly info: EngineInfo;
  /** The catalog id, the file name of a URL, or the name of a File. */
  readonly model: string;
  /** The catalog entry the model came from, if any. */
  readonly catalogEntry: CatalogModel | null;
  /** The GPU capabilities in use; null on the CPU backend. */
  readonly capabilities: Capabilities | null;
  /** Where the model runs. */
  readonly backend: "webgpu" | "cpu";
  readonly chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
      create(request: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
    };
  };
  readonly completions: {
    create(request: CompletionRequest & { stream: true }): Promise<AsyncIterable<TextCompletionChunk>>;
    create(request: CompletionRequest & { stream?: false }): Promise<TextCompletion>;
    create(request: CompletionRequest): Promise<TextCompletion | AsyncIterable<TextCompletionChunk>>;
  };
  /** Stops the running generation after its current token; it ends normally with finish_reason "abort". */
  interrupt(): void;
  /** Destroys the GPU device as a driver reset would, to try the recovery: the running generation (or the next
   * one) loses its device and the engine recovers (`devicelost`, then `recovered`). */
  simulateDeviceLoss(): void;
  /** Token ids of `text` (BOS first unless `addBos: false`). */
  tokenize(text: string, options?: { addBos?: boolean }): Promise<number[]>;
  /** Forgets the conversation in the KV cache. */
  resetChat(): Promise<void>;
  /** Frees the GPU memory and ends the worker; the engine cannot be used afterwards. */
  unload(): Promise<void>;

  addEventListener<K extends keyof EngineEventMap>(
    type: K,
    listener: (this: Engine, event: EngineEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof EngineEventMap>(
    type: K,
    listener: (this: Engine, event: EngineEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions): void;
}
