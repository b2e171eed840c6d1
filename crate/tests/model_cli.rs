//! `gemma-web generate`, `score` and `bench` on a tiny random-weight Gemma 3 file: the JSON they
//! print, determinism for a seed, and a prompt past the context as a typed error.
#![cfg(not(target_arch = "wasm32"))]

use std::process::Command;

use gemma_web::model::config::Arch;
use gemma_web::model::random::{random_gemma_bytes, RandomGemmaSpec};
use serde_json::Value;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gemma-web"))
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .expect("run gemma-web");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn last_json(stdout: &str) -> Value {
    let line = stdout.lines().last().expect("output");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect()
}

#[test]
fn generate_score_and_bench() {
    let spec = RandomGemmaSpec::tiny(Arch::Gemma3);
    let vocab = u64::from(spec.vocab);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    std::fs::write(&path, random_gemma_bytes(&spec).unwrap()).unwrap();
    let model = path.to_str().unwrap();
    let common = ["--model", model, "--context", "64", "--default-limits"];

    // Sampling with a seed: the same tokens twice, a stream of text, the JSON keys.
    let gen = |seed: &str| {
        let mut a = vec!["generate"];
        a.extend_from_slice(&common);
        a.extend_from_slice(&[
            "--prompt",
            "the sea",
            "--max-tokens",
            "6",
            "--temperature",
            "0.9",
            "--top-k",
            "40",
            "--top-p",
            "0.9",
            "--seed",
            seed,
            "--json",
        ]);
        let (ok, out, err) = run(&a);
        assert!(ok, "{err}");
        last_json(&out)
    };
    let a = gen("7");
    for key in [
        "prompt_ids",
        "generated_ids",
        "text",
        "prefill_tok_s",
        "decode_tok_s",
    ] {
        assert!(a.get(key).is_some(), "generate --json lacks {key}: {a}");
    }
    let generated = ids(&a["generated_ids"]);
    assert!(!generated.is_empty() && generated.len() <= 6);
    assert!(generated.iter().all(|&id| id < vocab));
    assert_eq!(ids(&a["prompt_ids"])[0], 2, "BOS first");
    assert_eq!(a["generated_ids"], gen("7")["generated_ids"], "same seed");

    // Two chat turns in one conversation.
    let mut c = vec!["generate"];
    c.extend_from_slice(&common);
    c.extend_from_slice(&[
        "--chat",
        "--prompt",
        "hi",
        "--prompt",
        "and again",
        "--max-tokens",
        "3",
        "--json",
    ]);
    let (ok, out, err) = run(&c);
    assert!(ok, "{err}");
    assert!(out.contains("user> and again"), "{out}");

    // Score: one nll per predicted token, top-5 per position, the mean of the nll.
    let mut s = vec!["score"];
    s.extend_from_slice(&common);
    s.extend_from_slice(&["--text", "a b c the sea", "--json"]);
    let (ok, out, err) = run(&s);
    assert!(ok, "{err}");
    let v = last_json(&out);
    let n = ids(&v["ids"]).len();
    let nll: Vec<f64> = v["nll"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(nll.len(), n - 1);
    assert!(nll.iter().all(|x| x.is_finite() && *x >= 0.0));
    let mean = v["mean_nll"].as_f64().unwrap();
    assert!((mean - nll.iter().sum::<f64>() / nll.len() as f64).abs() < 1e-9);
    let top5 = v["top5"].as_array().unwrap();
    assert_eq!(top5.len(), n);
    assert_eq!(top5[0].as_array().unwrap().len(), 5);

    // Bench: the numbers the issue asks for.
    let mut b = vec!["bench"];
    b.extend_from_slice(&common);
    b.extend_from_slice(&["--prompt-tokens", "9", "--gen-tokens", "4", "--json"]);
    let (ok, out, err) = run(&b);
    assert!(ok, "{err}");
    let v = last_json(&out);
    for key in [
        "load_s",
        "prefill_tok_s",
        "decode_tok_s",
        "weight_bytes_per_token",
        "effective_gb_s",
        "stream_read_gb_s",
        "decode_fraction_of_roofline",
        "host_peak_bytes",
    ] {
        assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "bench {key}: {v}");
    }

    // A prompt longer than the context: a typed error, not a truncation.
    let long = "sea ".repeat(100);
    let mut l = vec!["generate"];
    l.extend_from_slice(&common);
    l.extend_from_slice(&["--prompt", &long]);
    let (ok, _, err) = run(&l);
    assert!(!ok);
    assert!(err.contains("PromptTooLong"), "{err}");
}
