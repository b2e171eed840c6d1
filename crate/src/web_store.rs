//! The model store's wasm surface (wasm32 only), used by `www/store.js` in a dedicated worker.
//! JS moves the bytes (fetch, OPFS writes, locks); every decision is `storage::Download`'s, and
//! the sha256 is computed here as the bytes arrive. [`OpfsFile`] gives the engine's loader bounded
//! reads of a stored model through an OPFS sync access handle.

use wasm_bindgen::prelude::*;

use crate::model::ByteSource;
use crate::storage::{self, Download, Manifest, Restart, Step};
use crate::web::js_error;
use crate::Error;

#[wasm_bindgen(typescript_custom_section)]
const TS_STORE_TYPES: &'static str = r#"
/** The next thing the store glue does: read stored bytes back for the hash, fetch a range, or finish. */
export interface StoreStep { kind: "rehash" | "fetch" | "finish"; offset: number; length: number }
"#;

#[wasm_bindgen]
extern "C" {
    /// `FileSystemSyncAccessHandle` (dedicated workers only).
    #[wasm_bindgen(js_name = FileSystemSyncAccessHandle)]
    pub type SyncAccessHandle;

    #[wasm_bindgen(method, catch)]
    fn read(this: &SyncAccessHandle, buf: &mut [u8], options: &JsValue) -> Result<f64, JsValue>;

    #[wasm_bindgen(method, catch, js_name = getSize)]
    fn get_size(this: &SyncAccessHandle) -> Result<f64, JsValue>;
}

/// One download or verification of a stored model (see `storage::Download`).
#[wasm_bindgen]
pub struct StoreDownload {
    inner: Download,
    discard: Option<String>,
}

#[wasm_bindgen]
impl StoreDownload {
    /// Plans the download of `url` (`size` bytes, `etag` where it identifies the file, `revision`
    /// the hub commit it was resolved at) given the stored manifest's JSON, if any. When `discard` is
    /// set afterwards, the stored file must be emptied.
    #[wasm_bindgen(constructor)]
    pub fn new(
        url: &str,
        stored_manifest: Option<String>,
        size: f64,
        etag: Option<String>,
        revision: Option<String>,
        sha256: Option<String>,
        chunk_bytes: f64,
    ) -> Result<StoreDownload, js_sys::Error> {
        let plan = || -> Result<StoreDownload, Error> {
            let remote = storage::Remote {
                size: js_u64(size, "model size")?,
                etag,
                revision,
            };
            let (inner, restart) = Download::plan(
                url,
                stored_manifest.as_deref(),
                &remote,
                sha256.as_deref(),
                js_u64(chunk_bytes, "chunk size")?,
            )?;
            let discard = match restart {
                Some(Restart::Discard(why)) => Some(why),
                Some(Restart::Fresh) | None => None,
            };
            Ok(StoreDownload { inner, discard })
        };
        plan().map_err(|e| js_error(&e))
    }

    /// Re-hashes a complete stored model and checks it against its recorded hash.
    #[wasm_bindgen(js_name = verifyStored)]
    pub fn verify_stored(manifest: &str) -> Result<StoreDownload, js_sys::Error> {
        Download::verify_stored(manifest)
            .map(|inner| StoreDownload {
                inner,
                discard: None,
            })
            .map_err(|e| js_error(&e))
    }

    /// Why the stored bytes cannot be reused (the file must be emptied), or undefined.
    #[wasm_bindgen(getter)]
    pub fn discard(&self) -> Option<String> {
        self.discard.clone()
    }

    #[wasm_bindgen(js_name = nextStep, unchecked_return_type = "StoreStep")]
    pub fn next_step(&self) -> JsValue {
        let (kind, offset, len) = match self.inner.next_step() {
            Step::Rehash { offset, len } => ("rehash", offset, len),
            Step::Fetch { offset, len } => ("fetch", offset, len),
            Step::Finish => ("finish", 0, 0),
        };
        let step = js_sys::Object::new();
        // Setting plain properties on a fresh object cannot fail.
        let _ = js_sys::Reflect::set(&step, &"kind".into(), &kind.into());
        let _ = js_sys::Reflect::set(&step, &"offset".into(), &(offset as f64).into());
        let _ = js_sys::Reflect::set(&step, &"length".into(), &(len as f64).into());
        step.into()
    }

    /// Stored bytes read back at `offset` for a "rehash" step.
    pub fn rehashed(&mut self, offset: f64, bytes: &[u8]) -> Result<(), js_sys::Error> {
        js_u64(offset, "offset")
            .and_then(|o| self.inner.rehashed(o, bytes))
            .map_err(|e| js_error(&e))
    }

    /// Bytes of a "fetch" step, already written at `offset`.
    pub fn received(&mut self, offset: f64, bytes: &[u8]) -> Result<(), js_sys::Error> {
        js_u64(offset, "offset")
            .and_then(|o| self.inner.received(o, bytes))
            .map_err(|e| js_error(&e))
    }

    /// Checks the hash and marks the manifest complete; an `Integrity` error otherwise.
    pub fn finish(&mut self) -> Result<String, js_sys::Error> {
        self.inner.finish().map_err(|e| js_error(&e))
    }

    /// The manifest as JSON, to be written after the bytes it claims were flushed.
    #[wasm_bindgen(getter)]
    pub fn manifest(&self) -> String {
        self.inner.manifest().to_json()
    }

