//! GGUF v3 writer: metadata of every value type and aligned tensors, streamed to any `io::Write`
//! (a full-size random 2B model is ~1.5 GB and is never held in memory).

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
    if alignment == 0 || !alignment.is_power_of_two() {
        return Err(invalid(format!(
            "alignment {alignment} is not a power of two"
        )));
    }
    let mut w = CountingWriter {
        inner: out,
        written: 0,
    };
    let mut meta: Vec<(String, MetaValue)> = metadata.to_vec();
    if alignment != DEFAULT_ALIGNMENT {
        if meta.iter().any(|(k, _)| k == "general.alignment") {
            return Err(invalid("general.alignment given twice".into()));
        }
        let a = u32::try_from(alignment).map_err(|_| invalid("alignment above u32".into()))?;
        meta.push(("general.alignment".into(), MetaValue::U32(a)));
    }

    w.write_all(b"GGUF")?;
    put_u32(&mut w, 3)?;
    put_u64(&mut w, tensors.len() as u64)?;
    put_u64(&mut w, meta.len() as u64)?;
    for (k, v) in &meta {
        put_str(&mut w, k)?;
        put_u32(&mut w, v.type_id())?;
        put_value(&mut w, v)?;
    }
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut rel = 0u64;
    for t in tensors {
        let bytes = t
            .bytes()
            .ok_or_else(|| invalid(format!("{}: dims {:?} do not fit {}", t.name, t.dims, t.ty)))?;
        put_str(&mut w, &t.name)?;
        put_u32(&mut w, t.dims.len() as u32)?;
        for &d in &t.dims {
            put_u64(&mut w, d)?;
        }
        put_u32(&mut w, t.ty.id())?;
        put_u64(&mut w, rel)?;
        sizes.push(bytes);
        rel = (rel + bytes).next_multiple_of(alignment);
    }
    pad_to(&mut w, alignment)?;
    let data_offset = w.written;
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
    debug_assert!(w.written >= data_offset);
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
