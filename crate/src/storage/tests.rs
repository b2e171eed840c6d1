//! The store's logic against a simulated server and disk: odd sizes and chunk lengths, cuts at
//! arbitrary bytes, changed ETags, corrupted bytes on either side. Hashes are checked against
//! sha256 of the whole buffer at once (or a published test vector), not against the incremental path.

use super::*;

const URL: &str = "http://127.0.0.1:8080/models/m.gguf";

/// A deterministic, non-repeating byte pattern.
fn pattern(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

struct Sim {
    server: Vec<u8>,
    etag: Option<String>,
    revision: Option<String>,
    disk: Vec<u8>,
    manifest: Option<String>,
    /// Ranges requested from the server in the last run.
    fetched: Vec<(u64, u64)>,
    /// Bytes the server sent in the last run.
    sent: u64,
    restart: Option<Restart>,
}

impl Sim {
    fn new(server: Vec<u8>) -> Self {
        Sim {
            server,
            etag: Some("\"v1\"".into()),
            revision: None,
            disk: Vec::new(),
            manifest: None,
            fetched: Vec::new(),
            sent: 0,
            restart: None,
        }
    }

    fn remote(&self) -> Remote {
        Remote {
            size: self.server.len() as u64,
            etag: self.etag.clone(),
            revision: self.revision.clone(),
        }
    }

    /// Drives one attempt like the browser glue does: bodies arrive in `piece`-byte reads, each
    /// written then handed to `received`, the manifest persisted after each; the connection drops
    /// once `cut_after` bytes were sent in this attempt.
    fn run(
        &mut self,
        expected: Option<&str>,
        chunk: u64,
        piece: usize,
        cut_after: Option<u64>,
    ) -> Result<String, Error> {
        self.fetched.clear();
        self.sent = 0;
        let (mut d, restart) = Download::plan(
            URL,
            self.manifest.as_deref(),
            &self.remote(),
            expected,
            chunk,
        )?;
        if let Some(Restart::Discard(_)) = restart {
            self.disk.clear();
        }
        self.restart = restart;
        loop {
            match d.next_step() {
                Step::Rehash { offset, len } => {
                    assert!(len > 0 && len <= REHASH_BYTES);
                    let (s, e) = (offset as usize, (offset + len) as usize);
                    let bytes = self
                        .disk
                        .get(s..e)
                        .ok_or_else(|| Error::Io("short disk".into()))?
                        .to_vec();
                    d.rehashed(offset, &bytes)?;
                }
                Step::Fetch { offset, len } => {
                    assert!(len > 0 && len <= chunk, "fetch of {len} with chunk {chunk}");
                    self.fetched.push((offset, offset + len));
                    let body = &self.server[offset as usize..(offset + len) as usize];
                    for (i, p) in body.chunks(piece).enumerate() {
                        let at = offset + (i * piece) as u64;
                        let mut p = p;
                        let mut cut = false;
                        if let Some(limit) = cut_after {
                            let left = limit.saturating_sub(self.sent) as usize;
                            if p.len() >= left {
                                p = &p[..left];
                                cut = true;
                            }
                        }
                        self.sent += p.len() as u64;
                        let (s, e) = (at as usize, at as usize + p.len());
                        if self.disk.len() < e {
                            self.disk.resize(e, 0);
                        }
                        self.disk[s..e].copy_from_slice(p);
                        if !p.is_empty() {
                            d.received(at, p)?;
                        }
                        self.manifest = Some(d.manifest().to_json());
                        if cut {
                            return Err(Error::Network("connection dropped".into()));
                        }
                    }
                }
                Step::Finish => {
                    let r = d.finish();
                    self.manifest = Some(d.manifest().to_json());
                    return r;
                }
            }
        }
    }

    fn stored(&self) -> Manifest {
        Manifest::from_json(self.manifest.as_deref().unwrap()).unwrap()
    }
}

#[test]
fn fresh_download_fetches_each_byte_once_in_chunks_and_hashes_like_sha256() {
    let data = pattern(1_000_003);
    let want = sha_hex(&data);
    let mut sim = Sim::new(data.clone());
    let chunk = 65_543;
    let got = sim.run(Some(&want), chunk, 4099, None).unwrap();
    assert_eq!(got, want);
    assert_eq!(sim.disk, data);
    assert_eq!(sim.restart, Some(Restart::Fresh));
    // Consecutive ranges from 0 to the end, all full chunks but the last.
    let mut pos = 0;
    for (i, &(s, e)) in sim.fetched.iter().enumerate() {
        assert_eq!(s, pos);
        if i + 1 < sim.fetched.len() {
            assert_eq!(e - s, chunk);
        }
        pos = e;
    }
    assert_eq!(pos, data.len() as u64);
    let m = sim.stored();
    assert_eq!(m.state, State::Complete);
    assert_eq!(m.done, vec![[0, data.len() as u64]]);
    assert_eq!(m.sha256.as_deref(), Some(want.as_str()));
    assert!(m.is_usable(Some(&want)));
    assert!(m.is_usable(None));
}

#[test]
fn published_sha256_vector() {
    let mut sim = Sim::new(b"abc".to_vec());
    let got = sim.run(None, 2, 1, None).unwrap();
    assert_eq!(
        got,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn a_cut_download_resumes_with_only_the_missing_ranges() {
    let data = pattern(777_777);
    let want = sha_hex(&data);
    for cut in [1u64, 4099, 65_537, 300_001, 777_776] {
        let mut sim = Sim::new(data.clone());
        let err = sim.run(Some(&want), 100_000, 4099, Some(cut)).unwrap_err();
        assert_eq!(err.code(), "Network");
        let m = sim.stored();
        assert_eq!(m.state, State::Partial);
        assert_eq!(m.stored_bytes(), cut);
        assert!(!m.is_usable(Some(&want)));

        let got = sim.run(Some(&want), 100_000, 4099, None).unwrap();
        assert_eq!(got, want, "cut at {cut}");
        assert_eq!(sim.restart, None, "resumed");
        assert_eq!(sim.fetched.first().map(|r| r.0), Some(cut));
        // Only the bytes that never arrived crossed the network again.
        assert_eq!(sim.sent, data.len() as u64 - cut);
        assert_eq!(sim.disk, data);
        assert_eq!(sim.stored().state, State::Complete);
    }
}

#[test]
fn repeated_cuts_still_end_with_the_right_file() {
    let data = pattern(500_009);
    let want = sha_hex(&data);
    let mut sim = Sim::new(data.clone());
    let mut attempts = 0;
    let got = loop {
        attempts += 1;
        match sim.run(None, 30_011, 997, Some(123_457)) {
            Ok(h) => break h,
            Err(e) => assert_eq!(e.code(), "Network"),
        }
        assert!(attempts < 10);
    };
    assert_eq!(attempts, 5);
    assert_eq!(got, want);
}

#[test]
fn stored_bytes_are_hashed_again_on_resume() {
    // A byte changed on disk between attempts (a half-written page, a bad disk) must not slip
    // through because the first attempt had already hashed it.
    let data = pattern(200_001);
    let want = sha_hex(&data);
    let mut sim = Sim::new(data.clone());
    sim.run(Some(&want), 50_000, 1000, Some(120_000))
        .unwrap_err();
    sim.disk[77_777] ^= 0x01;
    let err = sim.run(Some(&want), 50_000, 1000, None).unwrap_err();
    assert_eq!(err.code(), "Integrity");
    assert!(err.to_string().contains(&want), "{err}");
    assert_ne!(sim.stored().state, State::Complete);
    assert!(!sim.stored().is_usable(Some(&want)));
}

#[test]
fn a_changed_etag_or_size_starts_over() {
    let data = pattern(300_000);
    let mut sim = Sim::new(data.clone());
    sim.run(None, 64_000, 1000, Some(100_000)).unwrap_err();

    let mut v2 = data.clone();
    v2[5] ^= 0xff;
    sim.server = v2.clone();
    sim.etag = Some("\"v2\"".into());
    let got = sim.run(Some(&sha_hex(&v2)), 64_000, 1000, None).unwrap();
    assert_eq!(got, sha_hex(&v2));
    assert!(matches!(sim.restart, Some(Restart::Discard(ref why)) if why.contains("ETag")));
    assert_eq!(sim.fetched.first(), Some(&(0, 64_000)));
    assert_eq!(sim.sent, v2.len() as u64);

    // A different length with the same ETag (a misbehaving server) also starts over.
    let mut sim = Sim::new(data.clone());
    sim.run(None, 64_000, 1000, Some(100_000)).unwrap_err();
    sim.server.truncate(299_999);
    sim.run(None, 64_000, 1000, None).unwrap();
    assert!(matches!(sim.restart, Some(Restart::Discard(ref why)) if why.contains("size")));
}

#[test]
fn without_a_strong_etag_nothing_is_resumed() {
    for etag in [None, Some("W/\"v1\"")] {
        let data = pattern(100_000);
        let mut sim = Sim::new(data.clone());
        sim.etag = etag.map(str::to_string);
        sim.run(None, 10_000, 999, Some(50_000)).unwrap_err();
        sim.run(None, 10_000, 999, None).unwrap();
        assert!(matches!(sim.restart, Some(Restart::Discard(_))), "{etag:?}");
        assert_eq!(sim.sent, data.len() as u64);
    }
}

#[test]
fn with_the_hash_known_a_download_without_a_usable_etag_resumes() {
    // A CDN: no ETag, a weak one, or one that differs per response (not recorded then).
    for etag in [None, Some("W/\"v1\"")] {
        let data = pattern(100_003);
        let want = sha_hex(&data);
        let mut sim = Sim::new(data.clone());
        sim.etag = etag.map(str::to_string);
        sim.run(Some(&want), 10_000, 999, Some(45_678)).unwrap_err();
        let kept = sim.stored().stored_bytes();
        assert_eq!(kept, 45_678, "{etag:?}");
        assert_eq!(sim.run(Some(&want), 10_000, 999, None).unwrap(), want);
        assert_eq!(sim.restart, None, "{etag:?}");
        assert_eq!(
            sim.sent,
            data.len() as u64 - kept,
            "{etag:?}: only the missing bytes"
        );
        assert_eq!(sim.fetched[0].0, kept);
    }
    // Two different strong ETags still mean two files, hash or not.
    let data = pattern(50_000);
    let want = sha_hex(&data);
    let mut sim = Sim::new(data.clone());
    sim.run(Some(&want), 10_000, 999, Some(25_000)).unwrap_err();
    sim.etag = Some("\"v2\"".into());
    sim.run(Some(&want), 10_000, 999, None).unwrap();
    assert!(matches!(sim.restart, Some(Restart::Discard(ref why)) if why.contains("ETag")));
    assert_eq!(sim.sent, data.len() as u64);
}

#[test]
fn a_changed_revision_starts_over() {
    let data = pattern(60_001);
    let want = sha_hex(&data);
    let mut sim = Sim::new(data.clone());
    sim.etag = None;
    sim.revision = Some("a".repeat(40));
    sim.run(Some(&want), 10_000, 999, Some(30_000)).unwrap_err();
    assert_eq!(sim.stored().revision, sim.revision);
    sim.revision = Some("b".repeat(40));
    assert_eq!(sim.run(Some(&want), 10_000, 999, None).unwrap(), want);
    assert!(matches!(sim.restart, Some(Restart::Discard(ref why)) if why.contains("revision")));
    assert_eq!(
        sim.sent,
        data.len() as u64,
        "nothing of the old commit is reused"
    );
    assert_eq!(sim.stored().revision, Some("b".repeat(40)));
}

#[test]
fn a_changed_catalog_hash_starts_over() {
    let data = pattern(100_000);
    let mut sim = Sim::new(data.clone());
    sim.run(Some(&sha_hex(b"old")), 10_000, 999, Some(50_000))
        .unwrap_err();
    sim.run(Some(&sha_hex(&data)), 10_000, 999, None).unwrap();
    assert!(matches!(sim.restart, Some(Restart::Discard(ref why)) if why.contains("sha256")));
}

#[test]
fn a_corrupted_download_is_an_integrity_error_and_not_complete() {
    let data = pattern(123_457);
    let want = sha_hex(&data);
    let mut sim = Sim::new(data.clone());
    sim.server[100_000] ^= 0x40;
    let err = sim.run(Some(&want), 40_000, 3000, None).unwrap_err();
    assert_eq!(err.code(), "Integrity");
    let m = sim.stored();
    assert_eq!(m.state, State::Verifying);
    assert_eq!(m.sha256, None);
    assert!(!m.is_usable(Some(&want)) && !m.is_usable(None));
}

#[test]
fn without_a_catalog_hash_the_first_hash_is_recorded_and_checked_on_load() {
    let data = pattern(250_001);
    let mut sim = Sim::new(data.clone());
    let recorded = sim.run(None, 100_000, 4096, None).unwrap();
    assert_eq!(recorded, sha_hex(&data));
    let json = sim.manifest.clone().unwrap();

    let verify = |disk: &[u8]| -> Result<String, Error> {
        let mut d = Download::verify_stored(&json)?;
        assert_eq!(d.bytes_to_fetch(), 0);
        loop {
            match d.next_step() {
                Step::Rehash { offset, len } => {
                    let b = &disk[offset as usize..(offset + len) as usize];
                    d.rehashed(offset, b)?;
                }
                Step::Fetch { .. } => panic!("a stored model fetches nothing"),
                Step::Finish => return d.finish(),
            }
        }
    };
    assert_eq!(verify(&sim.disk).unwrap(), recorded);
    let mut bad = sim.disk.clone();
    bad[250_000] ^= 0x80;
    assert_eq!(verify(&bad).unwrap_err().code(), "Integrity");

    let mut partial = sim.stored();
    partial.state = State::Verifying;
    assert_eq!(
        Download::verify_stored(&partial.to_json())
            .err()
            .map(|e| e.code()),
        Some("Integrity")
    );
}

#[test]
fn holes_are_fetched_and_stored_ranges_rehashed_in_file_order() {
    let data = pattern(100_000);
    let want = sha_hex(&data);
    let mut sim = Sim::new(data.clone());
    let mut m = Manifest::new(URL, 100_000, Some("\"v1\""), Some(&want));
    m.done = vec![[0, 10_000], [30_000, 40_000], [90_000, 100_000]];
    m.check().unwrap();
    sim.manifest = Some(m.to_json());
    sim.disk = data.clone();
    // The holes hold garbage until they are fetched.
    for b in &mut sim.disk[10_000..30_000] {
        *b = 0;
    }
    let got = sim.run(Some(&want), 25_000, 777, None).unwrap();
    assert_eq!(got, want);
    assert_eq!(
        sim.fetched,
        vec![(10_000, 30_000), (40_000, 65_000), (65_000, 90_000)]
    );
    assert_eq!(sim.sent, 70_000);
}

#[test]
fn a_fully_stored_but_unverified_file_is_only_hashed() {
    let data = pattern(60_000);
    let want = sha_hex(&data);
    let mut m = Manifest::new(URL, 60_000, Some("\"v1\""), Some(&want));
    m.done = vec![[0, 60_000]];
    m.state = State::Verifying;
    let mut sim = Sim::new(data.clone());
    sim.manifest = Some(m.to_json());
    sim.disk = data;
    assert_eq!(sim.run(Some(&want), 7000, 100, None).unwrap(), want);
    assert!(sim.fetched.is_empty());
}

#[test]
fn broken_manifests_are_not_trusted() {
    let ok = Manifest::new(URL, 1000, Some("\"e\""), None);
    type Edit = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("past the end", Box::new(|m| m.done = vec![[0, 1001]])),
        ("empty range", Box::new(|m| m.done = vec![[5, 5]])),
        ("unsorted", Box::new(|m| m.done = vec![[10, 20], [0, 5]])),
        ("touching", Box::new(|m| m.done = vec![[0, 5], [5, 9]])),
        (
            "complete without hash",
            Box::new(|m| {
                m.done = vec![[0, 1000]];
                m.state = State::Complete;
            }),
        ),
        (
            "complete with holes",
            Box::new(|m| {
                m.done = vec![[0, 999]];
                m.state = State::Complete;
                m.sha256 = Some(sha_hex(b""));
            }),
        ),
        (
            "verifying with holes",
            Box::new(|m| m.state = State::Verifying),
        ),
        ("bad hash", Box::new(|m| m.sha256 = Some("xyz".into()))),
        (
            "upper-case hash",
            Box::new(|m| m.expected_sha256 = Some(sha_hex(b"").to_uppercase())),
        ),
        ("version", Box::new(|m| m.version = 99)),
    ];
    for (why, edit) in cases {
        let mut m = ok.clone();
        edit(&mut m);
        assert!(Manifest::from_json(&m.to_json()).is_err(), "{why}");
        assert!(!m.is_usable(None), "{why}");
        let remote = Remote {
            size: 1000,
            etag: Some("\"e\"".into()),
            ..Remote::default()
        };
        let (d, restart) = Download::plan(URL, Some(&m.to_json()), &remote, None, 100).unwrap();
        assert!(matches!(restart, Some(Restart::Discard(_))), "{why}");
        assert_eq!(
            d.next_step(),
            Step::Fetch {
                offset: 0,
                len: 100
            },
            "{why}"
        );
    }
    for junk in ["", "{", "null", "[]", "{\"version\":1}"] {
        assert!(Manifest::from_json(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn out_of_order_or_oversized_bytes_are_errors_not_panics() {
    let remote = Remote {
        size: 100,
        etag: Some("\"e\"".into()),
        ..Remote::default()
    };
    let (mut d, _) = Download::plan(URL, None, &remote, None, 1 << 40).unwrap();
    assert_eq!(
        d.next_step(),
        Step::Fetch {
            offset: 0,
            len: 100
        }
    );
    assert!(d.received(1, &[0]).is_err());
    assert!(d.received(0, &[0; 101]).is_err());
    assert!(d.rehashed(0, &[0; 10]).is_err(), "nothing is stored yet");
    assert!(d.finish().is_err());
    d.received(0, &[7; 60]).unwrap();
    assert!(d.received(u64::MAX, &[1]).is_err());
    assert!(d.received(0, &[7; 10]).is_err(), "already stored");
    d.received(60, &[7; 40]).unwrap();
    assert_eq!(d.next_step(), Step::Finish);
    assert_eq!(d.finish().unwrap(), sha_hex(&[7; 100]));

    // A zero chunk still makes progress; an empty file is complete at once.
    let (d, _) = Download::plan(URL, None, &remote, None, 0).unwrap();
    assert_eq!(d.next_step(), Step::Fetch { offset: 0, len: 1 });
    let empty = Remote {
        size: 0,
        ..Remote::default()
    };
    let (mut d, _) = Download::plan(URL, None, &empty, None, 10).unwrap();
    assert_eq!(d.next_step(), Step::Finish);
    assert_eq!(d.finish().unwrap(), sha_hex(b""));

    assert_eq!(
        Download::plan(URL, None, &remote, Some("abc"), 10)
            .err()
            .map(|e| e.code()),
        Some("BadModel")
    );
}

#[test]
fn a_catalog_hash_is_compared_case_insensitively() {
    let data = pattern(1000);
    let want = sha_hex(&data).to_uppercase();
    let mut sim = Sim::new(data.clone());
    sim.run(Some(&want), 300, 77, None).unwrap();
    assert!(sim.stored().is_usable(Some(&want)));
    assert!(!sim.stored().is_usable(Some(&sha_hex(b"other"))));
}

#[test]
fn quota_errors_carry_both_numbers() {
    check_quota(100, 0, 100).unwrap();
    check_quota(0, 500, 100).unwrap();
    let e = check_quota(253_113_024, 1_000, 100_000_000).unwrap_err();
    assert_eq!(e.code(), "Quota");
    let msg = e.to_string();
    assert!(
        msg.contains("253113024") && msg.contains("99999000"),
        "{msg}"
    );
    assert_eq!(check_quota(1, 200, 100).unwrap_err().code(), "Quota");
}

#[test]
fn model_ids_are_safe_names_and_differ_per_url() {
    let a = model_id("http://127.0.0.1:8080/models/gemma-3-270m-q4_k_m.gguf");
    assert!(a.starts_with("gemma-3-270m-q4_k_m.gguf-"), "{a}");
    let b = model_id("https://example.org/other/gemma-3-270m-q4_k_m.gguf");
    assert_ne!(a, b);
    for url in [
        "",
        "/",
        "http://x/../..",
        "http://x/a b?c=/d#e",
        "http://x/.hidden",
        "日本",
    ] {
        let id = model_id(url);
        assert!(
            !id.starts_with('.') && !id.contains('/') && !id.contains(' '),
            "{url:?} -> {id}"
        );
        assert!(id.bytes().all(|c| c.is_ascii_graphic()), "{url:?} -> {id}");
    }
    assert!(model_id("http://x/a b?c=/d#e").starts_with("a_b-"));
}
