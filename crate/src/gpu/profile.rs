//! GPU time per kernel class from timestamp queries (`gemma-web bench --profile`), where the
//! adapter has `TIMESTAMP_QUERY`. Profiling records every dispatch in a compute pass of its own,
//! with a timestamp at the pass's start and end, so the figures add the cost of the extra
//! passes; they say where the time goes, while the un-profiled run says how fast it is.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use super::{Gpu, Op, Readback};
use crate::Error;

/// Dispatches one profiled submit can time (two queries each; wgpu allows 4096 a set).
pub const PROFILE_CAPACITY: u32 = 2048;

/// Per-class totals: dispatches and GPU nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct ClassTime {
    pub dispatches: u64,
    pub gpu_ns: f64,
}

pub struct Profiler {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: Readback,
    /// Classes of the dispatches recorded since the last [`Profiler::collect`], in order.
    pending: Vec<&'static str>,
    period_ns: f64,
    pub totals: BTreeMap<&'static str, ClassTime>,
}

impl Profiler {
    pub fn new(gpu: &Gpu) -> Result<Profiler, Error> {
        if !gpu.caps.timestamps {
            return Err(Error::Unsupported(
                "this adapter has no timestamp queries (wgpu TIMESTAMP_QUERY)".into(),
            ));
        }
        let bytes = u64::from(PROFILE_CAPACITY) * 2 * 8;
        Ok(Profiler {
            query_set: gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("profile"),
                ty: wgpu::QueryType::Timestamp,
                count: PROFILE_CAPACITY * 2,
            }),
            resolve: gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("profile resolve"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: gpu.readback("profile readback", bytes)?,
            pending: Vec::new(),
            period_ns: f64::from(gpu.queue.get_timestamp_period()),
            totals: BTreeMap::new(),
        })
    }

    /// Records `ops`, each in its own timed pass.
    fn record(&mut self, encoder: &mut wgpu::CommandEncoder, ops: &[(&'static str, &Op)]) {
        for (class, op) in ops {
            let i = self.pending.len() as u32;
            if i >= PROFILE_CAPACITY {
                // Past the capacity the ops still run, untimed.
                let mut pass = encoder.begin_compute_pass(&Default::default());
                op.record(&mut pass);
                continue;
            }
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(class),
                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                    query_set: &self.query_set,
                    beginning_of_pass_write_index: Some(2 * i),
                    end_of_pass_write_index: Some(2 * i + 1),
                }),
            });
            op.record(&mut pass);
            self.pending.push(class);
        }
    }

    /// Records the copy of this submit's timestamps to the read-back buffer (call last).
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let n = self.pending.len() as u32;
        if n == 0 {
            return;
        }
        encoder.resolve_query_set(&self.query_set, 0..2 * n, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(
            &self.resolve,
            0,
            &self.readback.buffer,
            0,
            u64::from(n) * 16,
        );
    }

    /// Reads the timestamps of the last submit into [`Profiler::totals`]. Its bytes are not
    /// counted as read-back of the engine.
    pub async fn collect(&mut self, gpu: &Gpu) -> Result<(), Error> {
        let n = self.pending.len() as u64;
        if n == 0 {
            return Ok(());
        }
        let bytes = gpu.map_read(&self.readback, n * 16).await?;
        gpu.counters.readback_bytes.fetch_sub(n * 16, Relaxed);
        for (class, pair) in self.pending.iter().zip(bytes.chunks_exact(16)) {
            let t = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            let ns = t(&pair[8..]).saturating_sub(t(&pair[..8])) as f64 * self.period_ns;
            let e = self.totals.entry(class).or_default();
            e.dispatches += 1;
            e.gpu_ns += ns;
        }
        self.pending.clear();
        Ok(())
    }
}

/// Records `ops` in order: into one compute pass, or, with a profiler, each in a timed pass of
/// its own. Counts the dispatches.
pub fn record_ops(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    label: &str,
    ops: &[(&'static str, &Op)],
    profiler: Option<&mut Profiler>,
) {
    gpu.counters.dispatches.fetch_add(ops.len() as u64, Relaxed);
    match profiler {
        Some(p) => p.record(encoder, ops),
        None => {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            for (_, op) in ops {
                op.record(&mut pass);
            }
        }
    }
}
