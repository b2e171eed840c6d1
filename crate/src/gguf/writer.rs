//! GGUF v3 writer: metadata of every value type and aligned tensors, streamed to any `io::Write`
//! (a full-size random 2B model is ~1.5 GB and is never held in memory), and random valid blocks
//! of every tensor type. It knows nothing of any model: `model::random` builds Gemma files with it.

use std::io::{self, Write};

use super::{GgmlType, MetaValue, DEFAULT_ALIGNMENT};

/// A tensor to be written: its data comes later, from the writer's callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorDecl {
    pub name: String,
    /// ggml order: `dims[0]` is the row length.
    pub dims: Vec<u64>,
    pub ty: GgmlType,
}

impl TensorDecl {
    pub fn new(name: impl Into<String>, dims: &[u64], ty: GgmlType) -> Self {
        TensorDecl {
            name: name.into(),
            dims: dims.to_vec(),
            ty,
        }
    }

    /// Bytes of the data; `None` when the row length is not a whole number of blocks.
    pub fn bytes(&self) -> Option<u64> {
        let row = *self.dims.first()?;
        let rows: u64 = self.dims.iter().skip(1).product();
        self.ty.row_bytes(row)?.checked_mul(rows)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Counts bytes written through it.
pub struct CountingWriter<W> {
    pub inner: W,
    pub written: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

pub fn put_u32(w: &mut dyn Write, v: u32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub fn put_u64(w: &mut dyn Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

pub fn put_str(w: &mut dyn Write, s: &str) -> io::Result<()> {
    put_u64(w, s.len() as u64)?;
    w.write_all(s.as_bytes())
}

/// Writes a value without its type id (what follows the type id in a metadata entry).
pub fn put_value(w: &mut dyn Write, v: &MetaValue) -> io::Result<()> {
    match v {
        MetaValue::U8(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::I8(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::U16(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::I16(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::U32(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::I32(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::F32(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::Bool(x) => w.write_all(&[u8::from(*x)]),
        MetaValue::Str(s) => put_str(w, s),
        MetaValue::U64(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::I64(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::F64(x) => w.write_all(&x.to_le_bytes()),
        MetaValue::Array(items) => {
            // GGUF arrays are homogeneous; an empty array's element type is arbitrary (u8 here).
            let elem_ty = items.first().map_or(0, MetaValue::type_id);
            if let Some(bad) = items.iter().find(|i| i.type_id() != elem_ty) {
                return Err(invalid(format!(
                    "mixed array: element types {} and {}",
                    elem_ty,
                    bad.type_id()
                )));
            }
            put_u32(w, elem_ty)?;
            put_u64(w, items.len() as u64)?;
            for i in items {
                put_value(w, i)?;
            }
            Ok(())
        }
    }
}

/// Metadata with `general.alignment` added when `alignment` is not the default.
fn with_alignment(
    metadata: &[(String, MetaValue)],
    alignment: u64,
) -> io::Result<Vec<(String, MetaValue)>> {
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(invalid(format!(
            "alignment {alignment} is not a power of two"
        )));
    }
    let mut meta: Vec<(String, MetaValue)> = metadata.to_vec();
    if alignment != DEFAULT_ALIGNMENT {
        if meta.iter().any(|(k, _)| k == "general.alignment") {
            return Err(invalid("general.alignment given twice".into()));
        }
        let a = u32::try_from(alignment).map_err(|_| invalid("alignment above u32".into()))?;
        meta.push(("general.alignment".into(), MetaValue::U32(a)));
    }
    Ok(meta)
}

/// Writes the header and the padding up to the data section. Returns each tensor's byte size.
fn write_header<W: Write>(
    w: &mut CountingWriter<W>,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorDecl],
    alignment: u64,
) -> io::Result<Vec<u64>> {
    let meta = with_alignment(metadata, alignment)?;
    w.write_all(b"GGUF")?;
    put_u32(w, 3)?;
    put_u64(w, tensors.len() as u64)?;
    put_u64(w, meta.len() as u64)?;
    for (k, v) in &meta {
        put_str(w, k)?;
        put_u32(w, v.type_id())?;
        put_value(w, v)?;
    }
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut rel = 0u64;
    for t in tensors {
        let bytes = t
            .bytes()
            .ok_or_else(|| invalid(format!("{}: dims {:?} do not fit {}", t.name, t.dims, t.ty)))?;
        put_str(w, &t.name)?;
        put_u32(w, t.dims.len() as u32)?;
        for &d in &t.dims {
            put_u64(w, d)?;
        }
        put_u32(w, t.ty.id())?;
        put_u64(w, rel)?;
        sizes.push(bytes);
        rel = (rel + bytes).next_multiple_of(alignment);
    }
    pad_to(w, alignment)?;
    Ok(sizes)
}

/// Just the header bytes (through the padding) and the length the whole file would have:
/// enough for [`super::parse_header`] without writing gigabytes of tensor data.
pub fn header_bytes(
    metadata: &[(String, MetaValue)],
    tensors: &[TensorDecl],
    alignment: u64,
) -> io::Result<(Vec<u8>, u64)> {
    let mut w = CountingWriter {
        inner: Vec::new(),
        written: 0,
    };
    let sizes = write_header(&mut w, metadata, tensors, alignment)?;
    let mut len = w.written;
    for (i, s) in sizes.iter().enumerate() {
        if i > 0 {
            len = len.next_multiple_of(alignment);
        }
        len += s;
    }
    Ok((w.inner, len))
}

/// Writes a GGUF file: header, then each tensor's data from `data(index, decl, out)`, which must
/// write exactly `decl.bytes()` bytes. Tensors are laid out in order, each at an `alignment`
/// multiple; no padding follows the last one. Returns the file length.
///
/// `general.alignment` is written into the metadata when `alignment` is not the default 32
/// (and must not already be in `metadata`).
pub fn write_gguf<W, F>(
    out: W,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorDecl],
    alignment: u64,
    mut data: F,
) -> io::Result<u64>
where
    W: Write,
    F: FnMut(usize, &TensorDecl, &mut dyn Write) -> io::Result<()>,
{
    let mut w = CountingWriter {
        inner: out,
        written: 0,
    };
    let sizes = write_header(&mut w, metadata, tensors, alignment)?;
    for (i, t) in tensors.iter().enumerate() {
        if i > 0 {
            pad_to(&mut w, alignment)?;
        }
        let before = w.written;
        data(i, t, &mut w)?;
        let got = w.written - before;
        if got != sizes[i] {
            return Err(invalid(format!(
                "{}: wrote {got} bytes, expected {}",
                t.name, sizes[i]
            )));
        }
    }
    w.flush()?;
    Ok(w.written)
}

fn pad_to<W: Write>(w: &mut CountingWriter<W>, alignment: u64) -> io::Result<()> {
    let pad = w.written.next_multiple_of(alignment) - w.written;
    w.write_all(&vec![0u8; pad as usize])
}

/// Writes a GGUF into memory from tensors whose data is already at hand (for small test files).
pub fn gguf_bytes(
    metadata: &[(String, MetaValue)],
    tensors: &[(TensorDecl, Vec<u8>)],
    alignment: u64,
) -> io::Result<Vec<u8>> {
    let decls: Vec<TensorDecl> = tensors.iter().map(|(d, _)| d.clone()).collect();
    let mut out = Vec::new();
    write_gguf(&mut out, metadata, &decls, alignment, |i, _, w| {
        w.write_all(&tensors[i].1)
    })?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Random tensor data (the Gemma model files built from it are in `model::random`)
// ---------------------------------------------------------------------------------------------

/// A small deterministic PRNG (SplitMix64): reproducible test data without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

fn put_f16(block: &mut [u8], at: usize, v: f32) {
    block[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

/// Fills `out` (a whole number of `ty` blocks) with random valid blocks whose dequantized weights
/// have a mean |w| of roughly `amp`: random quants, with the f16 scales chosen for that magnitude
/// (jittered per block so blocks differ in scale as in real files).
pub fn random_blocks(ty: GgmlType, amp: f32, rng: &mut Rng, out: &mut [u8]) {
    let bb = ty.block_bytes() as usize;
    for block in out.chunks_exact_mut(bb) {
        let a = amp * (0.5 + rng.f32());
        match ty {
            GgmlType::F32 => {
                for w in block.chunks_exact_mut(4) {
                    w.copy_from_slice(&((rng.f32() * 4.0 - 2.0) * amp).to_le_bytes());
                }
            }
            GgmlType::F16 => {
                for w in block.chunks_exact_mut(2) {
                    w.copy_from_slice(
                        &half::f16::from_f32((rng.f32() * 4.0 - 2.0) * amp).to_le_bytes(),
                    );
                }
            }
            GgmlType::BF16 => {
                for w in block.chunks_exact_mut(2) {
                    w.copy_from_slice(
                        &half::bf16::from_f32((rng.f32() * 4.0 - 2.0) * amp).to_le_bytes(),
                    );
                }
            }
            _ => {
                rng.fill(block);
                // Quant-value means: |q - 8| ~ 4 (Q4_0), |q - 16| ~ 8 (Q5_0), |q| ~ 64 (Q8_0), ...
                match ty {
                    GgmlType::Q4_0 => put_f16(block, 0, a / 4.0),
                    GgmlType::Q5_0 => put_f16(block, 0, a / 8.0),
                    GgmlType::Q8_0 => put_f16(block, 0, a / 64.0),
                    GgmlType::Q4_1 => {
                        put_f16(block, 0, 4.0 * a / 15.0);
                        put_f16(block, 2, -2.0 * a);
                    }
                    GgmlType::Q5_1 => {
                        put_f16(block, 0, 4.0 * a / 31.0);
                        put_f16(block, 2, -2.0 * a);
                    }
                    // d*sc*q - dmin*m with 4-bit sc, m and 2-bit q.
                    GgmlType::Q2K => {
                        put_f16(block, 80, a / 10.0);
                        put_f16(block, 82, a / 7.5);
                    }
                    // d*(sc-32)*q with 6-bit sc and q in -4..3.
                    GgmlType::Q3K => put_f16(block, 108, a / 32.0),
                    // d*sc*q - dmin*m with 6-bit sc, m and 4- or 5-bit q.
                    GgmlType::Q4K => {
                        put_f16(block, 0, a / 120.0);
                        put_f16(block, 2, a / 16.0);
                    }
                    GgmlType::Q5K => {
                        put_f16(block, 0, a / 240.0);
                        put_f16(block, 2, a / 16.0);
                    }
                    // d*sc*(q-32) with i8 sc.
                    GgmlType::Q6K => put_f16(block, 208, a / 1024.0),
                    _ => {}
                }
            }
        }
    }
}
