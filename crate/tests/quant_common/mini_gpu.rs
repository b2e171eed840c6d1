//! TEMPORARY: a bare wgpu harness until the gpu layer lands; replaced by gemma_web::gpu.
use wgpu::util::DeviceExt;

pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
}

pub fn gpu() -> Gpu {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .unwrap();
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: wgpu::Limits::default(),
        ..Default::default()
    }))
    .unwrap();
    Gpu { device, queue }
}

pub fn shader_source(ty: &str, kernel: &str) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shaders/");
    let mut s = String::new();
    for f in [
        "prelude.wgsl".to_string(),
        "weights.wgsl".into(),
        format!("dequant_{ty}.wgsl"),
        format!("{kernel}.wgsl"),
    ] {
        if let Ok(t) = std::fs::read_to_string(format!("{dir}{f}")) {
            s.push_str(&t);
            s.push('\n');
        } else {
            assert_eq!(f, "prelude.wgsl", "missing {f}");
        }
    }
    s
}

impl Gpu {
    pub fn pipeline(&self, src: &str, constants: &[(&str, f64)]) -> wgpu::ComputePipeline {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: None,
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
        let p = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: None,
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    ..Default::default()
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            panic!("{e}");
        }
        p
    }
    pub fn storage(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytes,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }
    pub fn uniform(&self, words: &[u32]) -> wgpu::Buffer {
        self.device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(words),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }
    pub fn zeros(&self, n: usize) -> wgpu::Buffer {
        self.storage(&vec![0u8; n * 4])
    }
    pub fn bind(&self, p: &wgpu::ComputePipeline, bufs: &[&wgpu::Buffer]) -> wgpu::BindGroup {
        let entries: Vec<_> = bufs
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &p.get_bind_group_layout(0),
            entries: &entries,
        })
    }
    pub fn run(&self, p: &wgpu::ComputePipeline, groups: &[(&wgpu::BindGroup, (u32, u32, u32))]) {
        let mut enc = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(p);
            for (bg, (x, y, z)) in groups {
                pass.set_bind_group(0, *bg, &[]);
                pass.dispatch_workgroups(*x, *y, *z);
            }
        }
        self.queue.submit([enc.finish()]);
    }
    pub fn read(&self, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: (n * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(b, 0, &staging, 0, (n * 4) as u64);
        self.queue.submit([enc.finish()]);
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, |r| r.unwrap());
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .unwrap();
        let v = bytemuck::cast_slice(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
        v
    }
}

pub fn assert_close(name: &str, expected: &[f32], actual: &[f32], abs: f32, rel: f32) {
    assert_eq!(expected.len(), actual.len(), "{name}: length");
    let bad: Vec<usize> = (0..expected.len())
        .filter(|&i| !((expected[i] - actual[i]).abs() <= abs + rel * expected[i].abs()))
        .collect();
    if !bad.is_empty() {
        let show: Vec<String> = bad
            .iter()
            .take(8)
            .map(|&i| format!("[{i}] expected {} got {}", expected[i], actual[i]))
            .collect();
        panic!(
            "{name}: {} of {} mismatch: {}",
            bad.len(),
            expected.len(),
            show.join(", ")
        );
    }
}
