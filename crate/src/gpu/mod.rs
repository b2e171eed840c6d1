//! The GPU layer: one wgpu device shared by native (Vulkan, Metal, DX12; lavapipe here) and the
//! browser (WebGPU). Everything the model needs is built once at load (pipelines, bind groups,
//! buffers); the per-token path only records [`Op`]s and writes small uniforms.
//!
//! Errors never panic: validation and out-of-memory errors are caught in error scopes while
//! building, device loss sets a flag that every later call checks, and anything uncaptured is
//! logged and remembered so [`Gpu::check`] can report it.

pub mod attention;
mod buffer;
pub mod kernels;
pub mod matvec;
mod op;
mod pipeline;
pub mod profile;
pub mod sample;
mod weights;

pub use buffer::{Readback, MAX_UPLOAD_CHUNK};
pub use op::{fold_workgroups, Op, MAX_WORKGROUPS_PER_DIM};
pub use pipeline::{assemble, shader_source, Enable, PipelineDesc, SHADERS};
pub use weights::{
    dequant_shader, gpu_row_bytes, WeightPiece, WeightTensor, WeightUpload, ROW_ALIGN,
};

use crate::Error;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// How to set the device up.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Request WebGPU's default limits (128 MiB per binding, 256 MiB per buffer, 8 storage
    /// buffers per stage) instead of everything the adapter offers. Tests use this to prove
    /// the engine fits the defaults.
    pub default_limits: bool,
    /// Enable `shader-f16` when the adapter has it.
    pub allow_f16: bool,
    /// Enable subgroup operations when the adapter has them.
    pub allow_subgroups: bool,
    /// Prefer a discrete GPU when several adapters exist.
    pub high_performance: bool,
    /// Enable timestamp queries when the adapter has them (`--profile`).
    pub timestamps: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            default_limits: false,
            allow_f16: true,
            allow_subgroups: true,
            high_performance: true,
            timestamps: false,
        }
    }
}

impl GpuOptions {
    /// What kernel tests use: default limits and no optional features.
    pub fn for_tests() -> Self {
        GpuOptions {
            default_limits: true,
            allow_f16: false,
            allow_subgroups: false,
            high_performance: false,
            timestamps: false,
        }
    }
}

/// What the device can do, as chosen at set-up; shown by the page and the CLI.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Caps {
    pub adapter_name: String,
    /// "vulkan", "metal", "dx12", "gl", "webgpu", ...
    pub backend: String,
    /// The adapter runs on the CPU (lavapipe, SwiftShader, WARP; in the browser the fallback
    /// adapter, `isFallbackAdapter`): wgpu's `DeviceType::Cpu`. Picks the kernel layouts.
    pub cpu: bool,
    /// wgpu's device type: "cpu", "integrated", "discrete", "virtual" or "other" (a browser
    /// says only whether it is the fallback adapter, so its GPUs are "other").
    pub device_type: String,
    /// `shader-f16` enabled on the device.
    pub f16: bool,
    /// Subgroup operations enabled on the device.
    pub subgroups: bool,
    /// The smallest subgroup the adapter may run (0 without subgroups): a kernel may rely on
    /// that many consecutive invocations sharing a subgroup.
    pub subgroup_min_size: u32,
    /// Largest storage-buffer binding, bytes.
    pub max_binding: u64,
    /// Largest buffer, bytes.
    pub max_buffer: u64,
    /// Storage buffers per shader stage.
    pub max_storage_buffers: u32,
    /// Bytes of workgroup memory per workgroup.
    pub max_workgroup_storage: u32,
    /// Invocations per workgroup.
    pub max_invocations: u32,
    /// "f16+subgroups", "f16", "subgroups" or "baseline".
    pub tier: String,
    /// Timestamp queries enabled (GPU time per kernel in `bench --profile`).
    pub timestamps: bool,
}

/// What the engine asked of the device so far (cumulative; subtract two snapshots).
#[derive(Debug, Default)]
pub struct Counters {
    pub submits: AtomicU64,
    pub dispatches: AtomicU64,
    pub readback_bytes: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct CounterSnapshot {
    pub submits: u64,
    pub dispatches: u64,
    pub readback_bytes: u64,
}

impl CounterSnapshot {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &CounterSnapshot) -> CounterSnapshot {
        CounterSnapshot {
            submits: self.submits - earlier.submits,
            dispatches: self.dispatches - earlier.dispatches,
            readback_bytes: self.readback_bytes - earlier.readback_bytes,
        }
    }
}

