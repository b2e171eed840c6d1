use super::*;
use crate::gguf::writer::{gguf_bytes, TensorDecl};
use crate::gguf::{parse_header, HeaderParse, MetaValue};
use crate::model::random::{random_gemma_bytes, RandomGemmaSpec};

fn header_of(b: &[u8]) -> GgufHeader {
    match parse_header(b, b.len() as u64) {
        Ok(HeaderParse::Complete(h)) => h,
        other => panic!("{other:?}"),
    }
}

fn sliding_layers(c: &GemmaConfig) -> Vec<u32> {
    (0..c.n_layers).filter(|&l| c.is_sliding(l)).collect()
}

#[test]
fn tiny_random_models_of_each_arch() {
    for arch in [Arch::Gemma, Arch::Gemma2, Arch::Gemma3] {
        let spec = RandomGemmaSpec::tiny(arch);
        let h = header_of(&random_gemma_bytes(&spec).unwrap());
        let c = GemmaConfig::from_header(&h).unwrap();
        assert_eq!(c, spec.config(), "{arch}");
        check_inventory(&h, &c).unwrap();
        assert_eq!(c.query_scale, 0.125);
        // Expectations from GEMMA.md, written out rather than derived from the code under test.
        match arch {
            Arch::Gemma => {
                assert_eq!(sliding_layers(&c), Vec::<u32>::new());
                assert_eq!((c.attn_softcap, c.final_softcap), (None, None));
                assert_eq!((c.rope_base(0), c.rope_base(3)), (10_000.0, 10_000.0));
                assert_eq!(h.tensors.len(), 2 + 4 * 9);
            }
            Arch::Gemma2 => {
                assert_eq!(sliding_layers(&c), vec![0, 2]);
                assert_eq!(c.window(0), Some(16));
                assert_eq!(c.window(1), None);
                assert_eq!((c.attn_softcap, c.final_softcap), (Some(50.0), Some(30.0)));
                assert_eq!((c.rope_base(0), c.rope_base(1)), (10_000.0, 10_000.0));
                assert_eq!(h.tensors.len(), 2 + 4 * 11);
            }
            Arch::Gemma3 => {
                assert_eq!(sliding_layers(&c), vec![0, 1, 2, 3, 4]);
                assert_eq!((c.rope_base(0), c.rope_base(5)), (10_000.0, 1_000_000.0));
                assert_eq!((c.attn_softcap, c.final_softcap), (None, None));
                assert_eq!(h.tensors.len(), 2 + 6 * 13);
            }
        }
    }
}

