use super::writer::{gguf_bytes, TensorDecl};
use super::*;

// ---------- a byte-level builder that can also write broken headers ----------

fn s(x: &str) -> Vec<u8> {
    let mut v = (x.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(x.as_bytes());
    v
}

fn kv(key: &str, ty: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = s(key);
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn kv_u32(key: &str, x: u32) -> Vec<u8> {
    kv(key, 4, &x.to_le_bytes())
}

fn ti(name: &str, dims: &[u64], ty: u32, off: u64) -> Vec<u8> {
    let mut v = s(name);
    v.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend_from_slice(&d.to_le_bytes());
    }
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&off.to_le_bytes());
    v
}

struct Raw {
    magic: [u8; 4],
    version: u32,
    n_tensors: Option<u64>,
    n_kv: Option<u64>,
    kvs: Vec<Vec<u8>>,
    tis: Vec<Vec<u8>>,
    align: u64,
    data_len: u64,
}

impl Raw {
    fn new() -> Self {
        Raw {
            magic: *b"GGUF",
            version: 3,
            n_tensors: None,
            n_kv: None,
            kvs: vec![kv("general.architecture", 8, &s("gemma3"))],
            // A 64 x 2 F32 tensor: 512 bytes.
            tis: vec![ti("a.weight", &[64, 2], 0, 0)],
            align: 32,
            data_len: 512,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut v = self.magic.to_vec();
        v.extend_from_slice(&self.version.to_le_bytes());
        v.extend_from_slice(
            &self
                .n_tensors
                .unwrap_or(self.tis.len() as u64)
                .to_le_bytes(),
        );
        v.extend_from_slice(&self.n_kv.unwrap_or(self.kvs.len() as u64).to_le_bytes());
        for k in &self.kvs {
            v.extend_from_slice(k);
        }
        for t in &self.tis {
            v.extend_from_slice(t);
        }
        while v.len() as u64 % self.align != 0 {
            v.push(0);
        }
        v.resize(v.len() + self.data_len as usize, 0xAB);
        v
    }
}

fn parse_all(b: &[u8]) -> Result<HeaderParse, GgufError> {
    parse_header(b, b.len() as u64)
}

#[test]
fn raw_builder_baseline_is_valid() {
    // The malformed cases below are one change away from this file: it must itself parse.
    let b = Raw::new().bytes();
    match parse_all(&b).unwrap() {
        HeaderParse::Complete(h) => {
            assert_eq!(h.tensors.len(), 1);
            assert_eq!(h.tensors[0].bytes, 512);
            assert_eq!(h.tensors[0].offset, h.data_offset);
            assert_eq!(h.data_offset % 32, 0);
            assert_eq!(h.architecture(), Some("gemma3"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_table() {
    use GgufErrorKind as K;
    type Case = (&'static str, Box<dyn Fn(&mut Raw)>, K, &'static str);
    let cases: Vec<Case> = vec![
        (
            "bad magic",
            Box::new(|r| r.magic = *b"GGUG"),
            K::BadMagic,
            "magic",
        ),
        (
            "version 1",
            Box::new(|r| r.version = 1),
            K::BadVersion,
            "version",
        ),
        (
            "version 4",
            Box::new(|r| r.version = 4),
            K::BadVersion,
            "version",
        ),
        (
            "big-endian file",
            Box::new(|r| r.version = 0x0300_0000),
            K::BadVersion,
            "version",
        ),
        (
            "absurd tensor count",
            Box::new(|r| r.n_tensors = Some(u64::MAX)),
            K::CountTooLarge,
            "tensor_count",
        ),
        (
            "absurd kv count",
            Box::new(|r| r.n_kv = Some(1 << 40)),
            K::CountTooLarge,
            "metadata_kv_count",
        ),
        (
            "absurd array length",
            Box::new(|r| {
                let mut p = 4u32.to_le_bytes().to_vec();
                p.extend_from_slice(&(1u64 << 50).to_le_bytes());
                r.kvs.push(kv("x.arr", 9, &p));
            }),
            K::CountTooLarge,
            "x.arr",
        ),
        (
            "array longer than the file",
            Box::new(|r| {
                let mut p = 0u32.to_le_bytes().to_vec();
                p.extend_from_slice(&1_000_000u64.to_le_bytes());
                r.kvs.push(kv("x.arr", 9, &p));
            }),
            K::Truncated,
            "x.arr",
        ),
        (
            "kv count larger than the entries present",
            Box::new(|r| {
                r.n_kv = Some(50);
                r.tis.clear();
                r.align = 1;
                r.data_len = 0;
            }),
            K::Truncated,
            "metadata",
        ),
        (
            "string length past end",
            Box::new(|r| {
                let mut k = 600u64.to_le_bytes().to_vec();
                k.extend_from_slice(b"abc");
                r.kvs.push(k);
                r.data_len = 0;
                r.tis.clear();
            }),
            K::Truncated,
            "metadata[1].key",
        ),
        (
            "string value over the cap",
            Box::new(|r| {
                let mut p = (MAX_STRING_LEN + 1).to_le_bytes().to_vec();
                p.extend_from_slice(b"x");
                r.kvs.push(kv("x.s", 8, &p));
            }),
            K::StringTooLong,
            "x.s",
        ),
        (
            "tensor name over the cap",
            Box::new(|r| r.tis[0] = ti(&"n".repeat(2000), &[64, 2], 0, 0)),
            K::StringTooLong,
            "tensor[0].name",
        ),
        (
            "unknown value type",
            Box::new(|r| r.kvs.push(kv("x.v", 13, &[0; 8]))),
            K::UnknownValueType,
            "x.v",
        ),
        (
            "unknown array element type",
            Box::new(|r| {
                let mut p = 77u32.to_le_bytes().to_vec();
                p.extend_from_slice(&1u64.to_le_bytes());
                r.kvs.push(kv("x.arr", 9, &p));
            }),
            K::UnknownValueType,
            "x.arr",
        ),
        (
            "bool not 0/1",
            Box::new(|r| r.kvs.push(kv("x.b", 7, &[2]))),
            K::InvalidValue,
            "x.b",
        ),
        (
            "arrays nested too deep",
            Box::new(|r| {
                // array<array<array<array<u8>>>> of length 1 each.
                let mut p = Vec::new();
                for _ in 0..4 {
                    p.extend_from_slice(&9u32.to_le_bytes());
                    p.extend_from_slice(&1u64.to_le_bytes());
                }
                p.extend_from_slice(&0u32.to_le_bytes());
                p.extend_from_slice(&1u64.to_le_bytes());
                p.push(0);
                r.kvs.push(kv("x.nest", 9, &p));
            }),
            K::NestingTooDeep,
            "x.nest",
        ),
        (
            "bad tensor type",
            Box::new(|r| r.tis[0] = ti("a.weight", &[64, 2], 99, 0)),
            K::UnknownTensorType,
            "a.weight",
        ),
        (
            "too many dims",
            Box::new(|r| r.tis[0] = ti("a.weight", &[64, 1, 1, 1, 2], 0, 0)),
            K::BadDimCount,
            "a.weight",
        ),
        (
            "zero dims",
            Box::new(|r| r.tis[0] = ti("a.weight", &[], 0, 0)),
            K::BadDimCount,
            "a.weight",
        ),
        (
            "a zero dim",
            Box::new(|r| r.tis[0] = ti("a.weight", &[64, 0], 0, 0)),
            K::ZeroDim,
            "a.weight",
        ),
        (
            "element count overflow",
            Box::new(|r| r.tis[0] = ti("a.weight", &[1 << 32, 1 << 32], 0, 0)),
            K::Overflow,
            "a.weight",
        ),
        (
            "byte size overflow",
            Box::new(|r| r.tis[0] = ti("a.weight", &[1 << 62, 2], 0, 0)),
            K::Overflow,
            "a.weight",
        ),
        (
            "zero alignment",
            Box::new(|r| r.kvs.push(kv_u32("general.alignment", 0))),
            K::BadAlignment,
            "general.alignment",
        ),
        (
            "non-power-of-two alignment",
            Box::new(|r| r.kvs.push(kv_u32("general.alignment", 48))),
            K::BadAlignment,
            "general.alignment",
        ),
        (
            "alignment not an integer",
            Box::new(|r| r.kvs.push(kv("general.alignment", 8, &s("32")))),
            K::BadAlignment,
            "general.alignment",
        ),
        (
            "duplicate key",
            Box::new(|r| r.kvs.push(kv("general.architecture", 8, &s("gemma")))),
            K::DuplicateKey,
            "general.architecture",
        ),
        (
            "duplicate tensor",
            Box::new(|r| {
                r.tis.push(ti("a.weight", &[64, 2], 0, 512));
                r.data_len = 1024;
            }),
            K::DuplicateTensor,
            "a.weight",
        ),
        (
            "misaligned offset",
            Box::new(|r| {
                r.tis.push(ti("b.weight", &[4], 0, 516));
                r.data_len = 1024;
            }),
            K::MisalignedOffset,
            "b.weight",
        ),
        (
            "offset out of range",
            Box::new(|r| r.tis.push(ti("b.weight", &[64], 0, 4096))),
            K::OffsetOutOfRange,
            "b.weight",
        ),
        (
            "offset overflows",
            Box::new(|r| r.tis.push(ti("b.weight", &[64], 0, u64::MAX - 31))),
            K::OffsetOutOfRange,
            "b.weight",
        ),
        (
            "data truncated",
            Box::new(|r| r.data_len = 511),
            K::DataTruncated,
            "a.weight",
        ),
        (
            "row length not a multiple of the block size",
            // 100 weights per row cannot be whole Q4_K blocks of 256.
            Box::new(|r| r.tis[0] = ti("a.weight", &[100, 2], 12, 0)),
            K::RowNotBlockMultiple,
            "a.weight",
        ),
        (
            "row length not a multiple of the Q8_0 block",
            Box::new(|r| r.tis[0] = ti("a.weight", &[48, 2], 8, 0)),
            K::RowNotBlockMultiple,
            "a.weight",
        ),
    ];
    let mut failures = Vec::new();
    for (name, mutate, kind, field) in &cases {
        let mut r = Raw::new();
        mutate(&mut r);
        let b = r.bytes();
        match parse_all(&b) {
            Err(e) if e.kind == *kind && e.field.contains(field) && e.offset <= b.len() as u64 => {
                // The conversion the engine uses keeps the detail.
                let msg = Error::from(e.clone()).to_string();
                assert!(msg.starts_with("bad model: GGUF"), "{msg}");
            }
            other => failures.push(format!(
                "{name}: expected {kind:?} in {field}, got {other:?}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn invalid_utf8_key_and_names_are_rejected() {
    let mut r = Raw::new();
    let mut k = 2u64.to_le_bytes().to_vec();
    k.extend_from_slice(&[0xff, 0xfe]);
    k.extend_from_slice(&4u32.to_le_bytes());
    k.extend_from_slice(&[0; 4]);
    r.kvs.push(k);
    let e = parse_all(&r.bytes()).unwrap_err();
    assert_eq!(e.kind, GgufErrorKind::InvalidUtf8);

    let mut r = Raw::new();
    let mut t = 1u64.to_le_bytes().to_vec();
    t.push(0x80);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.extend_from_slice(&64u64.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    t.extend_from_slice(&0u64.to_le_bytes());
    r.tis = vec![t];
    let e = parse_all(&r.bytes()).unwrap_err();
    assert_eq!(e.kind, GgufErrorKind::InvalidUtf8);
}

#[test]
fn unknown_tensor_type_names_the_number() {
    let mut r = Raw::new();
    r.tis[0] = ti("a.weight", &[64, 2], 99, 0);
    let e = parse_all(&r.bytes()).unwrap_err();
    assert!(e.detail.contains("99"), "{e}");
    assert!(Error::from(e).to_string().contains("99"));
}

#[test]
fn version_2_is_accepted() {
    let mut r = Raw::new();
    r.version = 2;
    assert!(matches!(parse_all(&r.bytes()), Ok(HeaderParse::Complete(h)) if h.version == 2));
}

#[test]
fn alignment_key_is_honoured() {
    let mut r = Raw::new();
    r.kvs.push(kv_u32("general.alignment", 256));
    r.align = 256;
    r.tis.push(ti("b.weight", &[64], 0, 512));
    r.data_len = 512 + 256;
    let h = match parse_all(&r.bytes()).unwrap() {
        HeaderParse::Complete(h) => h,
        o => panic!("{o:?}"),
    };
    assert_eq!(h.alignment, 256);
    assert_eq!(h.data_offset % 256, 0);
    assert_eq!(h.tensor("b.weight").unwrap().offset, h.data_offset + 512);
    // An offset fine for 32 but not for 256.
    r.tis[1] = ti("b.weight", &[64], 0, 544);
    assert_eq!(
        parse_all(&r.bytes()).unwrap_err().kind,
        GgufErrorKind::MisalignedOffset
    );
}

// ---------- files from the writer ----------

/// Tiny deterministic byte source for test data (xorshift64*).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn sample_metadata() -> Vec<(String, MetaValue)> {
    use MetaValue as M;
    vec![
        ("general.architecture".into(), M::Str("gemma3".into())),
        ("t.u8".into(), M::U8(200)),
        ("t.i8".into(), M::I8(-7)),
        ("t.u16".into(), M::U16(65000)),
        ("t.i16".into(), M::I16(-30000)),
        ("t.u32".into(), M::U32(4_000_000_000)),
        ("t.i32".into(), M::I32(-2_000_000_000)),
        ("t.f32".into(), M::F32(1e-6)),
        ("t.bool".into(), M::Bool(true)),
        ("t.str".into(), M::Str("héllo ▁wörld 🙂".into())),
        ("t.u64".into(), M::U64(u64::MAX - 3)),
        ("t.i64".into(), M::I64(i64::MIN + 5)),
        ("t.f64".into(), M::F64(-2.5e300)),
        (
            "t.arr_str".into(),
            M::Array(vec![
                M::Str("<pad>".into()),
                M::Str("".into()),
                M::Str("▁a".into()),
            ]),
        ),
        (
            "t.arr_f32".into(),
            M::Array(vec![M::F32(0.0), M::F32(-1.5), M::F32(3.25)]),
        ),
        ("t.arr_empty".into(), M::Array(vec![])),
        (
            "t.arr_nested".into(),
            M::Array(vec![
                M::Array(vec![M::I32(1), M::I32(2)]),
                M::Array(vec![M::I32(3)]),
            ]),
        ),
    ]
}

fn sample_tensors() -> Vec<(TensorDecl, Vec<u8>)> {
    let decls = [
        TensorDecl::new("token_embd.weight", &[256, 3], GgmlType::Q4K),
        TensorDecl::new("blk.0.attn_norm.weight", &[33], GgmlType::F32),
        TensorDecl::new("blk.0.attn_q.weight", &[64, 5], GgmlType::Q8_0),
        TensorDecl::new("blk.0.ffn_down.weight", &[256, 2], GgmlType::Q6K),
        TensorDecl::new("blk.0.x.weight", &[32, 3, 2], GgmlType::Q5_0),
        TensorDecl::new("blk.0.y.weight", &[7, 3], GgmlType::F16),
    ];
    decls
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let n = d.bytes().unwrap() as usize;
            (d, noise(i as u64 + 11, n))
        })
        .collect()
}

fn sample_file(alignment: u64) -> Vec<u8> {
    gguf_bytes(&sample_metadata(), &sample_tensors(), alignment).unwrap()
}

pub(crate) fn complete(b: &[u8]) -> GgufHeader {
    match parse_all(b) {
        Ok(HeaderParse::Complete(h)) => h,
        other => panic!("{other:?}"),
    }
}

#[test]
fn writer_roundtrip_all_value_types_and_tensor_data() {
    for alignment in [32, 64, 4096] {
        let b = sample_file(alignment);
        let h = complete(&b);
        assert_eq!(h.version, 3);
        assert_eq!(h.alignment, alignment);
        let mut want = sample_metadata();
        if alignment != 32 {
            want.push(("general.alignment".into(), MetaValue::U32(alignment as u32)));
        }
        assert_eq!(h.metadata, want);
        let src = sample_tensors();
        assert_eq!(h.tensors.len(), src.len());
        for (t, (d, data)) in h.tensors.iter().zip(&src) {
            assert_eq!((&t.name, &t.dims, t.ty), (&d.name, &d.dims, d.ty));
            assert_eq!(t.offset % alignment, 0);
            assert_eq!(t.bytes as usize, data.len());
            assert_eq!(
                &b[t.offset as usize..(t.offset + t.bytes) as usize],
                &data[..],
                "{}",
                t.name
            );
        }
        assert_eq!(h.get_u32("t.u8"), Some(200));
        assert_eq!(h.get_u32("t.i8"), None);
        assert_eq!(h.get_f32("t.f32"), Some(1e-6));
        assert_eq!(h.get_str("t.str"), Some("héllo ▁wörld 🙂"));
    }
}

/// candle's GGUF reader is an independent implementation: it must read what our writer writes the same way.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn candle_reads_writer_output_identically() {
    use candle_core::quantized::gguf_file;
    let b = sample_file(64);
    let h = complete(&b);
    let c = gguf_file::Content::read(&mut std::io::Cursor::new(&b)).unwrap();
    assert_eq!(c.tensor_data_offset, h.data_offset);
    compare_with_candle(&h, &c);
    // candle dequantizes our tensors from their offsets without complaint.
    for t in &h.tensors {
        let q = c
            .tensor(
                &mut std::io::Cursor::new(&b),
                &t.name,
                &candle_core::Device::Cpu,
            )
            .unwrap();
        assert_eq!(q.shape().elem_count() as u64, t.n_elements());
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn candle_dtype(t: GgmlType) -> candle_core::quantized::GgmlDType {
    use candle_core::quantized::GgmlDType as D;
    match t {
        GgmlType::F32 => D::F32,
        GgmlType::F16 => D::F16,
        GgmlType::BF16 => D::BF16,
        GgmlType::Q4_0 => D::Q4_0,
        GgmlType::Q4_1 => D::Q4_1,
        GgmlType::Q5_0 => D::Q5_0,
        GgmlType::Q5_1 => D::Q5_1,
        GgmlType::Q8_0 => D::Q8_0,
        GgmlType::Q2K => D::Q2K,
        GgmlType::Q3K => D::Q3K,
        GgmlType::Q4K => D::Q4K,
        GgmlType::Q5K => D::Q5K,
        GgmlType::Q6K => D::Q6K,
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn block_sizes_match_candle() {
    for t in GgmlType::ALL {
        let d = candle_dtype(t);
        assert_eq!(t.block_len(), d.block_size() as u64, "{t}");
        assert_eq!(t.block_bytes(), d.type_size() as u64, "{t}");
        assert_eq!(GgmlType::from_id(t.id()), Some(t));
    }
    for id in [4, 5, 9, 15, 16, 29, 31, 1000] {
        assert_eq!(GgmlType::from_id(id), None, "{id}");
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn compare_with_candle(h: &GgufHeader, c: &candle_core::quantized::gguf_file::Content) {
    assert_eq!(c.tensor_infos.len(), h.tensors.len());
    for t in &h.tensors {
        let ct = &c.tensor_infos[&t.name];
        assert_eq!(ct.ggml_dtype, candle_dtype(t.ty), "{}", t.name);
        // candle reverses ggml's dim order.
        let mut dims: Vec<u64> = ct.shape.dims().iter().map(|&d| d as u64).collect();
        dims.reverse();
        assert_eq!(dims, t.dims, "{}", t.name);
        assert_eq!(c.tensor_data_offset + ct.offset, t.offset, "{}", t.name);
    }
    assert_eq!(c.metadata.len(), h.metadata.len());
    for (k, v) in &h.metadata {
        assert!(
            same_value(v, &c.metadata[k]),
            "{k}: {v:?} vs {:?}",
            c.metadata[k]
        );
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn same_value(a: &MetaValue, b: &candle_core::quantized::gguf_file::Value) -> bool {
    use candle_core::quantized::gguf_file::Value as V;
    use MetaValue as M;
    match (a, b) {
        (M::U8(x), V::U8(y)) => x == y,
        (M::I8(x), V::I8(y)) => x == y,
        (M::U16(x), V::U16(y)) => x == y,
        (M::I16(x), V::I16(y)) => x == y,
        (M::U32(x), V::U32(y)) => x == y,
        (M::I32(x), V::I32(y)) => x == y,
        (M::U64(x), V::U64(y)) => x == y,
        (M::I64(x), V::I64(y)) => x == y,
        (M::F32(x), V::F32(y)) => x.to_bits() == y.to_bits(),
        (M::F64(x), V::F64(y)) => x.to_bits() == y.to_bits(),
        (M::Bool(x), V::Bool(y)) => x == y,
        (M::Str(x), V::String(y)) => x == y,
        (M::Array(x), V::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        _ => false,
    }
}

#[test]
fn truncation_at_every_byte_is_never_a_wrong_complete() {
    let b = sample_file(64);
    let full = complete(&b);
    let len = b.len() as u64;
    // Where the header proper ends (before padding): the shortest prefix that can be Complete.
    let header_end = (1..=b.len())
        .find(|&k| matches!(parse_header(&b[..k], len), Ok(HeaderParse::Complete(_))))
        .unwrap();
    assert!(header_end as u64 <= full.data_offset && full.data_offset - (header_end as u64) < 64);
    for k in 0..b.len() {
        // The file itself cut at k: some tensor (the last one ends at the end) no longer fits.
        assert!(
            parse_header(&b[..k], k as u64).is_err(),
            "file cut at {k} parsed"
        );
        // Only a prefix of an intact file: either more is needed or the header is all there.
        match parse_header(&b[..k], len) {
            Ok(HeaderParse::NeedMore { at_least }) => {
                assert!(
                    k < header_end,
                    "NeedMore at {k} past the header end {header_end}"
                );
                assert!(
                    at_least > k as u64 && at_least <= header_end as u64,
                    "at {k}: at_least {at_least}"
                );
            }
            Ok(HeaderParse::Complete(h)) => {
                assert!(k >= header_end);
                assert_eq!(h, full);
            }
            Err(e) => panic!("prefix {k} of a valid file: {e}"),
        }
    }
}

#[test]
fn corrupted_files_keep_the_parser_invariants() {
    // Single-byte corruptions of a valid file at every header byte, plus random garbage after a
    // valid magic and version: the checks of the fuzz target, without libFuzzer.
    let b = sample_file(32);
    let header_len = complete(&b).data_offset as usize;
    for i in 0..header_len {
        for x in [0xffu8, 0x80, 0x01, 0x10] {
            let mut c = b.clone();
            c[i] ^= x;
            super::fuzzing::check(&c);
        }
    }
    let mut rng = super::writer::Rng::new(99);
    for n in 0..2000usize {
        let mut c = b"GGUF\x03\0\0\0".to_vec();
        let mut tail = vec![0u8; n % 300];
        rng.fill(&mut tail);
        // Small counts make the random bytes reach the metadata and tensor parsers.
        if tail.len() >= 16 {
            tail[1..8].fill(0);
            tail[9..16].fill(0);
            tail[0] %= 4;
            tail[8] %= 4;
        }
        c.extend_from_slice(&tail);
        super::fuzzing::check(&c);
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn read_header_from_file_grows_its_prefix() {
    // A string larger than the first 1 MiB read forces at least one NeedMore round.
    let mut meta = sample_metadata();
    meta.push(("t.big".into(), MetaValue::Str("x".repeat((1 << 20) - 10))));
    meta.push(("t.big2".into(), MetaValue::Str("y".repeat(900_000))));
    let b = gguf_bytes(&meta, &sample_tensors(), 32).unwrap();
    let dir = std::env::temp_dir().join(format!("gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("big.gguf");
    std::fs::write(&p, &b).unwrap();
    let h = read_header_from_file(&p).unwrap();
    assert_eq!(h, complete(&b));
    std::fs::write(&p, &b[..b.len() - 1]).unwrap();
    assert!(matches!(read_header_from_file(&p), Err(Error::BadModel(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `<repo>/models/gemma-3-270m-q4_k_m.gguf`, when it has been fetched.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn real_model_path() -> Option<std::path::PathBuf> {
    let p =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/gemma-3-270m-q4_k_m.gguf");
    // The rule of crate/tests/reference's `real_model()`: CI must not pass these vacuously.
    if p.exists() {
        return Some(p);
    }
    if std::env::var("GEMMA_WEB_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
        eprintln!(
            "SKIPPED: {} is absent and GEMMA_WEB_SKIP_MODEL_TESTS=1",
            p.display()
        );
        return None;
    }
    panic!(
        "{} is absent: run `make model` (or set GEMMA_WEB_SKIP_MODEL_TESTS=1 to skip)",
        p.display()
    );
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn real_model_header() {
    let Some(p) = real_model_path() else { return };
    let h = read_header_from_file(&p).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 253_113_024);
    assert_eq!(h.version, 3);
    assert_eq!(h.architecture(), Some("gemma3"));
    assert_eq!(h.get_u32("gemma3.block_count"), Some(18));
    assert_eq!(h.get_u32("gemma3.embedding_length"), Some(640));
    let e = h.tensor("token_embd.weight").unwrap();
    assert_eq!(
        (e.ty, e.dims.as_slice()),
        (GgmlType::Q8_0, &[640u64, 262_144][..])
    );
    assert_eq!(
        h.get_array("tokenizer.ggml.tokens").map(|a| a.len()),
        Some(262_144)
    );
    // Everything agrees with candle's reader.
    let c = candle_core::quantized::gguf_file::Content::read(&mut std::fs::File::open(&p).unwrap())
        .unwrap();
    assert_eq!(c.tensor_data_offset, h.data_offset);
    compare_with_candle(&h, &c);
    // The tensors tile the data section: the last ends at the end of the file.
    let end = h.tensors.iter().map(|t| t.offset + t.bytes).max().unwrap();
    assert_eq!(end, 253_113_024);
}

/// Random blocks of every type dequantize (by candle, an independent implementation) to finite
/// weights of the requested magnitude, and differ from block to block.
#[cfg(not(target_arch = "wasm32"))]
#[test]
fn random_blocks_dequantize_to_sensible_weights() {
    use super::writer::{random_blocks, Rng};
    let amp = 0.05f32;
    let rows = 3u64;
    let row = 512u64;
    let tensors: Vec<(TensorDecl, Vec<u8>)> = GgmlType::ALL
        .iter()
        .map(|&ty| {
            let d = TensorDecl::new(format!("w.{}", ty.name()), &[row, rows], ty);
            let mut data = vec![0u8; d.bytes().unwrap() as usize];
            random_blocks(ty, amp, &mut Rng::new(ty.id() as u64 + 5), &mut data);
            (d, data)
        })
        .collect();
    let b = gguf_bytes(&[], &tensors, 32).unwrap();
    let c =
        candle_core::quantized::gguf_file::Content::read(&mut std::io::Cursor::new(&b)).unwrap();
    for (d, _) in &tensors {
        let q = c
            .tensor(
                &mut std::io::Cursor::new(&b),
                &d.name,
                &candle_core::Device::Cpu,
            )
            .unwrap();
        let w: Vec<f32> = q
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(w.len() as u64, row * rows);
        assert!(w.iter().all(|x| x.is_finite()), "{}", d.ty);
        let mean_abs = w.iter().map(|x| x.abs()).sum::<f32>() / w.len() as f32;
        let max_abs = w.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(
            mean_abs > 0.3 * amp && mean_abs < 3.0 * amp,
            "{}: mean |w| {mean_abs}",
            d.ty
        );
        assert!(max_abs < 0.6, "{}: max |w| {max_abs}", d.ty);
        let distinct: std::collections::HashSet<u32> = w.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > 8, "{}", d.ty);
    }
}
