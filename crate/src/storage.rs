//! The model store's logic, independent of where the bytes live: the download plan, its manifest,
//! resume and integrity. The browser glue (OPFS, fetch, locks: `web_store.rs` and `www/store.js`)
//! only moves bytes; every decision about which bytes to fetch and whether a file is usable is made
//! here, so it is unit-tested natively.
//!
//! A model is one file plus a sidecar manifest (JSON). The file is downloaded front to back in
//! chunks of [`CHUNK_BYTES`] with HTTP Range requests; the manifest records the byte ranges that are
//! safely in storage, the server's ETag and the size. The sha256 is computed incrementally in file
//! order while bytes arrive. The hasher's state is not persisted: on resume the bytes already in
//! storage are read back and hashed again (a closed tab may have left anything in them), which is
//! what [`Step::Rehash`] asks for. The file is marked complete only when its hash matches the
//! catalog's (or, with no catalog hash, the hash is recorded then and checked on every later load).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// Bytes per Range request: large enough that request overhead is negligible, small enough that a
/// cut connection loses little.
pub const CHUNK_BYTES: u64 = 16 << 20;

/// Bytes per read when hashing what is already stored (bounded wasm memory).
pub const REHASH_BYTES: u64 = 4 << 20;

/// Manifest format version; a manifest of another version is discarded (start over).
pub const MANIFEST_VERSION: u32 = 1;

/// Where a stored model stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Some bytes are missing.
    Partial,
    /// Every byte is stored; the hash has not been checked yet.
    Verifying,
    /// Every byte is stored and the hash matched.
    Complete,
}

/// The sidecar manifest of one stored model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: u32,
    pub url: String,
    pub size: u64,
    /// The server's strong ETag when the download started; resuming sends it as `If-Range`.
    pub etag: Option<String>,
    /// The repository commit the file was resolved at (a model hub's revision), when there is one:
    /// bytes of two commits are never mixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The catalog's sha256 (lowercase hex), if it has one.
    pub expected_sha256: Option<String>,
    /// The sha256 of the complete file, recorded once it was verified.
    pub sha256: Option<String>,
    /// Byte ranges `[start, end)` that are in storage: sorted, disjoint and not touching.
    pub done: Vec<[u64; 2]>,
    pub state: State,
}

impl Manifest {
    pub fn new(url: &str, size: u64, etag: Option<&str>, expected_sha256: Option<&str>) -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            url: url.to_string(),
            size,
            etag: etag.map(str::to_string),
            revision: None,
            expected_sha256: expected_sha256.map(str::to_string),
            sha256: None,
            done: Vec::new(),
            state: State::Partial,
        }
    }

    pub fn from_json(json: &str) -> Result<Self, Error> {
        let m: Manifest = serde_json::from_str(json)
            .map_err(|e| Error::Io(format!("unreadable model manifest: {e}")))?;
        m.check()?;
        Ok(m)
    }

    pub fn to_json(&self) -> String {
        // A struct of strings, integers and enums always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The manifest's own invariants; a manifest that breaks them is not trusted with anything.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::Io(format!("model manifest for {}: {why}", self.url)));
        if self.version != MANIFEST_VERSION {
            return bad(&format!(
                "version {} (expected {MANIFEST_VERSION})",
                self.version
            ));
        }
        let mut prev_end: Option<u64> = None;
        for &[start, end] in &self.done {
            if start >= end || end > self.size {
                return bad(&format!(
                    "range {start}..{end} of a {} byte file",
                    self.size
                ));
            }
            if prev_end.is_some_and(|p| start <= p) {
                return bad("ranges out of order or touching");
            }
            prev_end = Some(end);
        }
        for hash in [&self.expected_sha256, &self.sha256].into_iter().flatten() {
            if !is_sha256_hex(hash) {
                return bad(&format!("{hash:?} is not a lowercase hex sha256"));
            }
        }
        let all = self.stored_bytes() == self.size;
        match self.state {
            State::Partial => Ok(()),
            State::Verifying if all => Ok(()),
            State::Complete if all && self.sha256.is_some() => Ok(()),
            _ => bad("state does not match its ranges"),
        }
    }

    /// Bytes in storage according to the manifest.
    pub fn stored_bytes(&self) -> u64 {
        self.done
            .iter()
            .fold(0u64, |n, &[s, e]| n.saturating_add(e.saturating_sub(s)))
    }

    /// Complete, and its recorded hash agrees with the catalog's (a catalog may change its hash).
    pub fn is_usable(&self, expected_sha256: Option<&str>) -> bool {
        self.state == State::Complete
            && self.check().is_ok()
            && match (expected_sha256, &self.sha256) {
                (Some(want), Some(have)) => want.eq_ignore_ascii_case(have),
                (None, Some(_)) => true,
                (_, None) => false,
            }
    }

    /// The end of the stored range that contains `pos`, if one does.
    fn stored_until(&self, pos: u64) -> Option<u64> {
        self.done
            .iter()
            .find(|&&[s, e]| s <= pos && pos < e)
            .map(|&[_, e]| e)
    }

    /// The start of the first stored range after `pos`.
    fn next_stored_after(&self, pos: u64) -> Option<u64> {
        self.done.iter().map(|&[s, _]| s).find(|&s| s > pos)
    }

    /// Marks `[start, end)` stored, merging with neighbours.
    fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut kept = Vec::with_capacity(self.done.len() + 1);
        for &[a, b] in &self.done {
            if b < s || a > e {
                kept.push([a, b]);
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        kept.push([s, e]);
        kept.sort_unstable();
        self.done = kept;
    }
}

