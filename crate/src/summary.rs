//! What a model file holds, for people: the page shows it (serialized to JS through `web.rs`) and
//! native tools can print it. Field names are the JS API's (camelCase), independent of the Rust names.
//! [`Inspection`] is the fuller listing `gemma-web inspect` prints (every key and tensor, as text or
//! JSON with the Rust field names).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{json, Value};

use crate::gguf::{GgmlType, GgufHeader, MetaValue, TensorInfo};
use crate::model::config::{check_inventory, GemmaConfig};
use crate::Error;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderSummary {
    /// GGUF version (2 or 3).
    pub version: u32,
    /// `general.architecture`: gemma, gemma2 or gemma3.
    pub architecture: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    pub file_bytes: u64,
    /// Where the tensor data starts: the header's size.
    pub data_offset: u64,
    pub tensor_bytes: u64,
    pub metadata_count: usize,
    pub config: ConfigSummary,
    /// In file order.
    pub tensors: Vec<TensorSummary>,
    /// One entry per tensor type, most bytes first.
    pub types: Vec<TypeTotal>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSummary {
    pub layers: u32,
    pub d_model: u32,
    pub ffn: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    #[serde(serialize_with = "shortest")]
    pub eps: f32,
    #[serde(serialize_with = "shortest")]
    pub rope_base_global: f32,
    #[serde(serialize_with = "shortest")]
    pub rope_base_local: f32,
    /// `None`: every layer attends to the whole context.
    pub sliding_window: Option<u32>,
    pub sliding_pattern: u32,
    /// The layers that attend to the whole context (all of them without a window).
    pub global_layers: Vec<u32>,
    #[serde(serialize_with = "shortest_opt")]
    pub attn_softcap: Option<f32>,
    #[serde(serialize_with = "shortest_opt")]
    pub final_softcap: Option<f32>,
    #[serde(serialize_with = "shortest")]
    pub query_scale: f32,
    pub context_length: u32,
    pub vocab: u32,
}

/// An f32 as the f64 nearest its shortest decimal form: 1e-6 reaches JS as 0.000001, not as
/// 9.999999974752427e-7 (what the f32 itself widens to).
fn shortest<S: serde::Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(v.to_string().parse().unwrap_or(f64::from(*v)))
}