#[test]
fn full_size_presets_parse_from_their_headers() {
    // Only the headers: the weights of these are 0.3 to 1.8 GB.
    for (spec, layers, d, ffn, heads, kv, vocab) in [
        (RandomGemmaSpec::gemma_2b(), 18, 2048, 16384, 8, 1, 256_000),
        (RandomGemmaSpec::gemma2_2b(), 26, 2304, 9216, 8, 4, 256_000),
        (RandomGemmaSpec::gemma3_270m(), 18, 640, 2048, 4, 1, 262_144),
        (RandomGemmaSpec::gemma3_1b(), 26, 1152, 6912, 4, 1, 262_144),
    ] {
        let (b, len) = spec.header_bytes().unwrap();
        let h = match parse_header(&b, len).unwrap() {
            HeaderParse::Complete(h) => h,
            o => panic!("{o:?}"),
        };
        let c = GemmaConfig::from_header(&h).unwrap();
        assert_eq!(
            (
                c.n_layers,
                c.d_model,
                c.ffn,
                c.n_heads,
                c.n_kv_heads,
                c.head_dim,
                c.vocab
            ),
            (layers, d, ffn, heads, kv, 256, vocab)
        );
        assert_eq!(c.query_scale, 1.0 / 16.0);
        check_inventory(&h, &c).unwrap();
        assert_eq!(
            h.get_array("tokenizer.ggml.tokens").unwrap().len() as u32,
            vocab
        );
        if spec.arch == Arch::Gemma2 {
            assert_eq!(c.window(0), Some(4096));
            assert!(!c.is_sliding(25));
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn real_model_config_and_inventory() {
    let Some(p) = crate::gguf::tests::real_model_path() else {
        return;
    };
    let h = crate::gguf::read_header_from_file(&p).unwrap();
    let c = GemmaConfig::from_header(&h).unwrap();
    // The numbers of GEMMA.md and the definition of done.
    assert_eq!(c.arch, Arch::Gemma3);
    assert_eq!(
        (
            c.n_layers,
            c.d_model,
            c.ffn,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim,
            c.vocab
        ),
        (18, 640, 2048, 4, 1, 256, 262_144)
    );
    assert_eq!(c.sliding_window, Some(512));
    assert_eq!(c.eps, 1e-6);
    assert_eq!(c.context_len, 32_768);
    assert_eq!(c.query_scale, 1.0 / 16.0);
    assert_eq!((c.attn_softcap, c.final_softcap), (None, None));
    let global: Vec<u32> = (0..18).filter(|&l| !c.is_sliding(l)).collect();
    assert_eq!(global, vec![5, 11, 17]);
    assert_eq!((c.rope_base(0), c.rope_base(5)), (10_000.0, 1_000_000.0));
    check_inventory(&h, &c).unwrap();

    // The writer's 270M preset names, shapes and types every tensor as llama.cpp did in the real file.
    let spec = RandomGemmaSpec::gemma3_270m();
    let mut ours: Vec<(String, Vec<u64>, crate::gguf::GgmlType)> = spec
        .tensors()
        .unwrap()
        .into_iter()
        .map(|(d, _)| (d.name, d.dims, d.ty))
        .collect();
    let mut real: Vec<(String, Vec<u64>, crate::gguf::GgmlType)> = h
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.dims.clone(), t.ty))
        .collect();
    ours.sort();
    real.sort();
    // The real file mixes Q8_0/Q5_0 for attn_v and Q6_K/Q4_K for ffn_down per layer; compare names
    // and dims exactly and types where the real file is uniform.
    assert_eq!(ours.len(), real.len());
    for (o, r) in ours.iter().zip(&real) {
        assert_eq!((&o.0, &o.1), (&r.0, &r.1));
        if !(o.0.contains("attn_v") || o.0.contains("ffn_down")) {
            assert_eq!(o.2, r.2, "{}", o.0);
        }
    }
    // And writes the same gemma3.* and tokenizer keys (the real file has a few more general.* ones).
    let (ours, _) = spec.header_bytes().unwrap();
    let ours = match parse_header(&ours, u64::MAX) {
        Ok(HeaderParse::Complete(h)) => h,
        o => panic!("{o:?}"),
    };
    let keys = |h: &GgufHeader| -> Vec<String> {
        let mut k: Vec<String> = h
            .metadata
            .iter()
            .map(|(k, _)| k.clone())
            .filter(|k| !k.starts_with("general.") || k == "general.architecture")
            .collect();
        k.sort();
        k
    };
    let real_keys: Vec<String> = keys(&h)
        .into_iter()
        .filter(|k| !k.starts_with("tokenizer.ggml.add_sep"))
        .collect();
    assert_eq!(keys(&ours), real_keys);
    for (k, v) in &ours.metadata {
        if let Some(rv) = h.get(k) {
            assert_eq!(v.type_id(), rv.type_id(), "{k}");
        }
    }
    let toks = h.get_array("tokenizer.ggml.tokens").unwrap();
    let ours_toks = ours.get_array("tokenizer.ggml.tokens").unwrap();
    for id in [0usize, 1, 2, 3, 4, 105, 106, 107, 108, 238, 493] {
        assert_eq!(toks[id], ours_toks[id], "token {id}");
    }
}

/// A tiny gemma3 file with its metadata and tensor table edited.
fn edited(
    edit_meta: impl Fn(&mut Vec<(String, MetaValue)>),
    edit_tensors: impl Fn(&mut Vec<TensorDecl>),
) -> GgufHeader {
    edited_arch(Arch::Gemma3, edit_meta, edit_tensors)
}

/// A tiny file of `arch` with its metadata and tensor table edited.
fn edited_arch(
    arch: Arch,
    edit_meta: impl Fn(&mut Vec<(String, MetaValue)>),
    edit_tensors: impl Fn(&mut Vec<TensorDecl>),
) -> GgufHeader {
    let spec = RandomGemmaSpec::tiny(arch);
    let mut meta = spec.metadata().unwrap();
    edit_meta(&mut meta);
    let mut decls: Vec<TensorDecl> = spec
        .tensors()
        .unwrap()
        .into_iter()
        .map(|(d, _)| d)
        .collect();
    edit_tensors(&mut decls);
    let tensors: Vec<(TensorDecl, Vec<u8>)> = decls
        .into_iter()
        .map(|d| {
            let n = d.bytes().unwrap() as usize;
            (d, vec![0u8; n])
        })
        .collect();
    header_of(&gguf_bytes(&meta, &tensors, 32).unwrap())
}

fn set(meta: &mut [(String, MetaValue)], key: &str, v: MetaValue) {
    meta.iter_mut().find(|(k, _)| k == key).unwrap().1 = v;
}

fn check(h: &GgufHeader) -> Result<(), Error> {
    let c = GemmaConfig::from_header(h)?;
    check_inventory(h, &c)
}

#[test]
fn other_architectures_are_unsupported_by_name() {
    let h = edited(
        |m| set(m, "general.architecture", MetaValue::Str("llama".into())),
        |_| {},
    );
    match GemmaConfig::from_header(&h) {
        Err(Error::Unsupported(m)) => assert!(m.contains("\"llama\""), "{m}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn inventory_errors_name_the_tensor() {
    let cases: Vec<(&str, Box<dyn Fn(&mut Vec<TensorDecl>)>, &str)> = vec![
        (
            "missing",
            Box::new(|t| t.retain(|d| d.name != "blk.3.ffn_up.weight")),
            "blk.3.ffn_up.weight",
        ),
        (
            "missing q norm",
            Box::new(|t| t.retain(|d| d.name != "blk.5.attn_q_norm.weight")),
            "blk.5.attn_q_norm.weight",
        ),
        (
            "transposed",
            Box::new(|t| {
                let d = t
                    .iter_mut()
                    .find(|d| d.name == "blk.1.ffn_down.weight")
                    .unwrap();
                d.dims.swap(0, 1);
            }),
            "blk.1.ffn_down.weight",
        ),
        (
            "wrong kv width",
            Box::new(|t| {
                let d = t
                    .iter_mut()
                    .find(|d| d.name == "blk.0.attn_k.weight")
                    .unwrap();
                d.dims[1] = 64;
            }),
            "blk.0.attn_k.weight",
        ),
        (
            "norm with an extra dim",
            Box::new(|t| {
                let d = t
                    .iter_mut()
                    .find(|d| d.name == "output_norm.weight")
                    .unwrap();
                d.dims.push(1);
            }),
            "output_norm.weight",
        ),
    ];
    for (what, edit, name) in cases {
        match check(&edited(|_| {}, edit)) {
            Err(Error::BadModel(m)) => assert!(m.contains(name), "{what}: {m}"),
            o => panic!("{what}: {o:?}"),
        }
    }
    // A norm stored in F16 is a type we do not run.
    let h = edited(
        |_| {},
        |t| {
            t.iter_mut()
                .find(|d| d.name == "blk.2.ffn_norm.weight")
                .unwrap()
                .ty = crate::gguf::GgmlType::F16
        },
    );
    match check(&h) {
        Err(Error::Unsupported(m)) => assert!(m.contains("blk.2.ffn_norm.weight"), "{m}"),
        o => panic!("{o:?}"),
    }
}

#[test]
fn metadata_errors_name_the_key() {
    let h = edited(|m| m.retain(|(k, _)| k != "gemma3.block_count"), |_| {});
    match GemmaConfig::from_header(&h) {
        Err(Error::BadModel(m)) => assert!(m.contains("gemma3.block_count"), "{m}"),
        o => panic!("{o:?}"),
    }
    let h = edited(
        |m| set(m, "gemma3.attention.head_count", MetaValue::Str("4".into())),
        |_| {},
    );
    match GemmaConfig::from_header(&h) {
        Err(Error::BadModel(m)) => assert!(m.contains("gemma3.attention.head_count"), "{m}"),
        o => panic!("{o:?}"),
    }
    // 4 heads cannot share 3 kv heads.
    let h = edited(
        |m| set(m, "gemma3.attention.head_count_kv", MetaValue::U32(3)),
        |_| {},
    );
    assert!(matches!(
        GemmaConfig::from_header(&h),
        Err(Error::BadModel(_))
    ));
    // More tokens than embedding rows would index past the embedding.
    let h = edited(
        |m| {
            let toks = m
                .iter_mut()
                .find(|(k, _)| k == "tokenizer.ggml.tokens")
                .unwrap();
            if let MetaValue::Array(a) = &mut toks.1 {
                a.push(MetaValue::Str("extra".into()));
            }
        },
        |_| {},
    );
    assert!(matches!(
        GemmaConfig::from_header(&h),
        Err(Error::BadModel(_))
    ));
}

#[test]
fn absent_keys_get_gemma_md_defaults() {
    let h = edited(
        |m| {
            m.retain(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "gemma3.attention.sliding_window"
                        | "gemma3.rope.freq_base"
                        | "gemma3.attention.layer_norm_rms_epsilon"
                        | "gemma3.attention.head_count_kv"
                        | "gemma3.context_length"
                )
            })
        },
        // Without head_count_kv every head has its own k and v.
        |t| {
            for d in t
                .iter_mut()
                .filter(|d| d.name.ends_with("attn_k.weight") || d.name.ends_with("attn_v.weight"))
            {
                d.dims[1] = 256;
            }
        },
    );
    let c = GemmaConfig::from_header(&h).unwrap();
    assert_eq!(c.sliding_window, Some(512));
    assert_eq!(
        (c.rope_base_global, c.rope_base_local),
        (1_000_000.0, 10_000.0)
    );
    assert_eq!(c.eps, 1e-6);
    assert_eq!(c.n_kv_heads, 4);
    assert_eq!(c.context_len, 8192);
    check_inventory(&h, &c).unwrap();

    // A pattern key, when a file has one, wins over the default 6.
    let h = edited(
        |m| {
            m.push((
                "gemma3.attention.sliding_window_pattern".into(),
                MetaValue::U32(3),
            ))
        },
        |_| {},
    );
    let c = GemmaConfig::from_header(&h).unwrap();
    assert_eq!(sliding_layers(&c), vec![0, 1, 3, 4]);
}

/// The tiny model of `arch` with these metadata keys added.
fn with_keys(arch: Arch, keys: &[(&str, MetaValue)]) -> GgufHeader {
    edited_arch(
        arch,
        |m| m.extend(keys.iter().map(|(k, v)| (k.to_string(), v.clone()))),
        |_| {},
    )
}

#[test]
fn linear_rope_scaling_divides_the_global_layers_positions() {
    use MetaValue as M;
    // Gemma 3 4B, 12B and 27B: rope.scaling.type "linear", factor 8. llama.cpp multiplies the
    // positions of the global layers by 1/factor (freq_scale; its sliding layers keep 1), as HF
    // does with rope_scaling on the global rotary embedding only.
    let h = with_keys(
        Arch::Gemma3,
        &[
            ("gemma3.rope.scaling.type", M::Str("linear".into())),
            ("gemma3.rope.scaling.factor", M::F32(8.0)),
            ("gemma3.rope.scaling.original_context_length", M::U32(8192)),
        ],
    );
    let c = GemmaConfig::from_header(&h).unwrap();
    assert_eq!(c.rope_scale_global, 0.125);
    let per_layer: Vec<f32> = (0..6).map(|l| c.rope_scale(l)).collect();
    assert_eq!(per_layer, [1.0, 1.0, 1.0, 1.0, 1.0, 0.125]);
    assert_eq!((c.rope_base(4), c.rope_base(5)), (10_000.0, 1_000_000.0));

    // The random writer's files say the same.
    let spec = RandomGemmaSpec {
        rope_scaling: Some(8.0),
        ..RandomGemmaSpec::tiny(Arch::Gemma3)
    };
    let from_file = GemmaConfig::from_header(&header_of(&random_gemma_bytes(&spec).unwrap()));
    assert_eq!(from_file.unwrap(), spec.config());
    assert_eq!(spec.config().rope_scale(5), 0.125);

    // Gemma 1 and 2 have one rotary embedding: every layer is scaled.
    for arch in [Arch::Gemma, Arch::Gemma2] {
        let a = arch.name();
        let c = GemmaConfig::from_header(&with_keys(
            arch,
            &[(&format!("{a}.rope.scaling.factor"), M::F32(4.0))],
        ))
        .unwrap();
        assert!((0..4).all(|l| c.rope_scale(l) == 0.25), "{arch}");
    }

    // Without the keys, with type "none", a factor of 0 (llama.cpp: none) or 1: unscaled.
    // The older key rope.scale_linear counts when rope.scaling.factor is absent.
    for (keys, want) in [
        (vec![], 1.0),
        (
            vec![("gemma3.rope.scaling.type", M::Str("none".into()))],
            1.0,
        ),
        (vec![("gemma3.rope.scaling.factor", M::F32(0.0))], 1.0),
        (vec![("gemma3.rope.scaling.factor", M::F32(1.0))], 1.0),
        (vec![("gemma3.rope.scale_linear", M::F32(2.0))], 0.5),
        (vec![("gemma3.rope.scaling.factor", M::U32(8))], 0.125),
    ] {
        let c = GemmaConfig::from_header(&with_keys(Arch::Gemma3, &keys)).unwrap();
        assert_eq!(c.rope_scale_global, want, "{keys:?}");
    }

    // Factors that are no factor are a bad model.
    for v in [M::F32(-8.0), M::F32(f32::NAN), M::Str("8".into())] {
        let h = with_keys(Arch::Gemma3, &[("gemma3.rope.scaling.factor", v.clone())]);
        match GemmaConfig::from_header(&h) {
            Err(Error::BadModel(msg)) => assert!(msg.contains("rope.scaling.factor"), "{msg}"),
            other => panic!("{v:?}: {other:?}"),
        }
    }
}

#[test]
fn keys_that_change_the_math_unread_are_refused() {
    use MetaValue as M;
    // Each of these would change the logits of a real model if it were ignored.
    for (arch, key, v) in [
        (
            Arch::Gemma3,
            "gemma3.rope.scaling.type",
            M::Str("yarn".into()),
        ),
        (
            Arch::Gemma3,
            "gemma3.rope.scaling.type",
            M::Str("longrope".into()),
        ),
        (Arch::Gemma3, "gemma3.rope.scaling.attn_factor", M::F32(1.2)),
        (
            Arch::Gemma3,
            "gemma3.rope.scaling.yarn_beta_fast",
            M::F32(32.0),
        ),
        (Arch::Gemma3, "gemma3.rope.dimension_count", M::U32(32)),
        (
            Arch::Gemma3,
            "gemma3.rope.dimension_sections",
            M::Array(vec![M::I32(16)]),
        ),
        (Arch::Gemma3, "gemma3.attention.scale", M::F32(0.1)),
        (Arch::Gemma3, "gemma3.attention.causal", M::Bool(false)),
        (Arch::Gemma3, "gemma3.attention.some_future_key", M::U32(1)),
        (Arch::Gemma3, "gemma3.expert_count", M::U32(8)),
        (Arch::Gemma3, "gemma3.logit_scale", M::F32(0.5)),
        (Arch::Gemma3, "gemma3.embedding_scale", M::F32(12.0)),
        // Gemma 1 reads no soft-caps, no window; Gemma 2 has a fixed pattern and one RoPE base.
        (Arch::Gemma, "gemma.attn_logit_softcapping", M::F32(50.0)),
        (Arch::Gemma, "gemma.final_logit_softcapping", M::F32(30.0)),
        (Arch::Gemma, "gemma.attention.sliding_window", M::U32(4096)),
        (
            Arch::Gemma2,
            "gemma2.attention.sliding_window_pattern",
            M::U32(6),
        ),
        (
            Arch::Gemma2,
            "gemma2.rope.local_freq_base",
            M::F32(10_000.0),
        ),
    ] {
        let h = with_keys(arch, &[(key, v.clone())]);
        match GemmaConfig::from_header(&h) {
            Err(Error::Unsupported(msg)) => assert!(msg.contains(key), "{key}: {msg}"),
            other => panic!("{key} = {v:?}: {other:?}"),
        }
    }
    // Keys that change nothing here load: the values RoPE and attention already have, zero caps
    // and experts, and keys outside the math.
    for (arch, key, v) in [
        (Arch::Gemma3, "gemma3.rope.dimension_count", M::U32(64)),
        (Arch::Gemma3, "gemma3.rope.scaling.attn_factor", M::F32(1.0)),
        (Arch::Gemma3, "gemma3.rope.scaling.finetuned", M::Bool(true)),
        (Arch::Gemma3, "gemma3.attention.causal", M::Bool(true)),
        (Arch::Gemma3, "gemma3.expert_count", M::U32(0)),
        (Arch::Gemma3, "gemma3.vocab_size", M::U32(512)),
        (Arch::Gemma, "gemma.attn_logit_softcapping", M::F32(0.0)),
        (Arch::Gemma2, "gemma2.rope.freq_base", M::F32(10_000.0)),
    ] {
        let h = with_keys(arch, &[(key, v.clone())]);
        if let Err(e) = GemmaConfig::from_header(&h) {
            panic!("{key} = {v:?}: {e}");
        }
    }
}
