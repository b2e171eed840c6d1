//! `gemma-web serve` over real HTTP on an ephemeral port: what the browser's ranged,
//! resumable model download and the cross-origin-isolated page rely on.
#![cfg(not(target_arch = "wasm32"))]

use std::net::SocketAddr;
use std::path::Path;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// An odd size, so ranges and the suffix cannot line up with any buffer size by luck.
const MODEL_LEN: usize = 100_003;

struct Site {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    addr: SocketAddr,
    model: Vec<u8>,
}

fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 56) as u8
        })
        .collect()
}

/// www/ with a page and a wasm file, models/ with one model and a non-model file, and a secret
/// beside them (named like the repository's Cargo.toml) that must never be served.
async fn site() -> Site {
    site_with(gemma_web::serve::TestHooks::default()).await
}

async fn site_with(hooks: gemma_web::serve::TestHooks) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let www = root.join("www");
    let models = root.join("models");
    std::fs::create_dir_all(www.join("pkg")).unwrap();
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(www.join("index.html"), "<!doctype html><title>t</title>").unwrap();
    std::fs::write(www.join("pkg/gemma_web_bg.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let model = pseudo_random(MODEL_LEN, 7);
    std::fs::write(models.join("tiny.gguf"), &model).unwrap();
    std::fs::write(models.join("notes.txt"), "not a model").unwrap();
    std::fs::write(root.join("Cargo.toml"), "SECRET").unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { gemma_web::serve::serve_with(listener, &www, &models, hooks).await });
    Site {
        _dir: dir,
        root,
        addr,
        model,
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header in {:?}", self.headers))
            .to_str()
            .unwrap()
    }
}

async fn request(site: &Site, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    let stream = tokio::net::TcpStream::connect(site.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder().method(method).uri(path);
    // The address the server was reached at, unless the test sends its own Host.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header(header::HOST, site.addr.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(site: &Site, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(site, Method::GET, path, headers).await
}

#[tokio::test]
async fn full_file_with_validators_and_isolation_headers() {
    let site = site().await;
    let r = get(&site, "/models/tiny.gguf", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, site.model);
    assert_eq!(r.header(header::CONTENT_LENGTH), MODEL_LEN.to_string());
    assert_eq!(r.header(header::ACCEPT_RANGES), "bytes");
    let etag = r.header(header::ETAG);
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong ETag: {etag}"
    );
    assert_eq!(
        r.header(header::HeaderName::from_static(
            "cross-origin-opener-policy"
        )),
        "same-origin"
    );
    assert_eq!(
        r.header(header::HeaderName::from_static(
            "cross-origin-embedder-policy"
        )),
        "require-corp"
    );
    assert_eq!(
        r.header(header::HeaderName::from_static(
            "cross-origin-resource-policy"
        )),
        "same-origin"
    );

    // HEAD: same headers, no body.
    let h = request(&site, Method::HEAD, "/models/tiny.gguf", &[]).await;
    assert_eq!(h.status, StatusCode::OK);
    assert!(h.body.is_empty());
    assert_eq!(h.header(header::ETAG), etag);
    assert_eq!(h.header(header::CONTENT_LENGTH), MODEL_LEN.to_string());
}

#[tokio::test]
async fn ranges_give_206_with_exact_bytes() {
    let site = site().await;
    let n = MODEL_LEN;
    // (header, first byte, last byte)
    let cases = [
        ("bytes=1000-1999", 1000, 1999),
        ("bytes=0-0", 0, 0),
        ("bytes=99990-", 99990, n - 1),
        ("bytes=-7", n - 7, n - 1),
        // A range running past the end is cut at the end (RFC 9110 14.1.2).
        ("bytes=100000-200000", 100000, n - 1),
    ];
    for (range, first, last) in cases {
        let r = get(&site, "/models/tiny.gguf", &[("range", range)]).await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            r.header(header::CONTENT_RANGE),
            format!("bytes {first}-{last}/{n}"),
            "{range}"
        );
        assert_eq!(
            r.header(header::CONTENT_LENGTH),
            (last - first + 1).to_string(),
            "{range}"
        );
        assert_eq!(r.body, site.model[first..=last], "{range}");
        assert!(r.headers.contains_key(header::ETAG), "{range}");
    }
}

