//! Embeds every `shaders/*.wgsl` file into the library as `(name, source)` pairs, so adding a
//! kernel means adding a file, not editing a table that several people change at once.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = manifest.join("..").join("shaders");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) == Some("wgsl") {
                if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                    println!("cargo:rerun-if-changed={}", path.display());
                    names.push((stem.to_string(), path.clone()));
                }
            }
        }
    }
    names.sort();
    let mut out = String::from("/// Every WGSL file of `shaders/`, by file stem, sorted.\npub const SHADERS: &[(&str, &str)] = &[\n");
    for (name, path) in &names {
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out_dir.join("shaders.rs"), out) {
        panic!("cannot write shaders.rs: {e}");
    }
}
