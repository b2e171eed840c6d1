//! GGUF v2/v3 header reader (little-endian), hardened against hostile files.
//!
//! [`parse_header`] works on a byte *prefix* of the file: the browser fetches the header with an HTTP
//! Range request before it downloads any weights, so the parser either returns the whole header or
//! says how long a prefix it needs next. It never panics and trusts nothing in the file: every
//! offset is computed with checked `u64` arithmetic (wasm32's `usize` is 32 bits), counts and
//! lengths are capped before anything is allocated, and every tensor's byte range is checked against
//! the file length. Each rejection is a [`GgufError`] naming its kind, the field and the byte offset.
//!
//! Layout (all little-endian): magic `GGUF`, version u32, tensor count u64, metadata count u64,
//! metadata (key string, value type u32, value), tensor infos (name string, n_dims u32,
//! dims u64[n_dims], type u32, offset u64 relative to the data section), padding to
//! `general.alignment` (default 32), tensor data. Strings are a u64 length then UTF-8 bytes.

#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod writer;

use std::collections::HashSet;
use std::fmt;

use crate::Error;

/// Longest metadata key: the GGUF spec limits keys to 65535 bytes.
pub const MAX_KEY_LEN: u64 = 65_535;
/// Longest string value. The largest real strings are chat templates of tens of KiB.
pub const MAX_STRING_LEN: u64 = 1 << 20;
/// Longest tensor name. ggml itself uses 64; other writers are allowed some slack.
pub const MAX_TENSOR_NAME_LEN: u64 = 1024;
/// Most elements in one metadata array. Vocabularies are ~262k tokens and BPE merge lists ~500k;
/// 16M leaves room for larger vocabularies without letting a file ask for billions.
pub const MAX_ARRAY_LEN: u64 = 1 << 24;
/// Most metadata values in the whole header (all array elements counted). Each parsed value costs
/// ~32 bytes of memory, so this bounds the header's memory at about 256 MiB even for a hostile file.
pub const MAX_TOTAL_VALUES: u64 = 1 << 23;
/// Deepest nesting of arrays inside arrays (real files use at most 1).
pub const MAX_ARRAY_DEPTH: u32 = 3;
/// Most metadata entries.
pub const MAX_KV_COUNT: u64 = 1 << 16;
/// Most tensors (large MoE models have a few thousand).
pub const MAX_TENSOR_COUNT: u64 = 1 << 16;
/// Most dimensions of a tensor (ggml's GGML_MAX_DIMS).
pub const MAX_DIMS: u32 = 4;
/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

const MAGIC: &[u8; 4] = b"GGUF";

/// Tensor element types we can read (ggml type ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    BF16,
}