#[tokio::test]
async fn unsatisfiable_range_gives_416() {
    let site = site().await;
    for range in [
        format!("bytes={MODEL_LEN}-"),
        "bytes=200000-300000".to_string(),
    ] {
        let r = get(&site, "/models/tiny.gguf", &[("range", &range)]).await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            r.header(header::CONTENT_RANGE),
            format!("bytes */{MODEL_LEN}"),
            "{range}"
        );
    }
}

#[tokio::test]
async fn if_range_applies_the_range_only_to_the_same_version() {
    let site = site().await;
    let first = get(&site, "/models/tiny.gguf", &[]).await;
    let etag = first.header(header::ETAG).to_string();
    let modified = first.header(header::LAST_MODIFIED).to_string();

    let same = get(
        &site,
        "/models/tiny.gguf",
        &[("range", "bytes=10-19"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(same.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(same.body, site.model[10..20]);

    let by_date = get(
        &site,
        "/models/tiny.gguf",
        &[("range", "bytes=10-19"), ("if-range", &modified)],
    )
    .await;
    assert_eq!(by_date.status, StatusCode::PARTIAL_CONTENT);

    // A stale tag, a weak tag and an older date each mean "my partial copy is of another version".
    let weak = format!("W/{etag}");
    for stale in ["\"0-0\"", weak.as_str(), "Thu, 01 Jan 1970 00:00:01 GMT"] {
        let r = get(
            &site,
            "/models/tiny.gguf",
            &[("range", "bytes=10-19"), ("if-range", stale)],
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "If-Range: {stale}");
        assert_eq!(r.body, site.model, "If-Range: {stale}");
    }

    // Rewriting the model (another size) changes its ETag: the old tag no longer resumes.
    let newer = pseudo_random(MODEL_LEN + 1, 8);
    std::fs::write(site.root.join("models/tiny.gguf"), &newer).unwrap();
    let r = get(
        &site,
        "/models/tiny.gguf",
        &[("range", "bytes=10-19"), ("if-range", &etag)],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, newer);
    assert_ne!(r.header(header::ETAG), etag);
}

#[tokio::test]
async fn if_none_match_and_if_match() {
    let site = site().await;
    let etag = get(&site, "/models/tiny.gguf", &[])
        .await
        .header(header::ETAG)
        .to_string();

    let cached = get(&site, "/models/tiny.gguf", &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status, StatusCode::NOT_MODIFIED);
    assert!(cached.body.is_empty());
    let weak = format!("\"x\", W/{etag}");
    let cached_weak = get(&site, "/models/tiny.gguf", &[("if-none-match", &weak)]).await;
    assert_eq!(cached_weak.status, StatusCode::NOT_MODIFIED);
    let other = get(&site, "/models/tiny.gguf", &[("if-none-match", "\"x\"")]).await;
    assert_eq!(other.status, StatusCode::OK);

    let ok = get(&site, "/models/tiny.gguf", &[("if-match", &etag)]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let stale = get(&site, "/models/tiny.gguf", &[("if-match", "\"0-0\"")]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn page_wasm_and_model_index() {
    let site = site().await;
    let page = get(&site, "/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
    assert_eq!(
        page.header(header::HeaderName::from_static(
            "cross-origin-embedder-policy"
        )),
        "require-corp"
    );

    let wasm = get(&site, "/pkg/gemma_web_bg.wasm", &[]).await;
    assert_eq!(wasm.status, StatusCode::OK);
    assert_eq!(wasm.header(header::CONTENT_TYPE), "application/wasm");

    let index = get(&site, "/models/index.json", &[]).await;
    assert_eq!(index.status, StatusCode::OK);
    assert_eq!(
        index.header(header::HeaderName::from_static(
            "cross-origin-opener-policy"
        )),
        "same-origin"
    );
    let json: serde_json::Value = serde_json::from_slice(&index.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"models": [{"name": "tiny.gguf", "url": "/models/tiny.gguf", "size": MODEL_LEN}]})
    );

    let missing = get(&site, "/models/absent.gguf", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn paths_outside_the_served_folders_are_refused() {
    let site = site().await;
    assert!(Path::new(&site.root.join("Cargo.toml")).is_file());
    for path in [
        "/models/../Cargo.toml",
        "/models/..%2fCargo.toml",
        "/models/%2e%2e/Cargo.toml",
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/models/%2fetc%2fpasswd",
    ] {
        let r = get(&site, path, &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert!(
            !String::from_utf8_lossy(&r.body).contains("SECRET"),
            "{path}"
        );
    }
}

/// The store's browser tests rely on these hidden hooks: a byte flipped in flight wherever a body
/// carries it, one connection dropped after N model bytes, and a log of the bytes each request sent.
#[tokio::test]
async fn test_hooks_flip_a_byte_cut_once_and_log_bytes_sent() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("requests.jsonl");
    const FLIP: usize = 50_001;
    const CUT: usize = 70_000;
    let site = site_with(gemma_web::serve::TestHooks {
        log_requests: Some(log.clone()),
        fault_after_bytes: Some(CUT as u64),
        flip_byte: Some(FLIP as u64),
    })
    .await;
    let mut flipped = site.model.clone();
    flipped[FLIP] ^= 0x01;

    let r = get(
        &site,
        "/models/tiny.gguf",
        &[("range", "bytes=50000-50099")],
    )
    .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, flipped[50_000..50_100]);
    let r = get(&site, "/models/tiny.gguf", &[("range", "bytes=0-999")]).await;
    assert_eq!(r.body, site.model[..1000]);

    // 1100 bytes were sent so far: the next full download is cut at CUT - 1100 body bytes.
    let stream = tokio::net::TcpStream::connect(site.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri("/models/tiny.gguf")
        .header(header::HOST, site.addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    // Where the cut lands depends on how much hyper had flushed: before the response head is read
    // (the request fails) or inside the body (the body fails). Either way the download is cut.
    let cut = match sender.send_request(req).await {
        Err(_) => true,
        Ok(res) => {
            assert_eq!(res.status(), StatusCode::OK);
            res.into_body().collect().await.is_err()
        }
    };
    assert!(cut, "the download is cut");

    // Only once: the next download is whole (and still corrupted).
    let r = get(&site, "/models/tiny.gguf", &[]).await;
    assert_eq!(r.body, flipped);
    let r = request(&site, Method::HEAD, "/models/tiny.gguf", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    // Pages are not logged.
    get(&site, "/", &[]).await;

    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let entries: Vec<(String, Option<String>, u64, u64)> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["method"].as_str().unwrap().to_string(),
                v["range"].as_str().map(str::to_string),
                v["status"].as_u64().unwrap(),
                v["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    let get = |range: Option<&str>, status, bytes| {
        ("GET".to_string(), range.map(str::to_string), status, bytes)
    };
    assert_eq!(
        entries,
        vec![
            get(Some("bytes=50000-50099"), 206, 100),
            get(Some("bytes=0-999"), 206, 1000),
            get(None, 200, (CUT - 1100) as u64),
            get(None, 200, MODEL_LEN as u64),
            ("HEAD".to_string(), None, 200, 0),
        ]
    );
}

#[tokio::test]
async fn only_loopback_host_names_are_answered() {
    let site = site().await;
    let port = site.addr.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("[::1]:{port}"),
        "localhost".to_string(),
    ] {
        let r = get(&site, "/models/tiny.gguf", &[("host", &host)]).await;
        assert_eq!(r.status, StatusCode::OK, "Host {host}");
        assert_eq!(r.body, site.model, "Host {host}");
    }
    // A rebinding page's own name (or anything not loopback) gets 421 and a body that says why,
    // on the page, the model listing and the models alike.
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_string(),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        format!("0.0.0.0:{port}"),
        format!("127.0.0.2:{port}"),
        format!("[::2]:{port}"),
        format!("[::1]evil:{port}"),
        format!("localhost:{port}x"),
        "localhost:".to_string(),
        "localhost:99999".to_string(),
        String::new(),
    ] {
        for path in ["/", "/models/index.json", "/models/tiny.gguf"] {
            let r = get(&site, path, &[("host", &host)]).await;
            assert_eq!(
                r.status,
                StatusCode::MISDIRECTED_REQUEST,
                "Host {host:?} {path}"
            );
            let body = String::from_utf8(r.body).unwrap();
            assert!(
                body.contains("127.0.0.1") && body.contains(&format!("{host:?}")),
                "{body}"
            );
        }
    }
}