fn shortest_opt<S: serde::Serializer>(v: &Option<f32>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => shortest(v, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TensorSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// ggml order: row length first.
    pub dims: Vec<u64>,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeTotal {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub count: usize,
    pub bytes: u64,
}

impl HeaderSummary {
    /// Summarizes a parsed header; fails like `GemmaConfig::from_header` on a model we cannot describe.
    pub fn new(header: &GgufHeader, file_bytes: u64) -> Result<Self, Error> {
        let config = GemmaConfig::from_header(header)?;
        let tensors: Vec<TensorSummary> = header
            .tensors
            .iter()
            .map(|t| TensorSummary {
                name: t.name.clone(),
                ty: t.ty.name(),
                dims: t.dims.clone(),
                bytes: t.bytes,
            })
            .collect();
        let mut types: Vec<TypeTotal> = Vec::new();
        for t in &tensors {
            match types.iter_mut().find(|g| g.ty == t.ty) {
                Some(g) => {
                    g.count += 1;
                    g.bytes = g.bytes.saturating_add(t.bytes);
                }
                None => types.push(TypeTotal {
                    ty: t.ty,
                    count: 1,
                    bytes: t.bytes,
                }),
            }
        }
        types.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ty.cmp(b.ty)));
        Ok(HeaderSummary {
            version: header.version,
            architecture: config.arch.name().to_string(),
            name: header.get_str("general.name").map(str::to_string),
            file_bytes,
            data_offset: header.data_offset,
            tensor_bytes: header.tensor_bytes(),
            metadata_count: header.metadata.len(),
            config: ConfigSummary {
                layers: config.n_layers,
                d_model: config.d_model,
                ffn: config.ffn,
                heads: config.n_heads,
                kv_heads: config.n_kv_heads,
                head_dim: config.head_dim,
                eps: config.eps,
                rope_base_global: config.rope_base_global,
                rope_base_local: config.rope_base_local,
                sliding_window: config.sliding_window,
                sliding_pattern: config.sliding_pattern,
                global_layers: (0..config.n_layers)
                    .filter(|&l| !config.is_sliding(l))
                    .collect(),
                attn_softcap: config.attn_softcap,
                final_softcap: config.final_softcap,
                query_scale: config.query_scale,
                context_length: config.context_len,
                vocab: config.vocab,
            },
            tensors,
            types,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// `gemma-web inspect`
// ---------------------------------------------------------------------------------------------

/// What `gemma-web inspect` shows of a file: every metadata key, the config and the inventory
/// check (or their errors), and the tensors grouped by type, as text for people or as JSON.
pub struct Inspection<'a> {
    pub header: &'a GgufHeader,
    pub file_bytes: u64,
    pub config: Result<GemmaConfig, Error>,
    /// Not checked (`Ok`) when there is no config.
    pub inventory: Result<(), Error>,
    groups: BTreeMap<GgmlType, Vec<&'a TensorInfo>>,
}

impl<'a> Inspection<'a> {
    pub fn new(header: &'a GgufHeader, file_bytes: u64) -> Self {
        let config = GemmaConfig::from_header(header);
        let inventory = match &config {
            Ok(c) => check_inventory(header, c),
            Err(_) => Ok(()),
        };
        let mut groups: BTreeMap<GgmlType, Vec<&TensorInfo>> = BTreeMap::new();
        for t in &header.tensors {
            groups.entry(t.ty).or_default().push(t);
        }
        Inspection {
            header,
            file_bytes,
            config,
            inventory,
            groups,
        }
    }

    /// The config's error, else the inventory's: whether the model can run.
    pub fn into_result(self) -> Result<(), Error> {
        self.config.and(self.inventory)
    }

    /// One JSON object; `file` is the path shown. Long arrays (the vocabulary) show their length
    /// and first items.
    pub fn to_json(&self, file: &str) -> Value {
        let (h, file_bytes, config, inventory, groups) = (
            self.header,
            self.file_bytes,
            &self.config,
            &self.inventory,
            &self.groups,
        );
        let metadata: serde_json::Map<String, Value> = h
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), meta_json(v)))
            .collect();
        let types: Vec<Value> = groups
            .iter()
            .map(|(ty, ts)| {
                json!({
                    "type": ty.name(),
                    "count": ts.len(),
                    "bytes": ts.iter().map(|t| t.bytes).sum::<u64>(),
                    "tensors": ts.iter().map(|t| json!({
                        "name": t.name, "dims": t.dims, "offset": t.offset, "bytes": t.bytes,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let err = |e: &Error| json!({"code": e.code(), "message": e.to_string()});
        let out = json!({
            "file": file,
            "file_bytes": file_bytes,
            "version": h.version,
            "alignment": h.alignment,
            "data_offset": h.data_offset,
            "architecture": h.architecture(),
            "config": match config { Ok(c) => json!(c), Err(e) => json!({"error": err(e)}) },
            "inventory": match inventory { Ok(()) => json!("ok"), Err(e) => json!({"error": err(e)}) },
            "tensor_count": h.tensors.len(),
            "tensor_bytes": h.tensor_bytes(),
            "types": types,
            "metadata": metadata,
        });
        out
    }

    /// The listing for people, lines ending in newlines; `file` is the path shown.
    pub fn to_text(&self, file: &str) -> String {
        let (h, file_bytes, config, inventory, groups) = (
            self.header,
            self.file_bytes,
            &self.config,
            &self.inventory,
            &self.groups,
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        macro_rules! say {
            ($($arg:tt)*) => {{
                let _ = writeln!(out, $($arg)*);
            }};
        }
        say!("{}: {} bytes ({})", file, file_bytes, mb(file_bytes));
        say!(
            "GGUF v{}, {} metadata keys, {} tensors, alignment {}, data at byte {}",
            h.version,
            h.metadata.len(),
            h.tensors.len(),
            h.alignment,
            h.data_offset
        );
        say!("architecture: {}", h.architecture().unwrap_or("(none)"));
        if let Some(name) = h.get_str("general.name") {
            say!("name: {name}");
        }
        match config {
            Ok(c) => {
                say!("config:");
                say!(
                    "  layers {}, d_model {}, ffn {}",
                    c.n_layers,
                    c.d_model,
                    c.ffn
                );
                say!(
                    "  heads {}, kv heads {}, head_dim {}, query scale {}",
                    c.n_heads,
                    c.n_kv_heads,
                    c.head_dim,
                    c.query_scale
                );
                say!(
                    "  vocab {}, context {}, rms eps {:e}",
                    c.vocab,
                    c.context_len,
                    c.eps
                );
                match c.sliding_window {
                    Some(w) => {
                        let global: Vec<String> = (0..c.n_layers)
                            .filter(|&l| !c.is_sliding(l))
                            .map(|l| l.to_string())
                            .collect();
                        say!(
                            "  sliding window {w} (pattern {}; global layers: {})",
                            c.sliding_pattern,
                            global.join(", ")
                        );
                    }
                    None => say!("  sliding window: none"),
                }
                say!(
                    "  rope base: global {}, local {}",
                    c.rope_base_global,
                    c.rope_base_local
                );
                let cap = |x: Option<f32>| x.map_or("none".to_string(), |v| v.to_string());
                say!(
                    "  soft-cap: attention {}, final {}",
                    cap(c.attn_softcap),
                    cap(c.final_softcap)
                );
            }
            Err(e) => say!("config: {} error: {e}", e.code()),
        }
        match inventory {
            Ok(()) if config.is_ok() => say!("inventory: ok"),
            Ok(()) => {}
            Err(e) => say!("inventory: {} error: {e}", e.code()),
        }
        say!("metadata:");
        for (k, v) in &h.metadata {
            say!("  {k} = {}", meta_text(v));
        }
        let total = h.tensor_bytes();
        say!("tensors by type:");
        for (ty, ts) in groups {
            let bytes: u64 = ts.iter().map(|t| t.bytes).sum();
            say!(
                "  {:<5} {:>4} tensors {:>14} bytes ({:>5.1}%)",
                ty.name(),
                ts.len(),
                bytes,
                100.0 * bytes as f64 / total.max(1) as f64
            );
            for t in ts {
                say!(
                    "      {:<36} {:<16} {:>12} bytes",
                    t.name,
                    format!("{:?}", t.dims),
                    t.bytes
                );
            }
        }
        say!(
            "total: {} tensors, {} bytes ({}) of a {} file",
            h.tensors.len(),
            total,
            mb(total),
            mb(file_bytes)
        );
        out
    }
}

fn meta_json(v: &MetaValue) -> Value {
    match v {
        MetaValue::U8(x) => json!(x),
        MetaValue::I8(x) => json!(x),
        MetaValue::U16(x) => json!(x),
        MetaValue::I16(x) => json!(x),
        MetaValue::U32(x) => json!(x),
        MetaValue::I32(x) => json!(x),
        MetaValue::U64(x) => json!(x),
        MetaValue::I64(x) => json!(x),
        MetaValue::F32(x) => json!(x),
        MetaValue::F64(x) => json!(x),
        MetaValue::Bool(x) => json!(x),
        MetaValue::Str(x) => json!(x),
        // Vocabularies are hundreds of thousands long: their length and first items are enough.
        MetaValue::Array(a) if a.len() > 16 => json!({
            "array_len": a.len(),
            "first": a.iter().take(8).map(meta_json).collect::<Vec<_>>(),
        }),
        MetaValue::Array(a) => Value::Array(a.iter().map(meta_json).collect()),
    }
}

fn meta_text(v: &MetaValue) -> String {
    match v {
        MetaValue::Str(s) if s.chars().count() > 80 => {
            format!(
                "{:?}... ({} bytes)",
                s.chars().take(60).collect::<String>(),
                s.len()
            )
        }
        MetaValue::Array(a) if a.len() > 8 => {
            let first: Vec<String> = a.iter().take(6).map(meta_text).collect();
            format!("[{}, ...] ({} items)", first.join(", "), a.len())
        }
        MetaValue::Array(a) => {
            format!(
                "[{}]",
                a.iter().map(meta_text).collect::<Vec<_>>().join(", ")
            )
        }
        _ => meta_json(v).to_string(),
    }
}

fn mb(b: u64) -> String {
    format!("{:.2} MB", b as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::{parse_header, HeaderParse};
    use crate::model::config::Arch;
    use crate::model::random::{random_gemma_bytes, RandomGemmaSpec};

    fn summarize(spec: &RandomGemmaSpec) -> HeaderSummary {
        let bytes = random_gemma_bytes(spec).unwrap();
        let len = bytes.len() as u64;
        match parse_header(&bytes, len).unwrap() {
            HeaderParse::Complete(header) => HeaderSummary::new(&header, len).unwrap(),
            HeaderParse::NeedMore { at_least } => {
                panic!("whole file given, parser wants {at_least}")
            }
        }
    }

    fn spec(arch: Arch, n_layers: u32) -> RandomGemmaSpec {
        RandomGemmaSpec {
            n_layers,
            ..RandomGemmaSpec::tiny(arch)
        }
    }

    #[test]
    fn global_layers_follow_each_generation() {
        // GEMMA.md: Gemma 1 has no window; Gemma 2 slides on even layers; Gemma 3 on layers with il % 6 != 5.
        let g1 = summarize(&spec(Arch::Gemma, 3));
        assert_eq!(g1.config.sliding_window, None);
        assert_eq!(g1.config.global_layers, [0, 1, 2]);
        assert_eq!(
            summarize(&spec(Arch::Gemma2, 5)).config.global_layers,
            [1, 3]
        );
        assert_eq!(
            summarize(&spec(Arch::Gemma3, 13)).config.global_layers,
            [5, 11]
        );
    }

    #[test]
    fn tensors_keep_file_order_and_type_totals_add_up() {
        let s = summarize(&spec(Arch::Gemma3, 7));
        assert_eq!(s.architecture, "gemma3");
        assert_eq!(s.config.layers, 7);
        assert!(s.data_offset > 0 && s.data_offset < s.file_bytes);
        assert_eq!(
            s.tensor_bytes,
            s.tensors.iter().map(|t| t.bytes).sum::<u64>()
        );
        assert_eq!(
            s.types.iter().map(|g| g.count).sum::<usize>(),
            s.tensors.len()
        );
        for g in &s.types {
            let of_type = s.tensors.iter().filter(|t| t.ty == g.ty);
            assert_eq!(g.count, of_type.clone().count(), "{}", g.ty);
            assert_eq!(g.bytes, of_type.map(|t| t.bytes).sum::<u64>(), "{}", g.ty);
        }
        assert!(s.types.windows(2).all(|w| w[0].bytes >= w[1].bytes));
        // The tiny model mixes several quant types (the 270M file's recipe).
        assert!(s.types.len() >= 3, "{:?}", s.types);
    }

    #[test]
    fn serializes_with_the_js_field_names() {
        let v = serde_json::to_value(summarize(&spec(Arch::Gemma2, 2))).unwrap();
        for key in [
            "version",
            "architecture",
            "fileBytes",
            "dataOffset",
            "tensorBytes",
            "metadataCount",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        let c = &v["config"];
        for key in [
            "dModel",
            "kvHeads",
            "headDim",
            "slidingWindow",
            "globalLayers",
            "attnSoftcap",
            "contextLength",
        ] {
            assert!(c.get(key).is_some(), "config.{key}");
        }
        assert_eq!(c["attnSoftcap"], 50.0);
        assert!(v["tensors"][0]["type"].is_string());
        assert!(v["types"][0]["type"].is_string());
    }
}