impl GgmlType {
    pub const ALL: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2K,
        GgmlType::Q3K,
        GgmlType::Q4K,
        GgmlType::Q5K,
        GgmlType::Q6K,
        GgmlType::BF16,
    ];

    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            6 => GgmlType::Q5_0,
            7 => GgmlType::Q5_1,
            8 => GgmlType::Q8_0,
            10 => GgmlType::Q2K,
            11 => GgmlType::Q3K,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q2K => 10,
            GgmlType::Q3K => 11,
            GgmlType::Q4K => 12,
            GgmlType::Q5K => 13,
            GgmlType::Q6K => 14,
            GgmlType::BF16 => 30,
        }
    }

    /// Weights per block (QK of ggml).
    pub fn block_len(self) -> u64 {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                32
            }
            GgmlType::Q2K | GgmlType::Q3K | GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block, as the block structs of ggml-common.h.
    pub fn block_bytes(self) -> u64 {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q4_0 => 2 + 16,               // d, qs[16]
            GgmlType::Q4_1 => 2 + 2 + 16,           // d, m, qs[16]
            GgmlType::Q5_0 => 2 + 4 + 16,           // d, qh[4], qs[16]
            GgmlType::Q5_1 => 2 + 2 + 4 + 16,       // d, m, qh[4], qs[16]
            GgmlType::Q8_0 => 2 + 32,               // d, qs[32]
            GgmlType::Q2K => 16 + 64 + 2 + 2,       // scales[16], qs[64], d, dmin
            GgmlType::Q3K => 32 + 64 + 12 + 2,      // hmask[32], qs[64], scales[12], d
            GgmlType::Q4K => 2 + 2 + 12 + 128,      // d, dmin, scales[12], qs[128]
            GgmlType::Q5K => 2 + 2 + 12 + 32 + 128, // d, dmin, scales[12], qh[32], qs[128]
            GgmlType::Q6K => 128 + 64 + 16 + 2,     // ql[128], qh[64], scales[16], d
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q2K => "Q2_K",
            GgmlType::Q3K => "Q3_K",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
            GgmlType::BF16 => "BF16",
        }
    }

    /// Bytes of a row of `n` weights; `None` when `n` is not a whole number of blocks or overflows.
    pub fn row_bytes(self, n: u64) -> Option<u64> {
        if n % self.block_len() != 0 {
            return None;
        }
        (n / self.block_len()).checked_mul(self.block_bytes())
    }
}

/// The 32 values of a Q5_0 block (f16 scale, u32 of fifth bits, 16 bytes of nibbles), as the
/// i8s `q - 16` that the scale multiplies: weight j's low 4 bits are nibble j % 16 of the bytes at
/// 6 (low nibbles first), its bit 4 is bit j of the u32 at 2. A Q8_0 block with the same scale
/// and these values holds exactly the same weights.
pub fn q5_0_values(block: &[u8; 22]) -> [i8; 32] {
    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
    std::array::from_fn(|j| {
        let byte = block[6 + j % 16];
        let nib = if j < 16 { byte & 0x0f } else { byte >> 4 };
        (nib | (((qh >> j) & 1) as u8) << 4) as i8 - 16
    })
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value. Type ids 0..=12 of the GGUF spec.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The GGUF value type id.
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::Str(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// Any non-negative integer value as u64 (files disagree on integer widths).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_u32(&self) -> Option<u32> {
        self.as_u64().and_then(|v| u32::try_from(v).ok())
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Float values, and integers (some writers store e.g. rope bases as integers).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => self.as_i64().map(|v| v as f32),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `dims[0]` is the row length (contiguous in memory).
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Absolute file offset of the first byte.
    pub offset: u64,
    pub bytes: u64,
}

impl TensorInfo {
    /// Number of weights (fits in u64: checked at parse time).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Row length in weights (`dims[0]`).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(0)
    }

    /// Number of rows (product of `dims[1..]`).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> u64 {
        self.ty.row_bytes(self.row_len()).unwrap_or(0)
    }
}

/// A parsed header: everything before the tensor data.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section (end of the header, rounded up to `alignment`).
    pub data_offset: u64,
}

impl GgufHeader {
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An integer value that fits in u32, whatever integer type the file used.
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key).and_then(MetaValue::as_u32)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(MetaValue::as_u64)
    }

    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key).and_then(MetaValue::as_f32)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(MetaValue::as_str)
    }

    pub fn get_array(&self, key: &str) -> Option<&[MetaValue]> {
        self.get(key).and_then(MetaValue::as_array)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// `general.architecture`, if present.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// Total bytes of all tensors.
    pub fn tensor_bytes(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |a, t| a.saturating_add(t.bytes))
    }
}

/// Result of parsing a prefix.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderParse {
    Complete(GgufHeader),
    /// The prefix ended inside the header: fetch at least this many bytes from the start of the file.
    NeedMore {
        at_least: u64,
    },
}

