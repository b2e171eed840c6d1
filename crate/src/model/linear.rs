//! A projection bound for both steps: the matvec ops (one token) and the matmul ops (a prefill
//! block) of the gpu layer's `matvec` module, over the same input and output buffers.

use crate::gpu::matvec::{matvec, Matmul};
use crate::gpu::{Gpu, WeightTensor};
use crate::Error;

pub struct Linear {
    /// y row 0 = W x row 0.
    one: Vec<crate::gpu::Op>,
    /// Rows 0..n of y = rows 0..n of x times W^T, for n up to the block size.
    many: Option<Matmul>,
}

impl Linear {
    /// Binds `w` to read x (tokens x cols) and write y (tokens x rows); `max_tokens` is the
    /// largest block (1: decode only).
    pub async fn new(
        gpu: &Gpu,
        w: &WeightTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        max_tokens: u32,
    ) -> Result<Self, Error> {
        Linear::new_at(gpu, w, x, y, max_tokens, 0, w.rows).await
    }

    /// [`Linear::new`] writing W's rows at columns `y_offset..` of y's rows of `y_stride`
    /// (several projections into one buffer, such as q | k | v).
    pub async fn new_at(
        gpu: &Gpu,
        w: &WeightTensor,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        max_tokens: u32,
        y_offset: u32,
        y_stride: u32,
    ) -> Result<Self, Error> {
        let one = matvec(gpu, w, x, y, y_offset).await?;
        let many = if max_tokens > 1 {
            Some(Matmul::new(gpu, w, x, y, max_tokens, y_offset, y_stride).await?)
        } else {
            None
        };
        Ok(Linear { one, many })
    }

    /// The ops of y = W x for the first `n` rows (record all, in order). A block rewrites the
    /// matmul's uniform, so use at most one block per submit.
    pub fn ops(&mut self, gpu: &Gpu, n: u32) -> Result<&[crate::gpu::Op], Error> {
        match &mut self.many {
            Some(m) if n > 1 => m.set_n(gpu, n),
            _ => Ok(&self.one),
        }
    }

    /// Records y = W x for the first `n` rows. A block rewrites the matmul's uniform, so record
    /// at most one block per submit.
    pub fn record(
        &mut self,
        gpu: &Gpu,
        pass: &mut wgpu::ComputePass<'_>,
        n: u32,
    ) -> Result<(), Error> {
        let ops = match &mut self.many {
            Some(m) if n > 1 => m.set_n(gpu, n)?,
            _ => &self.one,
        };
        for op in ops {
            op.record(pass);
        }
        Ok(())
    }
}