/// The device, its queue, what it can do and the pipelines built so far.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub caps: Caps,
    /// Submits, dispatches and read-back bytes, for the benchmarks.
    pub counters: Counters,
    lost: Arc<Mutex<Option<String>>>,
    uncaptured: Arc<Mutex<Option<String>>>,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    // Kept alive for the device's lifetime.
    _adapter: wgpu::Adapter,
    _instance: wgpu::Instance,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("caps", &self.caps).finish()
    }
}

fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Other => "other",
    }
}

fn backend_name(b: wgpu::Backend) -> &'static str {
    match b {
        wgpu::Backend::Vulkan => "vulkan",
        wgpu::Backend::Metal => "metal",
        wgpu::Backend::Dx12 => "dx12",
        wgpu::Backend::Gl => "gl",
        wgpu::Backend::BrowserWebGpu => "webgpu",
        _ => "other",
    }
}

impl Gpu {
    /// Finds an adapter and opens a device on it. `Error::WebGpuUnavailable` when there is no
    /// adapter at all; `Error::Unsupported` when the adapter cannot give WebGPU's default limits.
    pub async fn new(opts: GpuOptions) -> Result<Gpu, Error> {
        if wgpu::Instance::enabled_backend_features().is_empty() {
            return Err(Error::WebGpuUnavailable(
                "no wgpu backend compiled in".into(),
            ));
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        #[cfg(target_arch = "wasm32")]
        {
            desc.backends = wgpu::Backends::BROWSER_WEBGPU;
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
            // Validation layers are slow and usually absent; wgpu validates on its own.
            desc.flags = wgpu::InstanceFlags::empty().with_env();
        }
        let instance = wgpu::Instance::new(desc);
        let power_preference = if opts.high_performance {
            wgpu::PowerPreference::HighPerformance
        } else {
            wgpu::PowerPreference::None
        };
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| Error::WebGpuUnavailable(format!("no GPU adapter: {e}")))?;
        let info = adapter.get_info();
        let offered = adapter.limits();
        let features = adapter.features();

        let mut required_features = wgpu::Features::empty();
        let f16 = opts.allow_f16 && features.contains(wgpu::Features::SHADER_F16);
        if f16 {
            required_features |= wgpu::Features::SHADER_F16;
        }
        let subgroups = opts.allow_subgroups && features.contains(wgpu::Features::SUBGROUP);
        if subgroups {
            required_features |= wgpu::Features::SUBGROUP;
        }
        let timestamps = opts.timestamps && features.contains(wgpu::Features::TIMESTAMP_QUERY);
        if timestamps {
            required_features |= wgpu::Features::TIMESTAMP_QUERY;
        }

        let mut limits = wgpu::Limits::default();
        if !opts.default_limits {
            // Raise only what a compute engine profits from; the rest stays at the defaults
            // every WebGPU adapter guarantees.
            limits.max_storage_buffer_binding_size = offered.max_storage_buffer_binding_size;
            limits.max_buffer_size = offered.max_buffer_size;
            limits.max_storage_buffers_per_shader_stage =
                offered.max_storage_buffers_per_shader_stage;
            limits.max_compute_workgroup_storage_size = offered.max_compute_workgroup_storage_size;
            limits.max_compute_invocations_per_workgroup =
                offered.max_compute_invocations_per_workgroup;
            limits.max_compute_workgroup_size_x = offered.max_compute_workgroup_size_x;
            limits.max_compute_workgroup_size_y = offered.max_compute_workgroup_size_y;
            limits.max_compute_workgroups_per_dimension =
                offered.max_compute_workgroups_per_dimension;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("gemma-web"),
                required_features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::Unsupported(format!("cannot open device on {}: {e}", info.name)))?;

        let lost = Arc::new(Mutex::new(None::<String>));
        let lost_cb = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let text = format!("{reason:?}: {message}");
            log::error!("GPU device lost: {text}");
            if let Ok(mut slot) = lost_cb.lock() {
                *slot = Some(text);
            }
        });
        let uncaptured = Arc::new(Mutex::new(None::<String>));
        let uncaptured_cb = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("uncaptured GPU error: {e}");
            if let Ok(mut slot) = uncaptured_cb.lock() {
                if slot.is_none() {
                    *slot = Some(e.to_string());
                }
            }
        }));

        let tier = match (f16, subgroups) {
            (true, true) => "f16+subgroups",
            (true, false) => "f16",
            (false, true) => "subgroups",
            (false, false) => "baseline",
        };
        // Browsers may hide the adapter's name; say at least what kind of device it is.
        let adapter_name = if info.name.is_empty() {
            format!(
                "{} {:?} adapter",
                backend_name(info.backend),
                info.device_type
            )
        } else {
            info.name.clone()
        };
        let caps = Caps {
            adapter_name,
            backend: backend_name(info.backend).to_string(),
            cpu: info.device_type == wgpu::DeviceType::Cpu,
            device_type: device_type_name(info.device_type).to_string(),
            f16,
            subgroups,
            subgroup_min_size: if subgroups { info.subgroup_min_size } else { 0 },
            max_binding: limits.max_storage_buffer_binding_size,
            max_buffer: limits.max_buffer_size,
            max_storage_buffers: limits.max_storage_buffers_per_shader_stage,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            tier: tier.to_string(),
            timestamps,
        };
        log::info!("GPU: {caps:?}");
        Ok(Gpu {
            device,
            queue,
            caps,
            counters: Counters::default(),
            lost,
            uncaptured,
            pipelines: Mutex::new(HashMap::new()),
            _adapter: adapter,
            _instance: instance,
        })
    }

    /// `Error::DeviceLost` once the device is gone; otherwise the first uncaptured GPU error
    /// since the last check, if any (as `Error::Unsupported`, since it means a kernel or
    /// binding this adapter rejected).
    pub fn check(&self) -> Result<(), Error> {
        if let Ok(slot) = self.lost.lock() {
            if let Some(why) = slot.as_ref() {
                return Err(Error::DeviceLost(why.clone()));
            }
        }
        if let Ok(mut slot) = self.uncaptured.lock() {
            if let Some(e) = slot.take() {
                return Err(Error::Unsupported(format!("GPU error: {e}")));
            }
        }
        Ok(())
    }

    /// True once the device-lost callback has fired.
    pub fn is_lost(&self) -> bool {
        self.lost.lock().map(|s| s.is_some()).unwrap_or(true)
    }

    /// Runs `f` (resource creation: buffers, bind groups, pipelines) inside validation and
    /// out-of-memory error scopes and turns whatever they caught into a typed error.
    /// `what` names the step in the error message.
    pub async fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T, Error> {
        self.check()?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        // Scopes pop in reverse order; both futures are taken before awaiting either.
        let validation = validation.pop();
        let oom = oom.pop();
        let validation = validation.await;
        let oom = oom.await;
        if let Some(e) = oom {
            return Err(Error::OutOfMemory(format!("{what}: {e}")));
        }
        if let Some(e) = validation {
            return Err(Error::Unsupported(format!("{what}: {e}")));
        }
        self.check()?;
        Ok(value)
    }

    /// A snapshot of [`Gpu::counters`].
    pub fn counted(&self) -> CounterSnapshot {
        CounterSnapshot {
            submits: self.counters.submits.load(Relaxed),
            dispatches: self.counters.dispatches.load(Relaxed),
            readback_bytes: self.counters.readback_bytes.load(Relaxed),
        }
    }

    /// Submits one command buffer; checks device loss first.
    pub fn submit(&self, commands: wgpu::CommandBuffer) -> Result<(), Error> {
        self.check()?;
        self.counters.submits.fetch_add(1, Relaxed);
        self.queue.submit(std::iter::once(commands));
        Ok(())
    }

    /// Records `ops` in order into one compute pass and submits it.
    pub fn run(&self, ops: &[&Op]) -> Result<(), Error> {
        self.check()?;
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ops") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("ops"),
                timestamp_writes: None,
            });
            for op in ops {
                op.record(&mut pass);
            }
        }
        self.submit(encoder.finish())
    }

    /// Waits (natively) until the queue is idle; in the browser this is a no-op, as the
    /// browser drives its own queue. Use [`Gpu::read`] to wait for results instead.
    pub fn wait_idle(&self) -> Result<(), Error> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::DeviceLost(format!("poll: {e}")))?;
        }
        self.check()
    }
}
