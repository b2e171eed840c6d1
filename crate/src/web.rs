//! The wasm surface the page calls (wasm32 only). Errors reach JS as `Error` objects with a stable
//! `code` property (`Error::code()`), so the page can tell a bad model from a network failure.
//! Values cross to JS and back through serde-wasm-bindgen; their TypeScript types are
//! `www/wasm-types.d.ts`, which the generated `pkg/gemma_web.d.ts` imports.

use serde::de::DeserializeOwned;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::gguf::{parse_header, HeaderParse};
use crate::model::loader::next_header_read;
use crate::summary::HeaderSummary;
use crate::Error;

// The types the generated declarations name (`unchecked_return_type` and friends) are hand-written
// in www/wasm-types.d.ts, which the npm package ships next to pkg/.
#[wasm_bindgen(typescript_custom_section)]
const TS_IMPORTS: &'static str = r#"
import type {
  ByteReader, Capabilities, GenerateRequest, GenerateResult, HeaderSummary, LoadOptions, LoadProgress, ModelInfo,
  NeedMore, OnPiece,
} from "../wasm-types.js";
"#;

/// `value` as a plain JS value: objects for structs, arrays for sequences, `null` for `None`,
/// numbers for integers (all below 2^53 here: byte counts, sizes, ids).
pub fn to_js<T: Serialize + ?Sized>(value: &T) -> Result<JsValue, Error> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| Error::Io(format!("a value for JS: {e}")))
}

/// A JS value as `T`; `undefined` and `null` read as `T::default()`. A value of the wrong shape is
/// `Unsupported`, naming `what` (the caller's argument).
pub fn from_js<T: DeserializeOwned + Default>(value: JsValue, what: &str) -> Result<T, Error> {
    if value.is_undefined() || value.is_null() {
        return Ok(T::default());
    }
    serde_wasm_bindgen::from_value(value).map_err(|e| Error::Unsupported(format!("{what}: {e}")))
}

/// Reads a GGUF header from the first bytes of a file of `file_length` bytes: either the header's
/// summary or, when the prefix ends inside the header, `{ needMore }` with the prefix length to
/// read next (grown as the loader grows its own, never past its 256 MiB cap: a header that needs
/// more is `BadModel`).
#[wasm_bindgen(js_name = readGgufHeader, unchecked_return_type = "NeedMore | HeaderSummary")]
pub fn read_gguf_header(prefix: &[u8], file_length: f64) -> Result<JsValue, js_sys::Error> {
    read(prefix, file_length).map_err(|e| js_error(&e))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NeedMore {
    need_more: u64,
}

fn read(prefix: &[u8], file_length: f64) -> Result<JsValue, Error> {
    let file_len = js_length(file_length)?;
    match parse_header(prefix, file_len)? {
        HeaderParse::NeedMore { at_least } => to_js(&NeedMore {
            need_more: next_header_read(at_least, prefix.len() as u64, file_len)?,
        }),
        // A count past 2^53 cannot be a JS number: only a hostile header declares one.
        HeaderParse::Complete(header) => to_js(&HeaderSummary::new(&header, file_len)?)
            .map_err(|e| Error::BadModel(format!("header summary: {e}"))),
    }
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

thread_local! {
    /// A message channel that wakes [`yield_to_event_loop`]: a message posted to one port is
    /// delivered as a task of its own, after whatever else is queued (no timer clamping).
    static WAKER: Option<(web_sys::MessageChannel, Closure<dyn FnMut()>)> = {
        let channel = web_sys::MessageChannel::new().ok()?;
        let on_message = Closure::<dyn FnMut()>::new(|| {
            if let Some(resolve) = RESOLVE.with(|r| r.borrow_mut().take()) {
                let _ = resolve.call0(&JsValue::NULL);
            }
        });
        channel.port1().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some((channel, on_message))
    };
    static RESOLVE: std::cell::RefCell<Option<js_sys::Function>> = const { std::cell::RefCell::new(None) };
}

/// Lets the worker's event loop run once (its queued messages: an interrupt, a tokenize call)
/// before the caller goes on. The CPU engine computes on the worker's own thread, so without
/// this nothing else would be handled until the generation ended.
pub async fn yield_to_event_loop() {
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let posted = WAKER.with(|w| {
            w.as_ref()
                .is_some_and(|(channel, _)| channel.port2().post_message(&JsValue::NULL).is_ok())
        });
        if posted {
            RESOLVE.with(|r| *r.borrow_mut() = Some(resolve));
        } else {
            let _ = resolve.call0(&JsValue::NULL);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
