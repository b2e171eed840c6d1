//! A bound kernel: pipeline + bind group + workgroup count, built once at load and recorded
//! each token.

use super::Gpu;
use crate::Error;

/// WebGPU's default `maxComputeWorkgroupsPerDimension`.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

/// Spreads `n` workgroups over x and y so neither exceeds 65535. Kernels recover the linear
/// index as `wid.x + wid.y * nwg.x` (prelude's `linear_group`) and return when it is `>= n`,
/// since x * y may exceed n by less than one row of x. Valid for n up to 65535².
pub fn fold_workgroups(n: u32) -> [u32; 3] {
    if n <= MAX_WORKGROUPS_PER_DIM {
        return [n, 1, 1];
    }
    let y = n.div_ceil(MAX_WORKGROUPS_PER_DIM);
    [n.div_ceil(y), y, 1]
}

/// One dispatch, ready to record: the per-token path calls [`Op::record`] and nothing else.
#[derive(Clone, Debug)]
pub struct Op {
    pub pipeline: wgpu::ComputePipeline,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
}

impl Op {
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

impl Gpu {
    /// Binds `resources` to `@group(0) @binding(0..n)` of `pipeline` (in that order) and keeps
    /// the workgroup count. The layout is the one WGSL implies, so every binding must be used
    /// by the kernel. Validation errors surface through [`Gpu::scoped`] (wrap load-time
    /// building in it) or [`Gpu::check`].
    pub fn op(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        resources: &[wgpu::BindingResource<'_>],
        workgroups: [u32; 3],
    ) -> Op {
        let entries: Vec<wgpu::BindGroupEntry<'_>> = resources
            .iter()
            .zip(0u32..)
            .map(|(resource, binding)| wgpu::BindGroupEntry {
                binding,
                resource: resource.clone(),
            })
            .collect();
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Op {
            pipeline: pipeline.clone(),
            bind_group,
            workgroups,
        }
    }

    /// [`Gpu::op`] with buffers bound whole, the common case.
    pub fn op_buffers(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Op {
        let resources: Vec<wgpu::BindingResource<'_>> =
            buffers.iter().map(|b| b.as_entire_binding()).collect();
        self.op(label, pipeline, &resources, workgroups)
    }

    /// [`Gpu::op_buffers`] inside error scopes: a binding the device rejects (too large, wrong
    /// usage) is a typed error at load instead of a broken dispatch later.
    pub async fn bound_op(
        &self,
        label: &str,
        pipeline: &wgpu::ComputePipeline,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) -> Result<Op, Error> {
        self.scoped(label, || {
            self.op_buffers(label, pipeline, buffers, workgroups)
        })
        .await
    }
}

/// `Error::Unsupported` unless `buffer` holds at least `floats` 32-bit values: a kernel
/// reading past a binding's end reads clamped garbage instead of failing.
pub fn need_floats(name: &str, buffer: &wgpu::Buffer, floats: u64) -> Result<(), Error> {
    need_bytes(name, buffer, floats.saturating_mul(4))
}

/// An error unless `buffer` holds `bytes` bytes.
pub fn need_bytes(name: &str, buffer: &wgpu::Buffer, bytes: u64) -> Result<(), Error> {
    if buffer.size() < bytes {
        return Err(Error::Unsupported(format!(
            "{name}: buffer of {} bytes, kernel needs {bytes}",
            buffer.size()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_covers_every_group_within_limits() {
        for n in [0u32, 1, 65535, 65536, 65537, 262144, 1 << 24, 65535 * 65535] {
            let [x, y, z] = fold_workgroups(n);
            assert!(x <= MAX_WORKGROUPS_PER_DIM && y <= MAX_WORKGROUPS_PER_DIM && z == 1);
            let total = u64::from(x) * u64::from(y);
            assert!(total >= u64::from(n), "n={n}: {x}x{y}");
            // Less than one row of x wasted.
            assert!(total < u64::from(n) + u64::from(x.max(1)), "n={n}: {x}x{y}");
        }
    }
}
