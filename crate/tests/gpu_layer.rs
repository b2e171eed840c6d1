//! The GPU layer itself: device set-up at default limits, typed errors for bad shaders,
//! read-back, and dispatches folded past 65535 workgroups.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::matvec::MatvecShape;
use gemma_web::gpu::{fold_workgroups, Gpu, GpuOptions, PipelineDesc};
use gemma_web::Error;
use pollster::block_on;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

#[test]
fn default_limits_and_caps() {
    let gpu = gpu();
    let c = &gpu.caps;
    assert_eq!(c.max_binding, 128 << 20);
    assert_eq!(c.max_buffer, 256 << 20);
    assert_eq!(c.max_storage_buffers, 8);
    assert!(!c.f16 && !c.subgroups);
    assert_eq!(c.tier, "baseline");
    assert!(!c.adapter_name.is_empty());
    gpu.check().unwrap();
}

/// The kernel layout follows the adapter's device type, not its name: lavapipe reports
/// `DeviceType::Cpu` and gets the one-thread-a-row matvec; the layout choice never looks at
/// the name (a browser may hide it).
#[test]
fn kernel_layout_follows_the_device_type() {
    let gpu = gpu();
    let c = &gpu.caps;
    assert_eq!(c.cpu, c.device_type == "cpu", "{c:?}");
    let name = c.adapter_name.to_ascii_lowercase();
    if name.contains("llvmpipe") || name.contains("lavapipe") {
        assert!(c.cpu, "lavapipe is a CPU adapter: {c:?}");
    }
    let want = if c.cpu {
        MatvecShape::CPU
    } else {
        MatvecShape::GPU
    };
    assert_eq!(MatvecShape::for_gpu(&gpu), want);
    assert_eq!(MatvecShape::for_cpu_adapter(true), MatvecShape::CPU);
    assert_eq!(MatvecShape::for_cpu_adapter(false), MatvecShape::GPU);
}