/// What the server says about the file now (a HEAD or Range probe, or a catalog or hub API).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Remote {
    pub size: u64,
    /// The ETag, where it identifies the file (a same-origin server's); a CDN's ETag does not.
    pub etag: Option<String>,
    /// The repository commit the file was resolved at, for files from a model hub.
    pub revision: Option<String>,
}

/// The next thing the glue has to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read `len` stored bytes at `offset` and pass them to [`Download::rehashed`].
    Rehash { offset: u64, len: u64 },
    /// Fetch `len` bytes at `offset` (one Range request, `If-Range` the manifest's ETag), write them
    /// at `offset` and pass them to [`Download::received`] as they arrive.
    Fetch { offset: u64, len: u64 },
    /// Every byte is hashed: call [`Download::finish`].
    Finish,
}

/// Why a stored download was not resumed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Nothing was stored.
    Fresh,
    /// The stored bytes belong to another version of the file (ETag, size or catalog hash changed),
    /// or the manifest was unreadable: the stored file must be emptied first.
    Discard(String),
}

/// One download (or verification) in progress: the manifest plus the running hash.
pub struct Download {
    manifest: Manifest,
    hasher: Sha256,
    /// Bytes `0..hashed` have been fed to the hasher.
    hashed: u64,
    chunk: u64,
}

impl Download {
    /// Plans the download of `url` given what is stored (`stored`, the sidecar's JSON if there is
    /// one) and what the server says now. Stored bytes are reused only when the server's strong
    /// ETag and size are those recorded; otherwise the download starts over and the returned
    /// [`Restart`] says why (the caller then empties the stored file).
    pub fn plan(
        url: &str,
        stored: Option<&str>,
        remote: &Remote,
        expected_sha256: Option<&str>,
        chunk: u64,
    ) -> Result<(Self, Option<Restart>), Error> {
        let expected = expected_sha256.map(str::to_ascii_lowercase);
        if let Some(h) = &expected {
            if !is_sha256_hex(h) {
                return Err(Error::BadModel(format!(
                    "catalog sha256 {h:?} is not 64 hex digits"
                )));
            }
        }
        let fresh = || {
            let mut m = Manifest::new(
                url,
                remote.size,
                remote.etag.as_deref(),
                expected.as_deref(),
            );
            m.revision = remote.revision.clone();
            m
        };
        let (manifest, restart) = match stored.map(Manifest::from_json) {
            None => (fresh(), Some(Restart::Fresh)),
            Some(Err(e)) => (fresh(), Some(Restart::Discard(e.to_string()))),
            Some(Ok(m)) => match resume_refusal(&m, remote, expected.as_deref()) {
                None => (m, None),
                Some(why) => (fresh(), Some(Restart::Discard(why))),
            },
        };
        let mut download = Download::new(manifest, chunk);
        if download.manifest.stored_bytes() == download.manifest.size {
            // Everything is stored (a tab closed while verifying): only the hash is left.
            download.manifest.state = State::Verifying;
        }
        Ok((download, restart))
    }

