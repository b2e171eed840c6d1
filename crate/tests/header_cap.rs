//! The GGUF header is read into memory only up to a cap (256 MiB, `MAX_HEADER_BYTES`): a hostile
//! header that declares a huge metadata string or array is a `BadModel` error after reading at
//! most the cap, both in the loader and in the page's header probe, which grows its prefix by the
//! same rule (`next_header_read`, used by `readGgufHeader` in web.rs).
#![cfg(not(target_arch = "wasm32"))]

use std::cell::Cell;

use gemma_web::gguf::{parse_header, HeaderParse};
use gemma_web::model::loader::{next_header_read, read_header, MAX_HEADER_BYTES};
use gemma_web::model::ByteSource;
use gemma_web::Error;

const GIB: u64 = 1 << 30;

/// A GGUF v3 prefix: no tensors, one metadata entry `key` whose value is `value` (type and body).
fn header_with(key: &str, value: &[u8]) -> Vec<u8> {
    let mut h = b"GGUF".to_vec();
    h.extend(3u32.to_le_bytes());
    h.extend(0u64.to_le_bytes()); // tensors
    h.extend(1u64.to_le_bytes()); // metadata entries
    h.extend((key.len() as u64).to_le_bytes());
    h.extend(key.as_bytes());
    h.extend(value);
    h
}

/// An array (type 9) of `count` strings (type 8); the strings follow in the file.
fn string_array(count: u64) -> Vec<u8> {
    [
        9u32.to_le_bytes().as_slice(),
        &8u32.to_le_bytes(),
        &count.to_le_bytes(),
    ]
    .concat()
}

/// Each string the parser allows at most (1 MiB), and as many as it allows values: 8 TiB of
/// header that every parser step accepts, which only the read cap stops.
const STRING: u64 = 1 << 20;
const STRINGS: u64 = 8_000_000;

/// A file of `len` bytes: `prefix`, then 1 MiB strings (their u64 length, then the bytes) to the
/// end. Records the furthest byte read.
struct Hostile {
    prefix: Vec<u8>,
    len: u64,
    furthest: Cell<u64>,
}

impl Hostile {
    fn byte_at(&self, pos: u64) -> u8 {
        match pos.checked_sub(self.prefix.len() as u64) {
            None => self.prefix[pos as usize],
            Some(after) => match after % (8 + STRING) {
                k @ 0..8 => STRING.to_le_bytes()[k as usize],
                _ => b'a',
            },
        }
    }
}

impl ByteSource for Hostile {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let end = offset + buf.len() as u64;
        self.furthest.set(self.furthest.get().max(end));
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.byte_at(offset + i as u64);
        }
        Ok(())
    }
}

#[test]
fn the_growth_rule_doubles_up_to_the_cap_and_refuses_beyond() {
    let len = 4 * GIB;
    assert_eq!(
        next_header_read(1_500_000, 1 << 20, len).unwrap(),
        2 << 20,
        "doubles"
    );
    assert_eq!(
        next_header_read(9 << 20, 1 << 20, len).unwrap(),
        9 << 20,
        "or what the parser needs"
    );
    assert_eq!(
        next_header_read(3000, 1 << 20, 5000).unwrap_err().code(),
        "BadModel",
        "needs no more"
    );
    assert_eq!(
        next_header_read(1 << 21, 1 << 20, 1_500_000)
            .unwrap_err()
            .code(),
        "BadModel",
        "past the file"
    );
    assert_eq!(
        next_header_read(1_100_000, 1 << 20, 1_500_000).unwrap(),
        1_500_000,
        "the file's end"
    );
    // Near the cap: never past it, and a need past it is refused.
    assert_eq!(
        next_header_read(200 << 20, 192 << 20, len).unwrap(),
        MAX_HEADER_BYTES
    );
    let e = next_header_read(MAX_HEADER_BYTES + 1, 192 << 20, len).unwrap_err();
    assert!(matches!(e, Error::BadModel(_)), "{e:?}");
}

#[test]
fn a_header_longer_than_the_cap_is_bad_model_after_reading_at_most_the_cap() {
    let prefix = header_with("tokenizer.ggml.tokens", &string_array(STRINGS));
    let file = || Hostile {
        prefix: prefix.clone(),
        len: 64 * GIB,
        furthest: Cell::new(0),
    };

    // The loader.
    let mut src = file();
    let got = pollster::block_on(read_header(&mut src));
    assert!(
        matches!(got, Err(Error::BadModel(_))),
        "loader gave {got:?}"
    );
    assert!(
        src.furthest.get() <= MAX_HEADER_BYTES,
        "read {} bytes",
        src.furthest.get()
    );

    // The page's probe (readGgufHeader): the prefix grows to each `needMore` until an error.
    let src = file();
    let mut have = 1 << 20;
    let mut reads = 0;
    let err = loop {
        let bytes: Vec<u8> = (0..have).map(|i| src.byte_at(i)).collect();
        let at_least = match parse_header(&bytes, src.len) {
            Ok(HeaderParse::NeedMore { at_least }) => at_least,
            other => panic!("a 64 GiB header parsed from {have} bytes: {other:?}"),
        };
        match next_header_read(at_least, have, src.len) {
            Ok(next) => {
                assert!(next <= MAX_HEADER_BYTES, "asked for {next} bytes");
                have = next;
                reads += 1;
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::BadModel(_)), "{err:?}");
    assert_eq!(have, MAX_HEADER_BYTES, "read up to the cap");
    assert!(reads <= 9, "{reads} reads: the prefix doubles");
}
