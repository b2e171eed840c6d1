//! `gemma-web serve`: the development server for the page and the models, on 127.0.0.1 only.
//!
//! tower-http's `ServeDir` already answers single Range requests (206 with Content-Range, 416 when
//! unsatisfiable), sends `Accept-Ranges: bytes` and Last-Modified, honours If-(Un)Modified-Since,
//! refuses `..` in paths and picks `application/wasm` for `.wasm`. What the browser's resumable
//! model download needs beyond that is added here: a strong ETag with If-Range, If-Match and
//! If-None-Match, and the cross-origin isolation headers (COOP/COEP/CORP) on every response.
//! Only requests for a loopback Host are answered (see [`is_loopback_host`]).

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::Error;

/// The router: `www` at `/`, `models` at `/models/`, and the model listing at `/models/index.json`.
pub fn router(www: &Path, models: &Path) -> Router {
    router_with(www, models, TestHooks::default())
}

/// [`router`] with test hooks on the model files.
pub fn router_with(www: &Path, models: &Path, hooks: TestHooks) -> Router {
    // Files are checked on every load (with the ETag a revalidation is a cheap 304), so an edited page
    // or a rebuilt wasm package is never served stale from the browser cache.
    let files = |dir: &Path| {
        ServiceBuilder::new()
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache"),
            ))
            .layer(middleware::from_fn(conditional))
            .service(ServeDir::new(dir))
    };
    let isolate = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        )
    };
    Router::new()
        .route(
            "/models/index.json",
            get(model_index).with_state(models.to_path_buf()),
        )
        .nest_service(
            "/models",
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(
                    Arc::new(HookState::new(hooks)),
                    model_hooks,
                ))
                .service(files(models)),
        )
        .fallback_service(files(www))
        // Cross-origin isolation gives the page SharedArrayBuffer and precise timers;
        // CORP keeps these files from being embedded by other origins.
        .layer(isolate("cross-origin-opener-policy", "same-origin"))
        .layer(isolate("cross-origin-embedder-policy", "require-corp"))
        .layer(isolate("cross-origin-resource-policy", "same-origin"))
        .layer(middleware::from_fn(loopback_only))
}

/// DNS rebinding: a page on another site can point its own name at 127.0.0.1 and then read what
/// this server answers as if it were its own. Its requests carry that name in Host, so a request
/// is answered only when Host names the loopback interface; anything else gets 421.
async fn loopback_only(req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).map(|v| v.to_str());
    match host {
        Some(Ok(h)) if is_loopback_host(h) => next.run(req).await,
        _ => {
            let shown = match host {
                None => "no Host header".to_string(),
                Some(Ok(h)) => format!("Host {h:?}"),
                Some(Err(_)) => "a Host header that is not ASCII".to_string(),
            };
            (
                StatusCode::MISDIRECTED_REQUEST,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "gemma-web serve answers only http://127.0.0.1:PORT, http://localhost:PORT \
                     or http://[::1]:PORT, not a request with {shown}\n"
                ),
            )
                .into_response()
        }
    }
}

/// Whether a Host header value is `127.0.0.1`, `localhost` or `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some(split) => split,
            None => return false,
        },
        None => match host.find(':') {
            Some(i) => host.split_at(i),
            None => (host, ""),
        },
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|p| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
        });
    let name_ok = match host.starts_with('[') {
        true => name == "::1",
        false => name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost"),
    };
    port_ok && name_ok
}

/// Serves on an already bound listener until the process is interrupted.
pub async fn serve(listener: tokio::net::TcpListener, www: &Path, models: &Path) -> io::Result<()> {
    serve_with(listener, www, models, TestHooks::default()).await
}

