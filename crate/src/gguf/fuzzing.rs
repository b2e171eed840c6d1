//! Invariants of [`parse_header`] on arbitrary bytes, for the cargo-fuzz target (crate/fuzz) and
//! the unit tests. Panics when an invariant breaks: that is the point here.

use super::{parse_header, HeaderParse};

/// Parses `data` as a whole file and as prefixes of it, checking what a caller relies on.
pub fn check(data: &[u8]) {
    let len = data.len() as u64;
    let full = parse_header(data, len);
    if let Ok(HeaderParse::Complete(h)) = &full {
        assert!(h.alignment.is_power_of_two());
        assert!(h.data_offset % h.alignment == 0);
        for t in &h.tensors {
            assert!(!t.dims.is_empty() && t.dims.len() <= 4 && t.dims.iter().all(|&d| d > 0));
            assert!(t.offset >= h.data_offset && (t.offset - h.data_offset) % h.alignment == 0);
            assert!(t.offset.checked_add(t.bytes).is_some_and(|e| e <= len));
            assert_eq!(
                Some(t.bytes),
                t.ty.row_bytes(t.dims[0]).map(|r| r * t.n_rows())
            );
        }
    }
    // A file given in full never asks for more of itself.
    assert!(!matches!(full, Ok(HeaderParse::NeedMore { .. })));
    // Any prefix of the same file: a consistent answer, and NeedMore always asks for progress.
    for k in [
        0,
        data.len() / 3,
        data.len() / 2,
        data.len().saturating_sub(1),
    ] {
        match parse_header(&data[..k], len) {
            Ok(HeaderParse::NeedMore { at_least }) => {
                assert!(at_least > k as u64 && at_least <= len)
            }
            Ok(HeaderParse::Complete(h)) => {
                assert_eq!(full.as_ref().ok(), Some(&HeaderParse::Complete(h)))
            }
            Err(e) => assert_eq!(full.as_ref().err(), Some(&e)),
        }
    }
}
