//! One loader for every byte source: the GGUF header is parsed from a prefix, then each tensor
//! the model needs is streamed in bounded slices straight into its GPU buffer(s) (or, for the CPU
//! engine, its host matrix). Apart from the CPU engine's weights, the whole file is never in
//! host memory; at most one slice plus the weight upload's staging is.
//!
//! A byte source is anything that can read a range: a native file now, browser storage (OPFS,
//! a `Blob`, HTTP ranges) later. Reads are `async` so the browser never blocks.

use std::collections::HashMap;

use crate::gguf::{parse_header, GgmlType, GgufHeader, HeaderParse, TensorInfo};
use crate::gpu::{Gpu, WeightTensor, WeightUpload};
use crate::model::config::{check_inventory, GemmaConfig, TensorRole};
use crate::Error;

/// Bytes read from the source per call while streaming a tensor.
pub const SLICE_BYTES: usize = 4 << 20;

/// The first read of the header; more is read when the header (mostly the vocabulary) is longer.
const HEADER_PREFIX: u64 = 1 << 20;
/// A header larger than this is refused rather than read into memory (the 262k-token
/// vocabulary of Gemma 3 takes about 6 MB).
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

/// How long the prefix read for a header should grow next, when the parser needs `at_least`
/// bytes of a `len`-byte file and `have` are read: geometrically (so a long vocabulary costs a few
/// reads, not thousands) up to the file's end and [`MAX_HEADER_BYTES`]. A header that needs more
/// than that, more than the file, or no more than what was read is `BadModel`. The page's header
/// probe (`readGgufHeader` in `web.rs`) grows its prefix by the same rule.
pub fn next_header_read(at_least: u64, have: u64, len: u64) -> Result<u64, Error> {
    if at_least <= have || at_least > len || at_least > MAX_HEADER_BYTES {
        return Err(Error::BadModel(format!(
            "the GGUF header needs {at_least} bytes of a {len}-byte file (at most {} MiB are read)",
            MAX_HEADER_BYTES >> 20
        )));
    }
    Ok(at_least
        .max(have.saturating_mul(2))
        .min(len)
        .min(MAX_HEADER_BYTES))
}

/// Random-access bytes of a model file.
#[allow(async_fn_in_trait)]
pub trait ByteSource {
    /// Total length in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fills `buf` with the bytes at `offset..offset + buf.len()`; a range past the end is an
    /// error, never a short read.
    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error>;
}

/// Bytes already in memory (tests, small files).
impl ByteSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| Some(start..start.checked_add(buf.len())?))
            .and_then(|range| self.get(range))
            .ok_or_else(|| {
                Error::BadModel(format!(
                    "read of {} bytes at {offset} past the end ({} bytes)",
                    buf.len(),
                    <[u8]>::len(self)
                ))
            })?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// A model file on disk (native only).
#[cfg(not(target_arch = "wasm32"))]
pub struct FileSource {
    file: std::fs::File,
    len: u64,
}

#[cfg(not(target_arch = "wasm32"))]
impl FileSource {
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let file =
            std::fs::File::open(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        let len = file.metadata()?.len();
        Ok(FileSource { file, len })
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl ByteSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Error> {
        use std::io::{Read, Seek, SeekFrom};
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(Error::BadModel(format!(
                "read of {} bytes at {offset} past the end of a {}-byte file",
                buf.len(),
                self.len
            )));
        }
        self.file.seek(SeekFrom::Start(offset))?;
        self.file.read_exact(buf)?;
        Ok(())
    }
}

/// Reads and parses the GGUF header, fetching more of the file while the parser asks for it.
pub async fn read_header<S: ByteSource>(src: &mut S) -> Result<GgufHeader, Error> {
    let len = src.len();
    let mut want = len.min(HEADER_PREFIX);
    let mut buf = Vec::new();
    loop {
        let have = buf.len() as u64;
        if want > have {
            let extra = usize::try_from(want - have)
                .map_err(|_| Error::BadModel("header too large".into()))?;
            buf.resize(buf.len() + extra, 0);
            src.read_at(have, &mut buf[have as usize..]).await?;
        }
        match parse_header(&buf, len)? {
            HeaderParse::Complete(h) => return Ok(h),
            HeaderParse::NeedMore { at_least } => want = next_header_read(at_least, want, len)?,
        }
    }
}

/// A tensor on the GPU: a matrix (quantized rows, possibly split into pieces) or an f32 vector
/// (norm weights).
#[derive(Debug)]
pub enum GpuTensor {
    Matrix(WeightTensor),
    Vector { buffer: wgpu::Buffer, len: u32 },
}

/// What [`load_tensors`] (or [`load_into`] another sink) produced.
#[derive(Debug)]
pub struct Loaded<T = GpuTensor> {
    pub header: GgufHeader,
    pub config: GemmaConfig,
    pub tensors: HashMap<String, T>,
    /// Bytes of tensor data read from the source.
    pub bytes_read: u64,
}