/// [`serve`] with test hooks on the model files.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    www: &Path,
    models: &Path,
    hooks: TestHooks,
) -> io::Result<()> {
    axum::serve(listener, router_with(www, models, hooks))
        .with_graceful_shutdown(async {
            // If the signal handler cannot be installed, serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
}

/// Binds 127.0.0.1:`port` (0 picks a free port), prints the URL and serves.
pub async fn run(port: u16, www: PathBuf, models: PathBuf, hooks: TestHooks) -> Result<(), Error> {
    if !www.join("index.html").is_file() {
        return Err(Error::Io(format!(
            "{} has no index.html (run from the repository root or pass --www)",
            www.display()
        )));
    }
    if !www.join("pkg").join("gemma_web.js").is_file() {
        eprintln!(
            "warning: {} is missing: build it with `make wasm`",
            www.join("pkg/gemma_web.js").display()
        );
    }
    if !models.is_dir() {
        eprintln!("warning: models folder {} does not exist", models.display());
    }
    let listener = tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await
        .map_err(|e| Error::Io(format!("cannot listen on 127.0.0.1:{port}: {e}")))?;
    let addr = listener.local_addr()?;
    println!("gemma-web: serving http://{addr}/");
    println!("  page:   {}", www.display());
    println!(
        "  models: {} (listed at /models/index.json)",
        models.display()
    );
    serve_with(listener, &www, &models, hooks).await?;
    Ok(())
}

#[derive(Serialize)]
struct ModelEntry {
    name: String,
    url: String,
    size: u64,
}

#[derive(Serialize)]
struct ModelIndex {
    models: Vec<ModelEntry>,
}

/// `/models/index.json`: the `.gguf` files in the models folder with their sizes, sorted by name.
async fn model_index(State(dir): State<PathBuf>) -> Response {
    let mut models = Vec::new();
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(entries) => entries,
        // No models folder yet is a valid state (the page explains how to get one).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return index_response(models),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    loop {
        let entry = match entries.next_entry().await {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        };
        // Names that are not UTF-8 cannot be put in a URL faithfully: skip them.
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !name.ends_with(".gguf") {
            continue;
        }
        // Follows symlinks, so a linked model is listed with its real size.
        match tokio::fs::metadata(entry.path()).await {
            Ok(meta) if meta.is_file() => models.push(ModelEntry {
                url: format!("/models/{}", percent_encode_segment(&name)),
                name,
                size: meta.len(),
            }),
            _ => continue,
        }
    }
    models.sort_by(|a, b| a.name.cmp(&b.name));
    index_response(models)
}

fn index_response(models: Vec<ModelEntry>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(ModelIndex { models }),
    )
        .into_response()
}

/// Everything but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters, so any file name is one path segment.
fn percent_encode_segment(name: &str) -> String {
    utf8_percent_encode(name, NOT_UNRESERVED).to_string()
}

/// Adds a strong ETag to file responses and evaluates If-Match, If-None-Match and If-Range
/// (RFC 9110 section 13) in front of `ServeDir`, which evaluates none of them.
async fn conditional(mut req: Request, next: Next) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return next.run(req).await;
    }
    // ServeDir answers HEAD from the file's metadata without reading it: that gives the validators
    // of the file as it is now, before the real request is answered.
    let probe = Request::builder()
        .method(Method::HEAD)
        .uri(req.uri().clone())
        .body(Body::empty());
    let Ok(probe) = probe else {
        return next.run(req).await;
    };
    let head = next.clone().run(probe).await;
    if head.status() != StatusCode::OK {
        return next.run(req).await;
    }
    let Some(validators) = Validators::of(head.headers()) else {
        return next.run(req).await;
    };
    let etag = validators.etag();

    let headers = req.headers();
    if let Some(if_match) = headers.get(header::IF_MATCH) {
        if !etag_list_matches(if_match, &etag, true) {
            return with_etag(StatusCode::PRECONDITION_FAILED.into_response(), &etag);
        }
    }
    if let Some(if_none_match) = headers.get(header::IF_NONE_MATCH) {
        if etag_list_matches(if_none_match, &etag, false) {
            return with_etag(StatusCode::NOT_MODIFIED.into_response(), &etag);
        }
        // If-None-Match takes precedence over If-Modified-Since (RFC 9110 13.1.3), which ServeDir
        // would otherwise evaluate on its own.
        req.headers_mut().remove(header::IF_MODIFIED_SINCE);
    }
    if let Some(if_range) = req.headers().get(header::IF_RANGE) {
        if !validators.if_range_matches(if_range) {
            // The client's partial copy is of another version: send the whole current file.
            req.headers_mut().remove(header::RANGE);
        }
    }
    let res = next.run(req).await;
    match res.status() {
        StatusCode::OK
        | StatusCode::PARTIAL_CONTENT
        | StatusCode::NOT_MODIFIED
        | StatusCode::RANGE_NOT_SATISFIABLE => with_etag(res, &etag),
        _ => res,
    }
}

fn with_etag(mut res: Response, etag: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(etag) {
        res.headers_mut().insert(header::ETAG, value);
    }
    res
}

/// What identifies one version of a file: its size and modification time (whole seconds, as in
/// Last-Modified). Any rewrite of a model changes one of them in practice; nginx uses the same pair.
struct Validators {
    size: u64,
    modified: SystemTime,
}

impl Validators {
    fn of(headers: &HeaderMap) -> Option<Self> {
        let size = headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()?;
        let modified =
            httpdate::parse_http_date(headers.get(header::LAST_MODIFIED)?.to_str().ok()?).ok()?;
        Some(Validators { size, modified })
    }

    fn etag(&self) -> String {
        let secs = self
            .modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("\"{:x}-{:x}\"", self.size, secs)
    }

    /// If-Range holds either an entity tag (compared strongly) or an HTTP date (must equal Last-Modified).
    fn if_range_matches(&self, value: &HeaderValue) -> bool {
        let Ok(value) = value.to_str() else {
            return false;
        };
        let value = value.trim();
        if value.starts_with('"') || value.starts_with("W/") {
            // A weak tag never matches in If-Range.
            value == self.etag()
        } else {
            httpdate::parse_http_date(value).is_ok_and(|date| date == self.modified)
        }
    }
}

