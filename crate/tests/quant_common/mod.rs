//! Test data for the quantized kernels: valid GGUF blocks of every weight type and their dequantization
//! by candle-core, an implementation independent of our shaders.
#![allow(dead_code)]

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::{Device, Tensor};
use gemma_web::gguf::GgmlType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One weight type: the shader suffix (`dequant_<name>.wgsl`), candle's type, block geometry,
/// and the byte offsets of the f16 fields inside a block (random bytes there could be NaN/inf).
#[derive(Clone, Copy, Debug)]
pub struct QType {
    pub name: &'static str,
    pub candle: GgmlDType,
    pub ggml: GgmlType,
    pub block_len: usize,
    pub block_bytes: usize,
    pub f16_fields: &'static [usize],
}

pub const TYPES: &[QType] = &[
    QType {
        name: "f32",
        candle: GgmlDType::F32,
        ggml: GgmlType::F32,
        block_len: 32,
        block_bytes: 128,
        f16_fields: &[],
    },
    QType {
        name: "f16",
        candle: GgmlDType::F16,
        ggml: GgmlType::F16,
        block_len: 32,
        block_bytes: 64,
        f16_fields: &[],
    },
    QType {
        name: "bf16",
        candle: GgmlDType::BF16,
        ggml: GgmlType::BF16,
        block_len: 32,
        block_bytes: 64,
        f16_fields: &[],
    },
    QType {
        name: "q4_0",
        candle: GgmlDType::Q4_0,
        ggml: GgmlType::Q4_0,
        block_len: 32,
        block_bytes: 18,
        f16_fields: &[0],
    },
    QType {
        name: "q4_1",
        candle: GgmlDType::Q4_1,
        ggml: GgmlType::Q4_1,
        block_len: 32,
        block_bytes: 20,
        f16_fields: &[0, 2],
    },
    QType {
        name: "q5_0",
        candle: GgmlDType::Q5_0,
        ggml: GgmlType::Q5_0,
        block_len: 32,
        block_bytes: 22,
        f16_fields: &[0],
    },
    QType {
        name: "q5_1",
        candle: GgmlDType::Q5_1,
        ggml: GgmlType::Q5_1,
        block_len: 32,
        block_bytes: 24,
        f16_fields: &[0, 2],
    },
    QType {
        name: "q8_0",
        candle: GgmlDType::Q8_0,
        ggml: GgmlType::Q8_0,
        block_len: 32,
        block_bytes: 34,
        f16_fields: &[0],
    },
    QType {
        name: "q2_k",
        candle: GgmlDType::Q2K,
        ggml: GgmlType::Q2K,
        block_len: 256,
        block_bytes: 84,
        f16_fields: &[80, 82],
    },
    QType {
        name: "q3_k",
        candle: GgmlDType::Q3K,
        ggml: GgmlType::Q3K,
        block_len: 256,
        block_bytes: 110,
        f16_fields: &[108],
    },
    QType {
        name: "q4_k",
        candle: GgmlDType::Q4K,
        ggml: GgmlType::Q4K,
        block_len: 256,
        block_bytes: 144,
        f16_fields: &[0, 2],
    },
    QType {
        name: "q5_k",
        candle: GgmlDType::Q5K,
        ggml: GgmlType::Q5K,
        block_len: 256,
        block_bytes: 176,
        f16_fields: &[0, 2],
    },
    QType {
        name: "q6_k",
        candle: GgmlDType::Q6K,
        ggml: GgmlType::Q6K,
        block_len: 256,
        block_bytes: 210,
        f16_fields: &[208],
    },
];

pub fn qtype(name: &str) -> QType {
    *TYPES.iter().find(|t| t.name == name).expect("known type")
}

/// A weight matrix in GGUF blocks and as candle dequantizes it.
pub struct QMatrix {
    pub ty: QType,
    pub rows: usize,
    pub cols: usize,
    /// GGUF bytes, `rows * row_bytes`, rows contiguous.
    pub gguf: Vec<u8>,
    pub row_bytes: usize,
    /// Bytes between rows on the GPU (the uploader's layout, for sizing pieces).
    pub row_stride: usize,
    /// candle's dequantization, row-major `rows x cols`.
    pub dequant: Vec<f32>,
}