impl<T> Loaded<T> {
    /// Takes the tensor `name` out (each tensor is taken once, by the model that uses it).
    pub fn take(&mut self, name: &str) -> Result<T, Error> {
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::BadModel(format!("tensor {name} is missing")))
    }
}

impl Loaded<GpuTensor> {
    /// Takes the matrix `name` out (each tensor is taken once, by the model that binds it).
    pub fn matrix(&mut self, name: &str) -> Result<WeightTensor, Error> {
        match self.take(name)? {
            GpuTensor::Matrix(w) => Ok(w),
            GpuTensor::Vector { .. } => Err(Error::BadModel(format!(
                "{name} is a vector, expected a matrix"
            ))),
        }
    }

    /// Takes the f32 vector `name` out, checking its length.
    pub fn vector(&mut self, name: &str, len: u32) -> Result<wgpu::Buffer, Error> {
        match self.take(name)? {
            GpuTensor::Vector { buffer, len: l } if l == len => Ok(buffer),
            _ => Err(Error::BadModel(format!(
                "{name} is not an f32 vector of {len} values"
            ))),
        }
    }
}

/// How to load.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Split matrices into pieces of at most this many bytes even when the device allows more
    /// (tests use it to exercise splits on small models).
    pub max_piece_bytes: Option<u64>,
}

/// Where the loader puts the tensors it streams: GPU buffers ([`load_tensors`]) or host memory
/// (the CPU engine). For each tensor, in file order: `begin`, its bytes in `push`es of at most
/// [`SLICE_BYTES`], then `finish`.
#[allow(async_fn_in_trait)]
pub trait TensorSink {
    type Tensor;
    /// A tensor starts; a matrix is (cols, rows) = GGUF's (dims[0], dims[1]) (see
    /// [`matrix_shape`]), a [`TensorRole::Norm`] an f32 vector ([`vector_len`]).
    async fn begin(&mut self, info: &TensorInfo, role: TensorRole) -> Result<(), Error>;
    fn push(&mut self, bytes: &[u8]) -> Result<(), Error>;
    async fn finish(&mut self) -> Result<Self::Tensor, Error>;
    /// Sees the checked header before the first tensor (to plan how to hold the tensors).
    fn plan(&mut self, _header: &GgufHeader, _config: &GemmaConfig) {}
}