/// Whether an If-Match / If-None-Match list (`*` or comma-separated entity tags) names `etag`.
/// `strong` comparison ignores weak tags; weak comparison ignores the `W/` prefix.
fn etag_list_matches(list: &HeaderValue, etag: &str, strong: bool) -> bool {
    let Ok(list) = list.to_str() else {
        return false;
    };
    if list.trim() == "*" {
        return true;
    }
    list.split(',')
        .map(str::trim)
        .any(|tag| match tag.strip_prefix("W/") {
            Some(weak) => !strong && weak == etag,
            None => tag == etag,
        })
}

/// Test-only behaviour of the model files (hidden `serve` flags), for the browser store's tests:
/// count what crosses the network, cut a download, corrupt a model in flight.
#[derive(Clone, Debug, Default)]
pub struct TestHooks {
    /// Append one JSON line per model request: method, path, range, status, body bytes sent.
    pub log_requests: Option<PathBuf>,
    /// Drop the connection once this many model body bytes were sent in total (once per server).
    pub fault_after_bytes: Option<u64>,
    /// Flip the lowest bit of the byte at this file offset in every model body that carries it.
    pub flip_byte: Option<u64>,
}

struct HookState {
    hooks: TestHooks,
    log: Option<Mutex<std::fs::File>>,
    /// Model body bytes sent so far, and whether the one fault has happened.
    sent: AtomicU64,
    faulted: AtomicBool,
}

impl HookState {
    fn new(hooks: TestHooks) -> Self {
        let log = hooks.log_requests.as_ref().and_then(|path| {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(f) => Some(Mutex::new(f)),
                Err(e) => {
                    eprintln!("warning: cannot open request log {}: {e}", path.display());
                    None
                }
            }
        });
        HookState {
            hooks,
            log,
            sent: AtomicU64::new(0),
            faulted: AtomicBool::new(false),
        }
    }

    fn active(&self) -> bool {
        self.log.is_some()
            || self.hooks.fault_after_bytes.is_some()
            || self.hooks.flip_byte.is_some()
    }
}

async fn model_hooks(State(state): State<Arc<HookState>>, req: Request, next: Next) -> Response {
    if !state.active() {
        return next.run(req).await;
    }
    let entry = LogEntry {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        range: req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status: 0,
        bytes: 0,
    };
    let res = next.run(req).await;
    // The body's first byte is at the start of Content-Range for a 206, at 0 otherwise.
    let start = res
        .headers()
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes "))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (parts, body) = res.into_parts();
    let stream = HookedBody {
        inner: body.into_data_stream(),
        state,
        offset: start,
        cut: false,
        entry: LogEntry {
            status: parts.status.as_u16(),
            ..entry
        },
    };
    Response::from_parts(parts, Body::from_stream(stream))
}

#[derive(Serialize)]
struct LogEntry {
    method: String,
    path: String,
    range: Option<String>,
    status: u16,
    bytes: u64,
}

/// A response body that counts, corrupts or cuts what it passes on, and logs the request when it
/// is dropped (after the last byte, or when the connection went away).
struct HookedBody {
    inner: BodyDataStream,
    state: Arc<HookState>,
    /// File offset of the next byte.
    offset: u64,
    cut: bool,
    entry: LogEntry,
}

impl Stream for HookedBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.cut {
            // An error from the body makes hyper abort the connection mid-response.
            return Poll::Ready(Some(Err(io::Error::other(
                "test fault: connection dropped",
            ))));
        }
        let mut bytes = match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => bytes,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(io::Error::other(e)))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        let len = bytes.len() as u64;
        if let Some(at) = this.state.hooks.flip_byte {
            if let Some(i) = at.checked_sub(this.offset).filter(|&i| i < len) {
                let mut copy = bytes.to_vec();
                if let Some(b) = usize::try_from(i).ok().and_then(|i| copy.get_mut(i)) {
                    *b ^= 0x01;
                }
                bytes = Bytes::from(copy);
            }
        }
        if let Some(limit) = this.state.hooks.fault_after_bytes {
            let before = this.state.sent.fetch_add(len, Ordering::SeqCst);
            if before.saturating_add(len) > limit
                && !this.state.faulted.swap(true, Ordering::SeqCst)
            {
                let keep = limit.saturating_sub(before).min(len);
                this.cut = true;
                bytes = bytes.slice(..keep as usize);
            }
        }
        this.offset = this.offset.saturating_add(bytes.len() as u64);
        this.entry.bytes += bytes.len() as u64;
        Poll::Ready(Some(Ok(bytes)))
    }
}

impl Drop for HookedBody {
    fn drop(&mut self) {
        let Some(log) = &self.state.log else { return };
        let Ok(line) = serde_json::to_string(&self.entry) else {
            return;
        };
        if let Ok(mut f) = log.lock() {
            use std::io::Write;
            let _ = writeln!(f, "{line}");
        }
    }
}
