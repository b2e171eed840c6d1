//! Buffer creation, uploads, and read-back through `map_async` on both targets: natively the
//! device is polled to completion, in the browser the future simply waits for the promise.

use super::Gpu;
use crate::Error;
use std::sync::atomic::Ordering::Relaxed;

/// Uploads larger than this are written in pieces, so neither wgpu's staging memory nor the
/// browser's holds a second copy of a whole weight.
pub const MAX_UPLOAD_CHUNK: usize = 16 << 20;

/// A reusable MAP_READ staging buffer, for reads on the per-token path (argmax, top-k).
#[derive(Clone, Debug)]
pub struct Readback {
    pub buffer: wgpu::Buffer,
}

fn round4(n: u64) -> Option<u64> {
    n.checked_add(3).map(|v| v & !3)
}

impl Gpu {
    fn check_size(&self, label: &str, size: u64) -> Result<u64, Error> {
        let size = round4(size.max(4)).ok_or_else(|| Error::OutOfMemory(label.to_string()))?;
        if size > self.caps.max_buffer {
            return Err(Error::Unsupported(format!(
                "buffer {label} needs {size} bytes; the device allows {}",
                self.caps.max_buffer
            )));
        }
        Ok(size)
    }

    /// A zeroed storage buffer of at least `size` bytes (rounded up to 4), usable as a binding,
    /// a copy source and a copy destination.
    pub fn storage(&self, label: &str, size: u64) -> Result<wgpu::Buffer, Error> {
        self.check()?;
        let size = self.check_size(label, size)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A zeroed activation buffer: [`Gpu::storage`] that is also bindable as a uniform, with
    /// [`super::matvec::X_UNIFORM_BYTES`] to spare past `size`, so a matvec may read it as a
    /// uniform (see [`super::matvec::XBinding`]) and a prefill product in uniform windows that
    /// start at any token (see [`super::matvec::MatmulLayout::Rows`]).
    pub fn activations(&self, label: &str, size: u64) -> Result<wgpu::Buffer, Error> {
        self.check()?;
        let padded = size
            .checked_add(super::matvec::X_UNIFORM_BYTES)
            .ok_or_else(|| Error::OutOfMemory(format!("{label}: {size} bytes")))?;
        let size = self.check_size(label, padded)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::UNIFORM
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        }))
    }

    /// A storage buffer holding `bytes` (zero-padded to 4).
    pub fn storage_init(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer, Error> {
        let buffer = self.storage(label, bytes.len() as u64)?;
        self.write(&buffer, 0, bytes)?;
        Ok(buffer)
    }

    pub fn storage_f32(&self, label: &str, values: &[f32]) -> Result<wgpu::Buffer, Error> {
        self.storage_init(label, bytemuck::cast_slice(values))
    }

    pub fn storage_u32(&self, label: &str, values: &[u32]) -> Result<wgpu::Buffer, Error> {
        self.storage_init(label, bytemuck::cast_slice(values))
    }

    /// A uniform buffer holding `bytes`, zero-padded to a multiple of 16; rewrite it with
    /// [`Gpu::write`] (e.g. the position, each token).
    pub fn uniform(&self, label: &str, bytes: &[u8]) -> Result<wgpu::Buffer, Error> {
        self.check()?;
        let size = (bytes.len() as u64).max(16).div_ceil(16) * 16;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.write(&buffer, 0, bytes)?;
        Ok(buffer)
    }

    /// A uniform buffer of u32 words (the usual kernel parameters).
    pub fn uniform_u32(&self, label: &str, words: &[u32]) -> Result<wgpu::Buffer, Error> {
        self.uniform(label, bytemuck::cast_slice(words))
    }

    /// Queues a write of `bytes` at `offset`. A length that is not a multiple of 4 is
    /// zero-padded, so the 1-3 bytes after it are overwritten with zeros. Large writes are split
    /// into [`MAX_UPLOAD_CHUNK`] pieces.
    pub fn write(&self, buffer: &wgpu::Buffer, offset: u64, bytes: &[u8]) -> Result<(), Error> {
        self.check()?;
        let len = bytes.len() as u64;
        let padded = round4(len).ok_or_else(|| Error::OutOfMemory("write".into()))?;
        if offset % 4 != 0
            || offset
                .checked_add(padded)
                .is_none_or(|end| end > buffer.size())
        {
            return Err(Error::Unsupported(format!(
                "write of {len} bytes at {offset} into a buffer of {} bytes",
                buffer.size()
            )));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        let mut at = offset;
        for chunk in bytes.chunks(MAX_UPLOAD_CHUNK) {
            if chunk.len() % 4 == 0 {
                self.queue.write_buffer(buffer, at, chunk);
            } else {
                let mut tail = chunk.to_vec();
                tail.resize(chunk.len().div_ceil(4) * 4, 0);
                self.queue.write_buffer(buffer, at, &tail);
            }
            at += chunk.len() as u64;
        }
        Ok(())
    }

    pub fn write_u32(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        words: &[u32],
    ) -> Result<(), Error> {
        self.write(buffer, offset, bytemuck::cast_slice(words))
    }

    /// A staging buffer for reads of up to `size` bytes, made once and reused.
    pub fn readback(&self, label: &str, size: u64) -> Result<Readback, Error> {
        self.check()?;
        let size = self.check_size(label, size)?;
        Ok(Readback {
            buffer: self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        })
    }

    /// Copies `len` bytes from `src` at `offset` (a multiple of 4) through `staging` and
    /// returns them, once all work submitted before has finished. Never blocks the browser.
    pub async fn read_with(
        &self,
        staging: &Readback,
        src: &wgpu::Buffer,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, Error> {
        self.check()?;
        let padded = round4(len.max(4)).ok_or_else(|| Error::OutOfMemory("read".into()))?;
        let fits = offset % 4 == 0
            && offset
                .checked_add(padded)
                .is_some_and(|end| end <= src.size())
            && padded <= staging.buffer.size();
        if !fits {
            return Err(Error::Unsupported(format!(
                "read of {len} bytes at {offset} from a buffer of {} bytes (staging {})",
                src.size(),
                staging.buffer.size()
            )));
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        encoder.copy_buffer_to_buffer(src, offset, &staging.buffer, 0, padded);
        self.submit(encoder.finish())?;
        self.map_read(staging, len).await
    }

    /// The first `len` bytes of `staging`, once all work submitted before has finished: for a
    /// read whose copy into `staging` was recorded with the work itself (one submit per token).
    pub async fn map_read(&self, staging: &Readback, len: u64) -> Result<Vec<u8>, Error> {
        self.check()?;
        let padded = round4(len.max(4)).ok_or_else(|| Error::OutOfMemory("read".into()))?;
        if padded > staging.buffer.size() {
            return Err(Error::Unsupported(format!(
                "read of {len} bytes from a staging buffer of {}",
                staging.buffer.size()
            )));
        }
        self.counters.readback_bytes.fetch_add(len, Relaxed);
        let (tx, rx) = futures_channel::oneshot::channel();
        let slice = staging.buffer.slice(0..padded);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::DeviceLost(format!("poll: {e}")))?;
        }
        let mapped = rx
            .await
            .map_err(|_| Error::DeviceLost("read-back was dropped".into()))?;
        if mapped.is_err() {
            self.check()?;
            return Err(Error::DeviceLost(
                "mapping the read-back buffer failed".into(),
            ));
        }
        let bytes = match slice.get_mapped_range() {
            Ok(view) => {
                let n = usize::try_from(len).unwrap_or(0).min(view.len());
                view.get(..n).map(<[u8]>::to_vec).unwrap_or_default()
            }
            Err(e) => {
                staging.buffer.unmap();
                return Err(Error::DeviceLost(format!("read-back view: {e}")));
            }
        };
        staging.buffer.unmap();
        self.check()?;
        Ok(bytes)
    }

    /// [`Gpu::read_with`] through a fresh staging buffer (tests, one-off reads).
    pub async fn read(&self, src: &wgpu::Buffer, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        let staging = self.readback("read", len)?;
        let bytes = self.read_with(&staging, src, offset, len).await;
        staging.buffer.destroy();
        bytes
    }

    /// The first `n` f32 of `src`.
    pub async fn read_f32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, Error> {
        let bytes = self.read(src, 0, (n as u64) * 4).await?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The first `n` u32 of `src`.
    pub async fn read_u32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<u32>, Error> {
        let bytes = self.read(src, 0, (n as u64) * 4).await?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}
