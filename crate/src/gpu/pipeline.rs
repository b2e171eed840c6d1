//! Shader assembly (plain concatenation: enable directives + prelude + libraries + kernel) and
//! the pipeline cache keyed by (kernel, variant).

use super::Gpu;
use crate::Error;

include!(concat!(env!("OUT_DIR"), "/shaders.rs"));

/// The source of `shaders/<name>.wgsl`.
pub fn shader_source(name: &str) -> Option<&'static str> {
    SHADERS
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .and_then(|i| SHADERS.get(i))
        .map(|(_, src)| *src)
}

/// Optional WGSL language extensions a kernel may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Enable {
    /// `enable f16;` (needs `Caps::f16`).
    F16,
    /// Subgroup built-ins (needs `Caps::subgroups`). The browser needs `enable subgroups;`,
    /// naga takes the built-ins without it and rejects the directive.
    Subgroups,
}

/// One compute pipeline: `shaders/prelude.wgsl` + `libs` (e.g. `["weights", "dequant_q8_0"]`)
/// + `shaders/<kernel>.wgsl`, with `override` constants set. The cache key is derived from
/// every field, so two descriptions that differ anywhere get two pipelines.
#[derive(Clone, Debug, Default)]
pub struct PipelineDesc<'a> {
    pub kernel: &'a str,
    pub libs: &'a [&'a str],
    pub constants: &'a [(&'a str, f64)],
    pub enables: &'a [Enable],
    /// `None`: the module's only compute entry point.
    pub entry: Option<&'a str>,
}

impl PipelineDesc<'_> {
    /// A kernel with no libraries, constants or extensions.
    pub fn kernel(kernel: &str) -> PipelineDesc<'_> {
        PipelineDesc {
            kernel,
            ..Default::default()
        }
    }

    /// The variant part of the cache key: everything but the kernel name.
    pub fn variant(&self) -> String {
        let mut v = self.libs.join("+");
        for (name, value) in self.constants {
            v.push_str(&format!(";{name}={value}"));
        }
        for e in self.enables {
            v.push_str(&format!(";{e:?}"));
        }
        if let Some(entry) = self.entry {
            v.push_str(&format!(";@{entry}"));
        }
        v
    }
}

/// The full WGSL text of a pipeline: directives, prelude, libraries, kernel.
pub fn assemble(desc: &PipelineDesc<'_>) -> Result<String, Error> {
    let missing = |name: &str| Error::Unsupported(format!("no shader named {name}.wgsl"));
    let mut src = String::new();
    for e in desc.enables {
        match e {
            Enable::F16 => src.push_str("enable f16;\n"),
            Enable::Subgroups => {
                if cfg!(target_arch = "wasm32") {
                    src.push_str("enable subgroups;\n");
                }
            }
        }
    }
    for name in std::iter::once("prelude")
        .chain(desc.libs.iter().copied())
        .chain(std::iter::once(desc.kernel))
    {
        src.push_str(&format!("// ---- {name}.wgsl\n"));
        src.push_str(shader_source(name).ok_or_else(|| missing(name))?);
        src.push('\n');
    }
    Ok(src)
}

impl Gpu {
    /// The pipeline for `desc`, built on first use inside error scopes: a shader that does not
    /// compile or validate on this adapter comes back as `Error::Unsupported` (or
    /// `Error::OutOfMemory`), never as a panic or a silent failure later.
    pub async fn pipeline(&self, desc: &PipelineDesc<'_>) -> Result<wgpu::ComputePipeline, Error> {
        let key = format!("{}|{}", desc.kernel, desc.variant());
        if let Some(p) = self
            .pipelines
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(p);
        }
        for e in desc.enables {
            let ok = match e {
                Enable::F16 => self.caps.f16,
                Enable::Subgroups => self.caps.subgroups,
            };
            if !ok {
                return Err(Error::Unsupported(format!(
                    "kernel {key} needs {e:?}, which this device lacks"
                )));
            }
        }
        let source = assemble(desc)?;
        let pipeline = self
            .pipeline_from_wgsl(&key, &source, desc.constants, desc.entry)
            .await?;
        if let Ok(mut m) = self.pipelines.lock() {
            m.insert(key, pipeline.clone());
        }
        Ok(pipeline)
    }

    /// A pipeline from WGSL text as is (no prelude, no cache), built inside error scopes.
    pub async fn pipeline_from_wgsl(
        &self,
        label: &str,
        source: &str,
        constants: &[(&str, f64)],
        entry: Option<&str>,
    ) -> Result<wgpu::ComputePipeline, Error> {
        self.scoped(&format!("building kernel {label}"), || {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(label),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            self.device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(label),
                    layout: None,
                    module: &module,
                    entry_point: entry,
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        zero_initialize_workgroup_memory: true,
                    },
                    cache: None,
                })
        })
        .await
    }

    /// Number of distinct pipelines built so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().map(|m| m.len()).unwrap_or(0)
    }
}