/// What was wrong with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufErrorKind {
    /// The file does not start with `GGUF`.
    BadMagic,
    /// Not version 2 or 3 (v1 used 32-bit counts and is not supported).
    BadVersion,
    /// A header field runs past the end of the file.
    Truncated,
    /// A size or offset computation overflowed u64.
    Overflow,
    /// Metadata count, tensor count or array length above its cap.
    CountTooLarge,
    /// A string longer than its cap.
    StringTooLong,
    /// A key, name or string value is not UTF-8.
    InvalidUtf8,
    /// A metadata value type id outside 0..=12.
    UnknownValueType,
    /// A value that is not allowed (a bool other than 0/1, a key with the wrong value type).
    InvalidValue,
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`].
    NestingTooDeep,
    /// More metadata values in total than [`MAX_TOTAL_VALUES`].
    TooManyValues,
    /// The same metadata key twice.
    DuplicateKey,
    /// `general.alignment` zero or not a power of two.
    BadAlignment,
    /// A tensor type id we do not know (or cannot run).
    UnknownTensorType,
    /// A tensor with zero or more than [`MAX_DIMS`] dimensions.
    BadDimCount,
    /// A tensor dimension of zero.
    ZeroDim,
    /// A row length (`dims[0]`) that is not a multiple of the type's block length.
    RowNotBlockMultiple,
    /// The same tensor name twice.
    DuplicateTensor,
    /// A tensor offset not a multiple of the alignment.
    MisalignedOffset,
    /// A tensor starts at or past the end of the file.
    OffsetOutOfRange,
    /// A tensor's data runs past the end of the file.
    DataTruncated,
}

/// A typed GGUF rejection: what, in which field, at which byte offset of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufError {
    pub kind: GgufErrorKind,
    /// The field, e.g. `tensor_count`, `metadata["general.alignment"]`, `tensor["blk.0.attn_q.weight"].type`.
    pub field: String,
    /// Byte offset in the file where the offending field starts.
    pub offset: u64,
    /// Human detail (values involved).
    pub detail: String,
}

impl GgufError {
    fn new(
        kind: GgufErrorKind,
        field: impl Into<String>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        GgufError {
            kind,
            field: field.into(),
            offset,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "GGUF {:?} in {} at byte {}",
            self.kind, self.field, self.offset
        )?;
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl std::error::Error for GgufError {}

impl From<GgufError> for Error {
    fn from(e: GgufError) -> Self {
        Error::BadModel(e.to_string())
    }
}

/// Why parsing stopped early.
enum Stop {
    Bad(GgufError),
    More(u64),
}

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Stop::Bad(e)
    }
}

type P<T> = Result<T, Stop>;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: u64,
    file_len: u64,
    values: u64,
}

impl<'a> Cursor<'a> {
    fn err(&self, kind: GgufErrorKind, field: &dyn Fn() -> String, detail: String) -> Stop {
        Stop::Bad(GgufError::new(kind, field(), self.pos, detail))
    }

    /// Ensures `n` more bytes exist in the file and in the prefix; returns them and advances.
    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> P<&'a [u8]> {
        let end = match self.pos.checked_add(n) {
            Some(e) => e,
            None => return Err(self.err(GgufErrorKind::Overflow, field, format!("{n} bytes"))),
        };
        if end > self.file_len {
            return Err(self.err(
                GgufErrorKind::Truncated,
                field,
                format!(
                    "needs {n} bytes, the file has {} left",
                    self.file_len - self.pos.min(self.file_len)
                ),
            ));
        }
        if end > self.buf.len() as u64 {
            return Err(Stop::More(end));
        }
        // Both bounds are <= buf.len(), so they fit in usize.
        let s = self
            .buf
            .get(self.pos as usize..end as usize)
            .ok_or(Stop::More(end))?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> P<[u8; N]> {
        let s = self.take(N as u64, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, field: &dyn Fn() -> String) -> P<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> P<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    fn string(&mut self, cap: u64, field: &dyn Fn() -> String) -> P<String> {
        let at = self.pos;
        let len = self.u64(field)?;
        if len > cap {
            return Err(Stop::Bad(GgufError::new(
                GgufErrorKind::StringTooLong,
                field(),
                at,
                format!("length {len} > cap {cap}"),
            )));
        }
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(Stop::Bad(GgufError::new(
                GgufErrorKind::InvalidUtf8,
                field(),
                at,
                e.to_string(),
            ))),
        }
    }

    fn count_value(&mut self, field: &dyn Fn() -> String) -> P<()> {
        self.values += 1;
        if self.values > MAX_TOTAL_VALUES {
            return Err(self.err(
                GgufErrorKind::TooManyValues,
                field,
                format!("more than {MAX_TOTAL_VALUES} metadata values"),
            ));
        }
        Ok(())
    }

    fn value(&mut self, ty: u32, depth: u32, field: &dyn Fn() -> String) -> P<MetaValue> {
        self.count_value(field)?;
        Ok(match ty {
            0 => MetaValue::U8(u8::from_le_bytes(self.array(field)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(field)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(field)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(field)?)),
            4 => MetaValue::U32(self.u32(field)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(field)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(field)?)),
            7 => {
                let at = self.pos;
                match self.array::<1>(field)?[0] {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    b => {
                        return Err(Stop::Bad(GgufError::new(
                            GgufErrorKind::InvalidValue,
                            field(),
                            at,
                            format!("bool byte {b}"),
                        )))
                    }
                }
            }
            8 => MetaValue::Str(self.string(MAX_STRING_LEN, field)?),
            9 => {
                let at = self.pos;
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(
                        GgufErrorKind::NestingTooDeep,
                        field,
                        format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"),
                    ));
                }
                let elem_ty = self.u32(field)?;
                if elem_ty > 12 {
                    return Err(Stop::Bad(GgufError::new(
                        GgufErrorKind::UnknownValueType,
                        field(),
                        at,
                        format!("array element type {elem_ty}"),
                    )));
                }
                let len_at = self.pos;
                let len = self.u64(field)?;
                if len > MAX_ARRAY_LEN {
                    return Err(Stop::Bad(GgufError::new(
                        GgufErrorKind::CountTooLarge,
                        field(),
                        len_at,
                        format!("array length {len} > cap {MAX_ARRAY_LEN}"),
                    )));
                }
                // Every element takes at least one byte: never reserve more than the file could hold.
                let left = self.file_len.saturating_sub(self.pos);
                if len > left {
                    return Err(Stop::Bad(GgufError::new(
                        GgufErrorKind::Truncated,
                        field(),
                        len_at,
                        format!("array of {len} elements, {left} bytes left in the file"),
                    )));
                }
                let mut items = Vec::with_capacity(len.min(1 << 16) as usize);
                for _ in 0..len {
                    items.push(self.value(elem_ty, depth + 1, field)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(field)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(field)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(field)?)),
            t => {
                return Err(self.err(
                    GgufErrorKind::UnknownValueType,
                    field,
                    format!("value type {t}"),
                ));
            }
        })
    }
}

/// Parses a GGUF header from the first `prefix.len()` bytes of a file of `file_len` bytes.
///
/// Returns [`HeaderParse::NeedMore`] when the prefix ends inside the header (the caller re-parses
/// with a longer prefix), and an error when the file is malformed or the header or any tensor does
/// not fit in `file_len`.
pub fn parse_header(prefix: &[u8], file_len: u64) -> Result<HeaderParse, GgufError> {
    let mut c = Cursor {
        buf: prefix,
        pos: 0,
        file_len,
        values: 0,
    };
    match parse(&mut c) {
        Ok(h) => Ok(HeaderParse::Complete(h)),
        Err(Stop::More(n)) => Ok(HeaderParse::NeedMore { at_least: n }),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn parse(c: &mut Cursor<'_>) -> P<GgufHeader> {
    use GgufErrorKind as K;
    let f = |s: &'static str| move || s.to_string();

    let magic = c.array::<4>(&f("magic"))?;
    if &magic != MAGIC {
        return Err(Stop::Bad(GgufError::new(
            K::BadMagic,
            "magic",
            0,
            format!("{magic:02x?}"),
        )));
    }
    let version = c.u32(&f("version"))?;
    if version != 2 && version != 3 {
        return Err(Stop::Bad(GgufError::new(
            K::BadVersion,
            "version",
            4,
            format!("version {version}; only 2 and 3 are supported"),
        )));
    }
    let n_tensors = c.u64(&f("tensor_count"))?;
    if n_tensors > MAX_TENSOR_COUNT {
        return Err(Stop::Bad(GgufError::new(
            K::CountTooLarge,
            "tensor_count",
            8,
            format!("{n_tensors} > cap {MAX_TENSOR_COUNT}"),
        )));
    }
    let n_kv = c.u64(&f("metadata_kv_count"))?;
    if n_kv > MAX_KV_COUNT {
        return Err(Stop::Bad(GgufError::new(
            K::CountTooLarge,
            "metadata_kv_count",
            16,
            format!("{n_kv} > cap {MAX_KV_COUNT}"),
        )));
    }

    let mut metadata: Vec<(String, MetaValue)> = Vec::with_capacity(n_kv.min(1024) as usize);
    let mut keys = HashSet::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let key_at = c.pos;
        let key = c.string(MAX_KEY_LEN, &|| format!("metadata[{i}].key"))?;
        let kf = || format!("metadata[{key:?}]");
        if !keys.insert(key.clone()) {
            return Err(Stop::Bad(GgufError::new(K::DuplicateKey, kf(), key_at, "")));
        }
        let ty = c.u32(&kf)?;
        let val_at = c.pos;
        let value = c.value(ty, 0, &kf)?;
        if key == "general.alignment" {
            alignment = match value.as_u64() {
                Some(a) if a != 0 && a.is_power_of_two() => a,
                Some(a) => {
                    return Err(Stop::Bad(GgufError::new(
                        K::BadAlignment,
                        kf(),
                        val_at,
                        format!("{a} is not a non-zero power of two"),
                    )))
                }
                None => {
                    return Err(Stop::Bad(GgufError::new(
                        K::BadAlignment,
                        kf(),
                        val_at,
                        format!("value type {} is not an integer", value.type_id()),
                    )))
                }
            };
        }
        metadata.push((key, value));
    }

    struct Raw {
        info: TensorInfo,
        rel: u64,
        at: u64,
    }
    let mut raw: Vec<Raw> = Vec::with_capacity(n_tensors.min(4096) as usize);
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let at = c.pos;
        let name = c.string(MAX_TENSOR_NAME_LEN, &|| format!("tensor[{i}].name"))?;
        let tf = |what: &'static str| {
            let name = name.clone();
            move || format!("tensor[{name:?}].{what}")
        };
        if !names.insert(name.clone()) {
            return Err(Stop::Bad(GgufError::new(
                K::DuplicateTensor,
                tf("name")(),
                at,
                "",
            )));
        }
        let nd_at = c.pos;
        let n_dims = c.u32(&tf("n_dims"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Stop::Bad(GgufError::new(
                K::BadDimCount,
                tf("n_dims")(),
                nd_at,
                format!("{n_dims} dims; 1..={MAX_DIMS} allowed"),
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for d in 0..n_dims {
            let d_at = c.pos;
            let dim = c.u64(&tf("dims"))?;
            if dim == 0 {
                return Err(Stop::Bad(GgufError::new(
                    K::ZeroDim,
                    tf("dims")(),
                    d_at,
                    format!("dims[{d}] = 0"),
                )));
            }
            n_elements = n_elements.checked_mul(dim).ok_or_else(|| {
                Stop::Bad(GgufError::new(
                    K::Overflow,
                    tf("dims")(),
                    d_at,
                    "element count overflows u64",
                ))
            })?;
            dims.push(dim);
        }
        let ty_at = c.pos;
        let ty_id = c.u32(&tf("type"))?;
        let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
            Stop::Bad(GgufError::new(
                K::UnknownTensorType,
                tf("type")(),
                ty_at,
                format!("ggml type id {ty_id}"),
            ))
        })?;
        let row = dims[0];
        if row % ty.block_len() != 0 {
            return Err(Stop::Bad(GgufError::new(
                K::RowNotBlockMultiple,
                tf("dims")(),
                nd_at,
                format!(
                    "row length {row} is not a multiple of {} ({} weights per block)",
                    ty.name(),
                    ty.block_len()
                ),
            )));
        }
        let bytes = ty
            .row_bytes(row)
            .and_then(|rb| rb.checked_mul(n_elements / row))
            .ok_or_else(|| {
                Stop::Bad(GgufError::new(
                    K::Overflow,
                    tf("dims")(),
                    nd_at,
                    "byte size overflows u64",
                ))
            })?;
        let off_at = c.pos;
        let rel = c.u64(&tf("offset"))?;
        raw.push(Raw {
            info: TensorInfo {
                name,
                dims,
                ty,
                offset: 0,
                bytes,
            },
            rel,
            at: off_at,
        });
    }

    let header_end = c.pos;
    let data_offset = header_end
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| Stop::Bad(GgufError::new(K::Overflow, "data_offset", header_end, "")))?;

    let file_len = c.file_len;
    let mut tensors = Vec::with_capacity(raw.len());
    for r in raw {
        let Raw { mut info, rel, at } = r;
        let field = format!("tensor[{:?}].offset", info.name);
        if rel % alignment != 0 {
            return Err(Stop::Bad(GgufError::new(
                K::MisalignedOffset,
                field,
                at,
                format!("{rel} is not a multiple of the alignment {alignment}"),
            )));
        }
        let start = match data_offset.checked_add(rel) {
            Some(s) if s < file_len => s,
            _ => {
                return Err(Stop::Bad(GgufError::new(
                    K::OffsetOutOfRange,
                    field,
                    at,
                    format!("data offset {data_offset} + {rel} is past the file end {file_len}"),
                )))
            }
        };
        match start.checked_add(info.bytes) {
            Some(end) if end <= file_len => {}
            _ => {
                return Err(Stop::Bad(GgufError::new(
                    K::DataTruncated,
                    field,
                    at,
                    format!(
                        "{} bytes at {start} run past the file end {file_len}",
                        info.bytes
                    ),
                )))
            }
        }
        info.offset = start;
        tensors.push(info);
    }

    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
    })
}

/// Reads just the header of a GGUF file, growing the prefix it reads until the header is complete.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_header_from_file(path: impl AsRef<std::path::Path>) -> Result<GgufHeader, Error> {
    use std::io::Read;
    let path = path.as_ref();
    let mut file =
        std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let file_len = file.metadata()?.len();
    let mut buf: Vec<u8> = Vec::new();
    let mut want: u64 = file_len.min(1 << 20);
    loop {
        let have = buf.len() as u64;
        if want > have {
            let extra = want - have;
            (&mut file).take(extra).read_to_end(&mut buf)?;
            if (buf.len() as u64) < want {
                return Err(Error::Io(format!(
                    "{}: file shrank while reading its header",
                    path.display()
                )));
            }
        }
        match parse_header(&buf, file_len)? {
            HeaderParse::Complete(h) => return Ok(h),
            HeaderParse::NeedMore { at_least } => {
                let next = at_least.max(want.saturating_mul(2)).min(file_len);
                if next <= want {
                    return Err(Error::BadModel(format!(
                        "{}: header parse made no progress",
                        path.display()
                    )));
                }
                want = next;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
