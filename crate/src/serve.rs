//! `gemma-web serve`: the development server for the page and the models, on 127.0.0.1 only.
//!
//! tower-http's `ServeDir` already answers single Range requests (206 with Content-Range, 416 when
//! unsatisfiable), sends `Accept-Ranges: bytes` and Last-Modified, honours If-(Un)Modified-Since,
//! refuses `..` in paths and picks `application/wasm` for `.wasm`. What the browser's resumable
//! model download needs beyond that is added here: a strong ETag with If-Range, If-Match and
//! If-None-Match, and the cross-origin isolation headers (COOP/COEP/CORP) on every response.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::Error;

/// The router: `www` at `/`, `models` at `/models/`, and the model listing at `/models/index.json`.
pub fn router(www: &Path, models: &Path) -> Router {
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
        .nest_service("/models", files(models))
        .fallback_service(files(www))
        // Cross-origin isolation gives the page SharedArrayBuffer and precise timers;
        // CORP keeps these files from being embedded by other origins.
        .layer(isolate("cross-origin-opener-policy", "same-origin"))
        .layer(isolate("cross-origin-embedder-policy", "require-corp"))
        .layer(isolate("cross-origin-resource-policy", "same-origin"))
}

/// Serves on an already bound listener until the process is interrupted.
pub async fn serve(listener: tokio::net::TcpListener, www: &Path, models: &Path) -> io::Result<()> {
    axum::serve(listener, router(www, models))
        .with_graceful_shutdown(async {
            // If the signal handler cannot be installed, serve until killed.
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
        .await
}

/// Binds 127.0.0.1:`port` (0 picks a free port), prints the URL and serves.
pub async fn run(port: u16, www: PathBuf, models: PathBuf) -> Result<(), Error> {
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
    serve(listener, &www, &models).await?;
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

/// Percent-encodes everything but unreserved characters, so any file name is one path segment.
fn percent_encode_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