#[test]
fn bad_shader_is_a_typed_error_not_a_panic() {
    let gpu = gpu();
    let bad = "@compute @workgroup_size(1) fn main() { let x: u32 = undefined_thing; }";
    match block_on(gpu.pipeline_from_wgsl("bad", bad, &[], None)) {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("bad"), "{msg}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // An override constant the shader does not declare is a validation error too.
    let good = "override WG: u32 = 1u; @compute @workgroup_size(WG) fn main() {}";
    assert!(block_on(gpu.pipeline_from_wgsl("ok", good, &[("WG", 4.0)], None)).is_ok());
    assert!(block_on(gpu.pipeline_from_wgsl("nope", good, &[("NOPE", 4.0)], None)).is_err());
    // A kernel file that does not exist.
    assert!(matches!(
        block_on(gpu.pipeline(&PipelineDesc::kernel("no_such_kernel"))),
        Err(Error::Unsupported(_))
    ));
    // The device is still usable afterwards.
    gpu.check().unwrap();
    let b = gpu.storage_u32("x", &[1, 2, 3]).unwrap();
    assert_eq!(block_on(gpu.read_u32(&b, 3)).unwrap(), vec![1, 2, 3]);
}

#[test]
fn readback_round_trip_odd_lengths_and_bad_ranges() {
    let gpu = gpu();
    let data: Vec<u8> = (0..1001u32).map(|i| (i * 7 + 3) as u8).collect();
    let b = gpu.storage_init("bytes", &data).unwrap();
    assert_eq!(block_on(gpu.read(&b, 0, 1001)).unwrap(), data);
    assert_eq!(block_on(gpu.read(&b, 8, 5)).unwrap(), data[8..13].to_vec());
    // Unaligned offsets and reads past the end are errors, not panics.
    assert!(block_on(gpu.read(&b, 2, 4)).is_err());
    assert!(block_on(gpu.read(&b, 1000, 100)).is_err());
    assert!(gpu.write(&b, 0, &[0u8; 2000]).is_err());
    // A buffer larger than the device allows.
    assert!(matches!(
        gpu.storage("huge", 1 << 30),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn folded_dispatch_reaches_every_group() {
    let gpu = gpu();
    // Each workgroup marks its linear index; more groups than one dimension allows.
    let src = r#"
@group(0) @binding(0) var<storage, read_write> marks: array<u32>;
@group(0) @binding(1) var<uniform> n: vec4<u32>;
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let g = linear_group(wid, nwg);
    if (g >= n.x) { return; }
    marks[g] = marks[g] + g + 1u;
}
"#;
    let prelude = gemma_web::gpu::shader_source("prelude").unwrap();
    let p =
        block_on(gpu.pipeline_from_wgsl("marks", &format!("{prelude}\n{src}"), &[], None)).unwrap();
    let n = 70_001u32;
    let marks = gpu.storage("marks", u64::from(n + 5) * 4).unwrap();
    let params = gpu.uniform_u32("n", &[n, 0, 0, 0]).unwrap();
    let op = gpu.op_buffers("marks", &p, &[&marks, &params], fold_workgroups(n));
    assert!(op.workgroups[1] > 1);
    gpu.run(&[&op]).unwrap();
    let got = block_on(gpu.read_u32(&marks, (n + 5) as usize)).unwrap();
    for (g, &m) in got.iter().enumerate() {
        let want = if (g as u32) < n { g as u32 + 1 } else { 0 };
        assert_eq!(m, want, "group {g}");
    }
}

#[test]
fn pipeline_cache_reuses_by_kernel_and_variant() {
    let gpu = gpu();
    let before = gpu.pipeline_count();
    let a = PipelineDesc::kernel("prelude_check");
    // prelude_check does not exist: nothing cached on failure.
    assert!(block_on(gpu.pipeline(&a)).is_err());
    assert_eq!(gpu.pipeline_count(), before);
}

#[test]
fn weight_upload_pads_rows_and_splits_by_whole_rows() {
    use gemma_web::gguf::GgmlType;
    let gpu = gpu();
    // Q8_0: 3 blocks = 102 bytes a row; on the GPU regrouped to the 3 scales (in 16 bytes) then
    // the 3 x 32 quants, 112 bytes, a multiple of 16.
    let (rows, cols) = (37u32, 96u32);
    let mut rng = gemma_web::testing::Rng::new(5);
    let bytes = rng.bytes((rows * 102) as usize);
    let w = block_on(gpu.upload_weight("w", GgmlType::Q8_0, rows, cols, &bytes, Some(112 * 10)))
        .unwrap();
    assert_eq!((w.row_bytes, w.row_stride_bytes), (102, 112));
    let sizes: Vec<(u32, u32)> = w.pieces.iter().map(|p| (p.first_row, p.rows)).collect();
    assert_eq!(sizes, vec![(0, 10), (10, 10), (20, 10), (30, 7)]);
    for p in &w.pieces {
        let got = block_on(gpu.read(&p.buffer, 0, u64::from(p.rows) * 112)).unwrap();
        for r in 0..p.rows as usize {
            let src = &bytes[(p.first_row as usize + r) * 102..][..102];
            let row = &got[r * 112..][..112];
            for j in 0..3 {
                assert_eq!(
                    &row[2 * j..2 * j + 2],
                    &src[34 * j..34 * j + 2],
                    "scale {j}"
                );
                assert_eq!(
                    &row[16 + 32 * j..48 + 32 * j],
                    &src[34 * j + 2..34 * j + 34]
                );
            }
            assert_eq!(&row[6..16], &[0; 10]);
        }
    }
    // Q4_0 keeps GGUF's layout: 3 blocks = 54 bytes, then zeros to 64.
    let q4 = rng.bytes(5 * 54);
    let w4 = block_on(gpu.upload_weight("w4", GgmlType::Q4_0, 5, 96, &q4, None)).unwrap();
    assert_eq!((w4.row_bytes, w4.row_stride_bytes), (54, 64));
    let got = block_on(gpu.read(&w4.pieces[0].buffer, 0, 5 * 64)).unwrap();
    for r in 0..5 {
        assert_eq!(&got[r * 64..r * 64 + 54], &q4[r * 54..r * 54 + 54]);
        assert_eq!(&got[r * 64 + 54..r * 64 + 64], &[0; 10]);
    }
    assert_eq!(w.piece_of_row(25).map(|(i, _)| i), Some(2));
    assert!(w.piece_of_row(37).is_none());
    // Too many or too few bytes are BadModel errors.
    assert!(matches!(
        block_on(gpu.upload_weight("w", GgmlType::Q8_0, rows, cols, &bytes[1..], None)),
        Err(Error::BadModel(_))
    ));
    let mut more = bytes.clone();
    more.push(0);
    assert!(matches!(
        block_on(gpu.upload_weight("w", GgmlType::Q8_0, rows, cols, &more, None)),
        Err(Error::BadModel(_))
    ));
    // Columns that are not whole blocks.
    assert!(block_on(gpu.begin_weight("w", GgmlType::Q8_0, 2, 33, None)).is_err());
}
