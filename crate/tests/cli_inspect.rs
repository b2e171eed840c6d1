//! `gemma-web inspect` and `gemma-web random-model`, run as a user would.
#![cfg(not(target_arch = "wasm32"))]

mod reference;

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gemma-web"))
}

fn inspect_json(model: &Path) -> (bool, serde_json::Value) {
    let out = bin()
        .args(["inspect", "--json"])
        .arg(model)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gemma-web-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

#[test]
fn random_model_then_inspect() {
    for (arch, layers, tensors) in [("gemma", 4, 38), ("gemma2", 4, 46), ("gemma3", 6, 80)] {
        let p = tmp(&format!("{arch}.gguf"));
        let out = bin()
            .args([
                "random-model",
                "--arch",
                arch,
                "--preset",
                "tiny",
                "--seed",
                "3",
                "--out",
            ])
            .arg(&p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let w: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            w["bytes"].as_u64(),
            Some(std::fs::metadata(&p).unwrap().len())
        );

        let (ok, v) = inspect_json(&p);
        assert!(ok, "{v}");
        assert_eq!(v["architecture"], arch);
        assert_eq!(v["config"]["n_layers"], layers);
        assert_eq!(v["inventory"], "ok");
        assert_eq!(v["tensor_count"], tensors);
        let typed: u64 = v["types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["bytes"].as_u64().unwrap())
            .sum();
        assert_eq!(typed, v["tensor_bytes"].as_u64().unwrap());
        // The text form names the architecture and sums up.
        let text = bin().arg("inspect").arg(&p).output().unwrap();
        let text = String::from_utf8(text.stdout).unwrap();
        assert!(text.contains(&format!("architecture: {arch}\n")), "{text}");
        assert!(
            text.contains("tensors by type:") && text.contains("total: "),
            "{text}"
        );
    }
    // A preset that does not exist for the architecture is refused, naming it.
    let out = bin()
        .args([
            "random-model",
            "--arch",
            "gemma3",
            "--preset",
            "2b",
            "--out",
        ])
        .arg(tmp("no.gguf"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("2b"));
}

#[test]
fn inspect_rejects_a_non_gguf_file() {
    let p = tmp("not.gguf");
    std::fs::write(&p, b"GGML this is not a gguf file at all").unwrap();
    let out = bin().arg("inspect").arg(&p).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("BadModel") && err.contains("BadMagic"),
        "{err}"
    );
}

#[test]
fn inspect_real_model() {
    // The shared rule: a missing model fails the test unless GEMMA_WEB_SKIP_MODEL_TESTS=1.
    let Some(p) = reference::real_model() else {
        return;
    };
    let (ok, v) = inspect_json(&p);
    assert!(ok, "{v}");
    // The definition of done.
    assert_eq!(v["architecture"], "gemma3");
    let c = &v["config"];
    assert_eq!(
        [
            &c["n_layers"],
            &c["d_model"],
            &c["n_heads"],
            &c["n_kv_heads"],
            &c["head_dim"],
            &c["sliding_window"],
            &c["vocab"]
        ],
        [18, 640, 4, 1, 256, 512, 262_144]
            .map(serde_json::Value::from)
            .iter()
            .collect::<Vec<_>>()[..]
    );
    assert_eq!(v["inventory"], "ok");
    assert_eq!(v["file_bytes"], 253_113_024u64);
    let q8 = v["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "Q8_0")
        .unwrap();
    assert!(q8["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "token_embd.weight"));
}