    /// Checks a complete stored model again (every load of a model whose hash was recorded by us
    /// rather than given by a catalog, or after storage was touched): rehash everything, then
    /// [`Download::finish`] compares with the recorded hash.
    pub fn verify_stored(manifest_json: &str) -> Result<Self, Error> {
        let m = Manifest::from_json(manifest_json)?;
        if m.state != State::Complete {
            return Err(Error::Integrity(format!(
                "{} is not completely stored",
                m.url
            )));
        }
        Ok(Download::new(m, REHASH_BYTES))
    }

    fn new(manifest: Manifest, chunk: u64) -> Self {
        Download {
            manifest,
            hasher: Sha256::new(),
            hashed: 0,
            // A zero chunk would never make progress.
            chunk: chunk.max(1),
        }
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Bytes that still have to cross the network.
    pub fn bytes_to_fetch(&self) -> u64 {
        self.manifest
            .size
            .saturating_sub(self.manifest.stored_bytes())
    }

    /// Bytes hashed so far (progress of a verification).
    pub fn bytes_hashed(&self) -> u64 {
        self.hashed
    }

    pub fn next_step(&self) -> Step {
        let pos = self.hashed;
        let size = self.manifest.size;
        if pos >= size {
            return Step::Finish;
        }
        if let Some(end) = self.manifest.stored_until(pos) {
            let len = (end - pos).min(REHASH_BYTES);
            return Step::Rehash { offset: pos, len };
        }
        let end = self.manifest.next_stored_after(pos).unwrap_or(size);
        Step::Fetch {
            offset: pos,
            len: (end - pos).min(self.chunk),
        }
    }

    /// Stored bytes read back for a [`Step::Rehash`]; `offset` must be where hashing stands.
    pub fn rehashed(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        let end = self.span(offset, bytes)?;
        let stored_end = self.manifest.stored_until(offset).unwrap_or(offset);
        if end > stored_end {
            return Err(Error::Io(format!(
                "rehash of {offset}..{end} runs past the stored bytes (up to {stored_end})"
            )));
        }
        self.hasher.update(bytes);
        self.hashed = end;
        Ok(())
    }

    /// Bytes that arrived for a [`Step::Fetch`] and were written at `offset`, in order. The caller
    /// persists the manifest only after flushing those writes, so it never claims unwritten bytes.
    pub fn received(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        let end = self.span(offset, bytes)?;
        if self.manifest.stored_until(offset).is_some() {
            return Err(Error::Io(format!("bytes at {offset} are already stored")));
        }
        if let Some(next) = self.manifest.next_stored_after(offset) {
            if end > next {
                return Err(Error::Io(format!(
                    "received {offset}..{end} overlaps stored bytes at {next}"
                )));
            }
        }
        self.hasher.update(bytes);
        self.hashed = end;
        self.manifest.insert(offset, end);
        if self.manifest.stored_bytes() == self.manifest.size {
            self.manifest.state = State::Verifying;
        }
        Ok(())
    }

    /// The end of `bytes` placed at `offset`, which must be where hashing stands and inside the file.
    fn span(&self, offset: u64, bytes: &[u8]) -> Result<u64, Error> {
        if offset != self.hashed {
            return Err(Error::Io(format!(
                "bytes at {offset} out of order (hashed up to {})",
                self.hashed
            )));
        }
        offset
            .checked_add(bytes.len() as u64)
            .filter(|&end| end <= self.manifest.size)
            .ok_or_else(|| {
                Error::Io(format!(
                    "{} bytes at {offset} run past the end of a {} byte file",
                    bytes.len(),
                    self.manifest.size
                ))
            })
    }

    /// After the last byte: compares the hash with the catalog's (or the recorded one) and marks
    /// the manifest complete. On a mismatch the manifest stays incomplete and the stored bytes must
    /// be dropped: they are not the model.
    pub fn finish(&mut self) -> Result<String, Error> {
        if self.hashed != self.manifest.size || self.manifest.stored_bytes() != self.manifest.size {
            return Err(Error::Io(format!(
                "finish with {} of {} bytes hashed",
                self.hashed, self.manifest.size
            )));
        }
        let got = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let want = self
            .manifest
            .expected_sha256
            .as_ref()
            .or(self.manifest.sha256.as_ref());
        if let Some(want) = want {
            if !want.eq_ignore_ascii_case(&got) {
                self.manifest.state = State::Verifying;
                return Err(Error::Integrity(format!(
                    "sha256 of {} is {got}, expected {want}",
                    self.manifest.url
                )));
            }
        }
        self.manifest.sha256 = Some(got.clone());
        self.manifest.state = State::Complete;
        Ok(got)
    }
}

/// Why a stored partial download cannot be continued against the server's current file.
///
/// The stored bytes are kept when the server's strong ETag is the recorded one, or, where there is
/// no ETag to trust (a CDN's changes from one response to the next), when the expected sha256 is
/// the one recorded: then the file is pinned by its hash, the size and revision are checked here,
/// and bytes of another file could only end in an `Integrity` error, never in a usable model.
fn resume_refusal(m: &Manifest, remote: &Remote, expected: Option<&str>) -> Option<String> {
    if m.size != remote.size {
        return Some(format!("size changed from {} to {}", m.size, remote.size));
    }
    if m.revision != remote.revision {
        return Some(format!(
            "revision changed from {:?} to {:?}",
            m.revision, remote.revision
        ));
    }
    let recorded = m.expected_sha256.as_deref().or(m.sha256.as_deref());
    if let (Some(want), Some(had)) = (expected, recorded) {
        if !want.eq_ignore_ascii_case(had) {
            return Some(format!("catalog sha256 changed from {had} to {want}"));
        }
    }
    let hash_pinned = matches!((expected, m.expected_sha256.as_deref()),
        (Some(want), Some(had)) if want.eq_ignore_ascii_case(had));
    match (&m.etag, &remote.etag) {
        (Some(a), Some(b)) if a == b && !a.starts_with("W/") => None,
        (Some(a), Some(b)) if a != b => Some(format!("ETag changed from {a} to {b}")),
        _ if hash_pinned => None,
        (Some(a), Some(_)) => Some(format!("weak ETag {a} cannot guard a resume")),
        (a, b) => Some(format!(
            "no strong ETag or expected sha256 guards a resume (ETag {a:?}, now {b:?})"
        )),
    }
}

/// Refuses a download that does not fit before anything is written: `needed` more bytes against
/// the browser's estimate (`quota - usage`).
pub fn check_quota(needed: u64, usage: u64, quota: u64) -> Result<(), Error> {
    let free = quota.saturating_sub(usage);
    if needed > free {
        return Err(Error::Quota(format!(
            "the model needs {needed} more bytes ({:.1} MB) but only {free} bytes ({:.1} MB) of \
             storage are free (quota {quota}, used {usage})",
            needed as f64 / 1e6,
            free as f64 / 1e6
        )));
    }
    Ok(())
}

/// A file-system-safe, stable name for the model at `url`: its file name plus a short hash of the
/// whole URL, so two models with one file name do not share storage.
pub fn model_id(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let base = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("model");
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    // Leading dots would make hidden or special names ("." / "..").
    while name.starts_with('.') {
        name.remove(0);
    }
    if name.is_empty() {
        name.push_str("model");
    }
    let digest = Sha256::digest(url.as_bytes());
    format!("{name}-{}", &hex::encode(digest)[..12])
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests;
