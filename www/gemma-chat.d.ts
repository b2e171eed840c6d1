// Types of gemma-chat.js: the <gemma-chat> element (importing the module defines it).

import type { Engine, EngineInfo, FinishReason, GemmaWebError, GemmaWebErrorCode, LoadProgress, ModelMode, Usage }
  from "./gemma-web.js";

/** Where the widget stands (also its `state` attribute, for styling: `gemma-chat[state="ready"]`). */
export type GemmaChatState = "idle" | "unsupported" | "consent" | "loading" | "ready" | "answering" | "error";

export interface GemmaChatReadyDetail {
  /** The catalog id or file name of the loaded model. */
  model: string;
  mode: ModelMode;
  info: EngineInfo;
}

/** The `done` event's detail, and what ask() resolves with. */
export interface GemmaChatAnswer {
  /** The answer as shown: the concatenated `token` events. */
  text: string;
  /** "stop" also when a base model's answer ended at a stop sequence the widget watches for. */
  finish_reason: FinishReason;
  usage: Usage | null;
}

export interface GemmaChatErrorDetail {
  code: GemmaWebErrorCode;
  message: string;
  error: GemmaWebError;
}

/** The widget's own events; they bubble and cross shadow roots (composed). */
export interface GemmaChatOwnEventMap {
  progress: CustomEvent<LoadProgress>;
  ready: CustomEvent<GemmaChatReadyDetail>;
  /** A piece of the answer as it is shown. */
  token: CustomEvent<{ text: string }>;
  done: CustomEvent<GemmaChatAnswer>;
  error: CustomEvent<GemmaChatErrorDetail>;
  /** The GPU was lost; the engine reloads the model from storage and the answer continues. */
  devicelost: CustomEvent<{ message: string }>;
  recovered: CustomEvent<{ seconds: number }>;
}

export interface GemmaChatEventMap extends Omit<HTMLElementEventMap, keyof GemmaChatOwnEventMap>, GemmaChatOwnEventMap {}

export class GemmaChatElement extends HTMLElement {
  static readonly observedAttributes: string[];

  /** `model`: a URL of a .gguf file or an id from catalog.json. Changing it unloads the current model. */
  model: string;
  /** `system`: the instructions in front of the conversation. */
  system: string;
  /** `loading`: "interaction" (default: show the size and wait for a click), "lazy" (when scrolled into view) or
   * "eager". A model already in the browser's storage loads at once in every mode. */
  loading: "interaction" | "lazy" | "eager";
  /** `context-selector`: a CSS selector whose element's text goes into the system prompt, cut to fit the context. */
  contextSelector: string;
  /** `max-tokens`: the longest answer (default 256). */
  maxTokens: number;
  /** `temperature`: sampling temperature (0 is greedy); undefined uses gemma-web's default. */
  temperature: number | undefined;
  /** `backend`: where the model runs, read when it loads: "auto" (default: a hardware GPU, else the CPU), "webgpu"
   * (a browser without a usable GPU gets the "unsupported" state) or "cpu". */
  backend: "auto" | "webgpu" | "cpu";

  readonly state: GemmaChatState;
  /** The loaded engine, or null. */
  readonly engine: Engine | null;
  /** How the model is asked, once it is loaded: "chat", or "text" for a base model (a Question/Answer text). */
  readonly mode: ModelMode | null;
  /** The last error shown, or null. */
  readonly error: GemmaWebError | null;

  /** Downloads (once) and loads the model, as the consent button does; resolves with the engine. */
  load(): Promise<Engine>;
  /** Asks a question as the reader would (it appears in the widget with its streamed answer). */
  ask(question: string): Promise<GemmaChatAnswer>;
  /** Stops the answer being written after its current token. */
  interrupt(): void;
  /** Forgets the conversation. */
  clear(): Promise<void>;

  addEventListener<K extends keyof GemmaChatEventMap>(
    type: K,
    listener: (this: GemmaChatElement, event: GemmaChatEventMap[K]) => unknown,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject,
    options?: boolean | AddEventListenerOptions): void;
  removeEventListener<K extends keyof GemmaChatEventMap>(
    type: K,
    listener: (this: GemmaChatElement, event: GemmaChatEventMap[K]) => unknown,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(type: string, listener: EventListenerOrEventListenerObject,
    options?: boolean | EventListenerOptions): void;
}

declare global {
  interface HTMLElementTagNameMap {
    "gemma-chat": GemmaChatElement;
  }
}