impl QMatrix {
    fn from_gguf(ty: QType, rows: usize, cols: usize, gguf: Vec<u8>) -> Self {
        assert_eq!(cols % ty.block_len, 0);
        let row_bytes = cols / ty.block_len * ty.block_bytes;
        assert_eq!(gguf.len(), rows * row_bytes);
        let storage =
            QStorage::from_data(std::borrow::Cow::Borrowed(&gguf), &Device::Cpu, ty.candle)
                .unwrap();
        let qt = QTensor::new(storage, (rows, cols)).unwrap();
        let dequant = qt
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let row_stride = gemma_web::gpu::gpu_row_bytes(ty.ggml, cols as u64)
            .unwrap()
            .next_multiple_of(gemma_web::gpu::ROW_ALIGN) as usize;
        QMatrix {
            ty,
            rows,
            cols,
            gguf,
            row_bytes,
            row_stride,
            dequant,
        }
    }

    /// Realistic blocks: random normal weights quantized by candle (ggml's quantizers).
    pub fn quantized(ty: QType, rows: usize, cols: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let data: Vec<f32> = (0..rows * cols).map(|_| normal(&mut rng)).collect();
        let t = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, ty.candle).unwrap();
        let gguf = q.data().unwrap().into_owned();
        Self::from_gguf(ty, rows, cols, gguf)
    }

    /// Random bit patterns in every quant field (reaching scale and sign bits a quantizer may never set),
    /// with sane f16 scales; float types get random finite values.
    pub fn random_blocks(ty: QType, rows: usize, cols: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let n_blocks = rows * cols / ty.block_len;
        let mut gguf = vec![0u8; n_blocks * ty.block_bytes];
        match ty.name {
            "f32" => {
                for c in gguf.chunks_exact_mut(4) {
                    c.copy_from_slice(&normal(&mut rng).to_le_bytes());
                }
            }
            "f16" => {
                for c in gguf.chunks_exact_mut(2) {
                    c.copy_from_slice(&half::f16::from_f32(normal(&mut rng)).to_le_bytes());
                }
            }
            "bf16" => {
                for c in gguf.chunks_exact_mut(2) {
                    c.copy_from_slice(&half::bf16::from_f32(normal(&mut rng)).to_le_bytes());
                }
            }
            _ => {
                rng.fill(&mut gguf[..]);
                for b in gguf.chunks_exact_mut(ty.block_bytes) {
                    for &o in ty.f16_fields {
                        let v: f32 = rng.random_range(-0.05..0.05);
                        b[o..o + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                    }
                }
            }
        }
        Self::from_gguf(ty, rows, cols, gguf)
    }

    /// This matrix on the GPU, split into pieces of at most `max_piece_rows` rows when given.
    pub async fn upload(
        &self,
        g: &gemma_web::gpu::Gpu,
        max_piece_rows: Option<usize>,
    ) -> gemma_web::gpu::WeightTensor {
        let max_piece = max_piece_rows.map(|r| (r * self.row_stride) as u64);
        g.upload_weight(
            "w",
            self.ty.ggml,
            self.rows as u32,
            self.cols as u32,
            &self.gguf,
            max_piece,
        )
        .await
        .expect("upload the weights")
    }
}

/// Standard normal by Box-Muller (rand 0.9 without rand_distr).
pub fn normal(rng: &mut StdRng) -> f32 {
    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
    let u2: f64 = rng.random();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

pub fn random_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// y = W x in f64 over candle's dequantized weights.
pub fn matvec_ref(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

/// Y[n x rows] = X[n x cols] W^T in f64.
pub fn matmul_ref(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * rows];
    for t in 0..n {
        let xt = &x[t * cols..(t + 1) * cols];
        for r in 0..rows {
            y[t * rows + r] = w[r * cols..(r + 1) * cols]
                .iter()
                .zip(xt)
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum::<f64>() as f32;
        }
    }
    y
}

/// The tolerance for a dot product of length `cols` in f32: a few ulps of the sum of |w x| terms.
pub fn dot_tolerance(w: &[f32], rows: usize, cols: usize, x: &[f32]) -> f32 {
    let worst = (0..rows)
        .map(|r| {
            w[r * cols..(r + 1) * cols]
                .iter()
                .zip(x)
                .map(|(&a, &b)| (a * b).abs())
                .sum::<f32>()
        })
        .fold(0f32, f32::max);
    worst * 1e-5 + 1e-6
}