    #[wasm_bindgen(getter)]
    pub fn size(&self) -> f64 {
        self.inner.manifest().size as f64
    }

    #[wasm_bindgen(getter, js_name = bytesToFetch)]
    pub fn bytes_to_fetch(&self) -> f64 {
        self.inner.bytes_to_fetch() as f64
    }

    #[wasm_bindgen(getter, js_name = bytesStored)]
    pub fn bytes_stored(&self) -> f64 {
        self.inner.manifest().stored_bytes() as f64
    }

    #[wasm_bindgen(getter, js_name = bytesHashed)]
    pub fn bytes_hashed(&self) -> f64 {
        self.inner.bytes_hashed() as f64
    }
}

/// A Quota error with both numbers when `needed` more bytes do not fit `quota - usage`.
#[wasm_bindgen(js_name = checkQuota)]
pub fn check_quota(needed: f64, usage: f64, quota: f64) -> Result<(), js_sys::Error> {
    let n = |x: f64| {
        if x.is_finite() && x > 0.0 {
            x as u64
        } else {
            0
        }
    };
    storage::check_quota(n(needed), n(usage), n(quota)).map_err(|e| js_error(&e))
}

/// The storage name of the model at (absolute) `url`.
#[wasm_bindgen(js_name = modelId)]
pub fn model_id(url: &str) -> String {
    storage::model_id(url)
}

/// Whether a stored manifest describes a complete model whose hash agrees with `sha256` (if given).
#[wasm_bindgen(js_name = manifestUsable)]
pub fn manifest_usable(manifest: &str, sha256: Option<String>) -> bool {
    Manifest::from_json(manifest).is_ok_and(|m| m.is_usable(sha256.as_deref()))
}

/// A stored model file, read through an OPFS sync access handle in bounded slices.
#[wasm_bindgen]
pub struct OpfsFile {
    handle: SyncAccessHandle,
    len: u64,
}

#[wasm_bindgen]
impl OpfsFile {
    #[wasm_bindgen(constructor)]
    pub fn new(handle: SyncAccessHandle) -> Result<OpfsFile, js_sys::Error> {
        let len = handle
            .get_size()
            .map_err(|e| js_error(&io_error("size of the stored model", &e)))?;
        let len = js_u64(len, "stored model size").map_err(|e| js_error(&e))?;
        Ok(OpfsFile { handle, len })
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.len as f64
    }

    /// The stored model's GGUF header summary, read through the engine's loader (bounded reads).
    #[wasm_bindgen(js_name = readHeader, unchecked_return_type = "HeaderSummary")]
    pub async fn read_header(&mut self) -> Result<JsValue, js_sys::Error> {
        let summary = async {
            let header = crate::model::loader::read_header(self).await?;
            crate::web::to_js(&crate::summary::HeaderSummary::new(&header, self.len)?)
        };
        summary.await.map_err(|e| js_error(&e))
    }

    /// `len` bytes at `offset` (at most [`OpfsFile::MAX_JS_READ`] per call).
    #[wasm_bindgen(js_name = readAt)]
    pub fn read_at_js(&self, offset: f64, len: u32) -> Result<Vec<u8>, js_sys::Error> {
        let read = || -> Result<Vec<u8>, Error> {
            if len > Self::MAX_JS_READ {
                return Err(Error::Io(format!(
                    "read of {len} bytes: at most {} per call",
                    Self::MAX_JS_READ
                )));
            }
            let mut buf = vec![0; len as usize];
            self.fill(js_u64(offset, "offset")?, &mut buf)?;
            Ok(buf)
        };
        read().map_err(|e| js_error(&e))
    }
}

impl OpfsFile {
    pub const MAX_JS_READ: u32 = 64 << 20;

    fn fill(&self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                Error::BadModel(format!(
                    "read of {} bytes at {offset} past the end of a {}-byte stored model",
                    buf.len(),
                    self.len
                ))
            })?;
        let mut done = 0usize;
        while let Some(rest) = buf.get_mut(done..).filter(|r| !r.is_empty()) {
            let at = offset + done as u64;
            let options = js_sys::Object::new();
            let _ = js_sys::Reflect::set(&options, &"at".into(), &(at as f64).into());
            // The handle reads straight into this slice of wasm memory.
            let n = self
                .handle
                .read(rest, &options)
                .map_err(|e| io_error("reading the stored model", &e))?;
            if !(n >= 1.0 && n <= rest.len() as f64) {
                return Err(Error::Io(format!(
                    "stored model ended at {at} while reading up to {end}"
                )));
            }
            done += n as usize;
        }
        Ok(())
    }
}

impl ByteSource for OpfsFile {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.fill(offset, buf)
    }
}

fn io_error(what: &str, e: &JsValue) -> Error {
    let msg = js_sys::Error::from(e.clone()).message();
    let name = js_sys::Reflect::get(e, &"name".into())
        .ok()
        .and_then(|n| n.as_string())
        .unwrap_or_default();
    if name == "QuotaExceededError" {
        Error::Quota(format!("{what}: {msg}"))
    } else {
        Error::Io(format!("{what}: {name} {msg}"))
    }
}

/// A JS number that is a whole, non-negative count below 2^53.
fn js_u64(n: f64, what: &str) -> Result<u64, Error> {
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;
    if n.is_finite() && n >= 0.0 && n.fract() == 0.0 && n <= MAX_SAFE {
        Ok(n as u64)
    } else {
        Err(Error::Io(format!("{what} {n} is not a byte count")))
    }
}