/// Reads the header, checks it describes a Gemma model we can run, and streams every tensor the
/// model needs into `sink`, in file order. `progress(done, total)` is called after each slice.
pub async fn load_into<S: ByteSource, K: TensorSink>(
    src: &mut S,
    sink: &mut K,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Loaded<K::Tensor>, Error> {
    let header = read_header(src).await?;
    let config = GemmaConfig::from_header(&header)?;
    check_inventory(&header, &config)?;
    sink.plan(&header, &config);

    let mut wanted: Vec<(TensorInfo, TensorRole)> = Vec::new();
    for (name, _, role) in config.expected_tensors() {
        let info = header
            .tensor(&name)
            .ok_or_else(|| Error::BadModel(format!("tensor {name} is missing")))?;
        wanted.push((info.clone(), role));
    }
    // Sequential reads: friendlier to disks, HTTP ranges and browser storage alike.
    wanted.sort_by_key(|(t, _)| t.offset);
    let total: u64 = wanted.iter().map(|(t, _)| t.bytes).sum();

    let mut slice = vec![0u8; SLICE_BYTES];
    let mut tensors = HashMap::with_capacity(wanted.len());
    let mut done = 0u64;
    for (info, role) in &wanted {
        let end = info.offset.checked_add(info.bytes);
        if end.is_none_or(|e| e > src.len()) {
            return Err(Error::BadModel(format!(
                "tensor {} ends past the end of the file",
                info.name
            )));
        }
        sink.begin(info, *role).await?;
        let mut at = 0u64;
        while at < info.bytes {
            let n =
                usize::try_from((info.bytes - at).min(SLICE_BYTES as u64)).unwrap_or(SLICE_BYTES);
            let buf = &mut slice[..n];
            src.read_at(info.offset + at, buf).await?;
            sink.push(buf)?;
            at += n as u64;
            progress(done + at, total);
        }
        let tensor = sink.finish().await?;
        done += info.bytes;
        progress(done, total);
        tensors.insert(info.name.clone(), tensor);
    }
    Ok(Loaded {
        header,
        config,
        tensors,
        bytes_read: done,
    })
}

/// Reads the header, checks it describes a Gemma model we can run, and streams every tensor the
/// model needs to the GPU, in file order. `progress(done, total)` is called after each slice.
pub async fn load_tensors<S: ByteSource>(
    gpu: &Gpu,
    src: &mut S,
    opts: &LoadOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Loaded, Error> {
    let mut sink = GpuSink {
        gpu,
        opts,
        current: None,
        widen: Vec::new(),
    };
    let loaded = load_into(src, &mut sink, progress).await?;
    gpu.check()?;
    Ok(loaded)
}

/// Streams matrices into weight buffers, norm vectors into storage buffers (uploaded as is).
struct GpuSink<'g> {
    gpu: &'g Gpu,
    opts: &'g LoadOptions,
    current: Option<GpuWriting<'g>>,
    /// Q5_0 matrices held as Q8_0 ([`widened_to_q8_0`]).
    widen: Vec<String>,
}

/// The Q5_0 attention projections of layers whose Q, K and V mix Q5_0 and Q8_0 (llama.cpp's
/// Q4_K_M of Gemma 3 270M does, in 12 of 18 layers): held as Q8_0, exactly, they stack with the
/// others into one matvec, one dispatch a token instead of two, for a third more bytes of Q and K.
pub fn widened_to_q8_0(header: &GgufHeader, config: &GemmaConfig) -> Vec<String> {
    let mut names = Vec::new();
    for l in 0..config.n_layers {
        let qkv: Vec<&TensorInfo> = ["attn_q", "attn_k", "attn_v"]
            .iter()
            .filter_map(|p| header.tensor(&format!("blk.{l}.{p}.weight")))
            .collect();
        let has = |ty| qkv.iter().any(|t| t.ty == ty);
        let only_8_bit = qkv
            .iter()
            .all(|t| matches!(t.ty, GgmlType::Q5_0 | GgmlType::Q8_0));
        if qkv.len() == 3 && only_8_bit && has(GgmlType::Q5_0) && has(GgmlType::Q8_0) {
            names.extend(
                qkv.iter()
                    .filter(|t| t.ty == GgmlType::Q5_0)
                    .map(|t| t.name.clone()),
            );
        }
    }
    names
}

enum GpuWriting<'g> {
    Matrix(WeightUpload<'g>),
    Vector {
        name: String,
        len: u32,
        bytes: Vec<u8>,
    },
}

impl<'g> TensorSink for GpuSink<'g> {
    type Tensor = GpuTensor;

    async fn begin(&mut self, info: &TensorInfo, role: TensorRole) -> Result<(), Error> {
        self.current = Some(if role == TensorRole::Norm {
            let len = vector_len(info)?;
            GpuWriting::Vector {
                name: info.name.clone(),
                len,
                bytes: Vec::with_capacity(len as usize * 4),
            }
        } else {
            let (cols, rows) = matrix_shape(info)?;
            let gpu: &'g Gpu = self.gpu;
            let ty = if self.widen.contains(&info.name) {
                GgmlType::Q8_0
            } else {
                info.ty
            };
            let max_piece = self.opts.max_piece_bytes;
            GpuWriting::Matrix(
                gpu.begin_weight_as(&info.name, info.ty, ty, rows, cols, max_piece)
                    .await?,
            )
        });
        Ok(())
    }

    fn plan(&mut self, header: &GgufHeader, config: &GemmaConfig) {
        self.widen = widened_to_q8_0(header, config);
    }

    fn push(&mut self, buf: &[u8]) -> Result<(), Error> {
        match &mut self.current {
            Some(GpuWriting::Matrix(up)) => up.push(buf),
            Some(GpuWriting::Vector { bytes, .. }) => {
                bytes.extend_from_slice(buf);
                Ok(())
            }
            None => Err(Error::BadModel("tensor bytes outside a tensor".into())),
        }
    }

    async fn finish(&mut self) -> Result<GpuTensor, Error> {
        match self.current.take() {
            Some(GpuWriting::Matrix(up)) => Ok(GpuTensor::Matrix(up.finish().await?)),
            Some(GpuWriting::Vector { name, len, bytes }) => {
                let buffer = self.gpu.storage_init(&name, &bytes)?;
                Ok(GpuTensor::Vector { buffer, len })
            }
            None => Err(Error::BadModel("no tensor to finish".into())),
        }
    }
}

/// (cols, rows) of a 2-D tensor, i.e. GGUF's (dims[0], dims[1]).
pub fn matrix_shape(info: &TensorInfo) -> Result<(u32, u32), Error> {
    let dims: Option<(u32, u32)> = match info.dims.as_slice() {
        [c, r] => u32::try_from(*c).ok().zip(u32::try_from(*r).ok()),
        _ => None,
    };
    dims.ok_or_else(|| {
        Error::BadModel(format!(
            "{} has dims {:?}, expected a matrix",
            info.name, info.dims
        ))
    })
}

/// The length of a norm weight: small, F32 (the inventory check insists).
pub fn vector_len(info: &TensorInfo) -> Result<u32, Error> {
    let len = match info.dims.as_slice() {
        [n] if info.ty == GgmlType::F32 && n.checked_mul(4) == Some(info.bytes) => {
            u32::try_from(*n).ok()
        }
        _ => None,
    };
    len.ok_or_else(|| {
        Error::BadModel(format!(
            "{} is not an f32 vector ({:?}, {})",
            info.name, info.dims, info.ty
        ))
    })
}
