//! The wasm surface the page calls (wasm32 only). Errors reach JS as `Error` objects with a stable
//! `code` property (`Error::code()`), so the page can tell a bad model from a network failure.

use wasm_bindgen::prelude::*;

use crate::gguf::{parse_header, HeaderParse};
use crate::summary::HeaderSummary;
use crate::Error;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** The bytes from the start of the file that the header needs: fetch at least this many. */
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
/** Thrown by every function of this module. */
export interface GemmaError extends Error {
  code: "WebGPUUnavailable" | "Unsupported" | "BadModel" | "Integrity" | "Quota" | "Network"
      | "DeviceLost" | "OutOfMemory" | "Aborted" | "Io";
}
"#;

/// Reads a GGUF header from the first bytes of a file of `file_length` bytes: either the header's
/// summary or, when the prefix ends inside the header, `{ needMore }` with the prefix length it needs.
#[wasm_bindgen(js_name = readGgufHeader, unchecked_return_type = "NeedMore | HeaderSummary")]
pub fn read_gguf_header(prefix: &[u8], file_length: f64) -> Result<JsValue, js_sys::Error> {
    read(prefix, file_length).map_err(|e| js_error(&e))
}

fn read(prefix: &[u8], file_length: f64) -> Result<JsValue, Error> {
    let file_len = js_length(file_length)?;
    // JSON is the plainest bridge: every number here is a byte count or a size below 2^53, and
    // serde_json writes f32 fields in their shortest form (1e-6, not 9.99999997e-7).
    let json = match parse_header(prefix, file_len)? {
        HeaderParse::NeedMore { at_least } => format!("{{\"needMore\":{at_least}}}"),
        HeaderParse::Complete(header) => {
            serde_json::to_string(&HeaderSummary::new(&header, file_len)?)
                .map_err(|e| Error::BadModel(format!("header summary: {e}")))?
        }
    };
    js_sys::JSON::parse(&json)
        .map_err(|_| Error::BadModel("header summary is not valid JSON".into()))
}

/// A JS number that is a whole, non-negative byte count.
fn js_length(n: f64) -> Result<u64, Error> {
    // 2^53: beyond it JS numbers skip integers, so the length cannot have come from a real file.
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= MAX_SAFE {
        Ok(n as u64)
    } else {
        Err(Error::BadModel(format!(
            "file length {n} is not a byte count"
        )))
    }
}

/// A JS `Error` carrying `code`.
pub fn js_error(e: &Error) -> js_sys::Error {
    let err = js_sys::Error::new(&e.to_string());
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    err
}
