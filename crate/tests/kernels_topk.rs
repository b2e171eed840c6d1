//! Argmax and top-k over the vocabulary (262144 and odd sizes), ties to the lowest index,
//! against a sort on the CPU.
#![cfg(not(target_arch = "wasm32"))]

use gemma_web::gpu::{kernels, Gpu, GpuOptions};
use gemma_web::testing::Rng;
use pollster::block_on;

fn gpu() -> Gpu {
    block_on(Gpu::new(GpuOptions::for_tests())).expect("a GPU adapter (lavapipe)")
}

/// The k best (index, value) by value descending, then index ascending.
fn topk_ref(v: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| {
        v[b as usize]
            .partial_cmp(&v[a as usize])
            .unwrap()
            .then(a.cmp(&b))
    });
    idx.into_iter()
        .take(k)
        .map(|i| (i, v[i as usize]))
        .collect()
}

/// Logits on a coarse grid, so many values tie.
fn logits(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| (r.normal() * 64.0).round() / 16.0).collect()
}

#[test]
fn argmax_vocab_sizes_with_ties() {
    let g = gpu();
    for (seed, n) in [
        (1u64, 262144usize),
        (2, 256000),
        (3, 1),
        (4, 4097),
        (5, 262147),
    ] {
        let mut v = logits(n, seed);
        // The maximum appears twice, in different workgroup chunks: the lower index wins.
        if n > 5000 {
            v[n - 1] = 1000.0;
            v[4500] = 1000.0;
        }
        let b = g.storage_f32("logits", &v).unwrap();
        let am = block_on(kernels::argmax(&g, &b, n as u32)).unwrap();
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            am.record(&mut pass);
        }
        g.submit(enc.finish()).unwrap();
        let got = block_on(am.read_argmax(&g)).unwrap();
        assert_eq!(got, topk_ref(&v, 1)[0].0, "argmax n={n} seed {seed}");
    }
}

#[test]
fn topk_matches_sorted_reference() {
    let g = gpu();
    for (seed, n, k) in [
        (10u64, 262144usize, 40usize),
        (11, 262144, 64),
        (12, 4097, 5),
        (13, 3, 5), // k > n: only n results
        (14, 9001, 1),
        (15, 130, 130),
    ] {
        let v = logits(n, seed);
        let b = g.storage_f32("logits", &v).unwrap();
        let tk = block_on(kernels::topk(&g, &b, n as u32, k as u32)).unwrap();
        let mut enc = g.device.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            tk.record(&mut pass);
        }
        g.submit(enc.finish()).unwrap();
        let got = block_on(tk.read(&g)).unwrap();
        assert_eq!(got, topk_ref(&v, k), "top-{k} of n={n} seed {seed}");
    }
    let b = g.storage("x", 16).unwrap();
    assert!(block_on(kernels::topk(&g, &b, 4, 0)).is_err());
    assert!(block_on(kernels::topk(&g, &b, 4, 1000)).is_err());
}
