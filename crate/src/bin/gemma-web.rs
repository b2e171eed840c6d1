//! The native `gemma-web` command line: development server and model tools.
//! On wasm32 the crate is a library for the page; this binary is empty there.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    native::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::PathBuf;
    use std::process::ExitCode;

    use clap::{Args, Parser, Subcommand, ValueEnum};
    use gemma_web::Error;

    #[derive(Parser)]
    #[command(
        name = "gemma-web",
        version,
        about = "Gemma language models on WebGPU, natively and in the browser"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    /// One variant per subcommand; each one's arm in `main` calls a function of its own.
    #[derive(Subcommand)]
    enum Command {
        /// Serve the page (www/) and the models folder at /models/ on 127.0.0.1.
        Serve(ServeArgs),
        /// Print the token ids and pieces of TEXT under MODEL's embedded tokenizer.
        Tokenize(TokenizeArgs),
        /// Print a model's architecture, config and tensor table (grouped by type) from its header.
        Inspect(InspectArgs),
        /// Write a random-weight Gemma model (valid quantized blocks) for tests and benchmarks.
        RandomModel(RandomModelArgs),
        /// Measure streaming-read bandwidth and the matvec bandwidth of every weight type.
        BenchKernels(BenchKernelsArgs),
    }

    #[derive(Args)]
    struct BenchKernelsArgs {
        /// Print the report as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Smaller shapes and only Q4_K, Q6_K, Q8_0, Q5_0, F32 (for CPU adapters).
        #[arg(long)]
        quick: bool,
        /// Open the device at WebGPU's default limits instead of the adapter's.
        #[arg(long)]
        default_limits: bool,
        /// Only these types, comma-separated GGUF names (e.g. Q4_K,Q8_0).
        #[arg(long, value_delimiter = ',')]
        types: Vec<String>,
    }

    #[derive(Args)]
    struct InspectArgs {
        /// A .gguf model (only its header is read).
        model: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    }

    #[derive(Clone, Copy, ValueEnum)]
    enum ArchArg {
        Gemma,
        Gemma2,
        Gemma3,
    }

    #[derive(Args)]
    struct RandomModelArgs {
        #[arg(long, value_enum)]
        arch: ArchArg,
        /// tiny (any arch, a few MB), 2b (gemma, gemma2), 270m or 1b (gemma3).
        #[arg(long, default_value = "tiny")]
        preset: String,
        /// Output .gguf file.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    }

    #[derive(Args)]
    struct ServeArgs {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Folder of .gguf models, served at /models/.
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Folder of the page, served at /.
        #[arg(long, default_value = "www")]
        www: PathBuf,
    }

    #[derive(Args)]
    struct TokenizeArgs {
        /// A .gguf model (only its header is read).
        model: PathBuf,
        /// The text; control tokens written literally (`<start_of_turn>`) become their ids.
        text: String,
        /// One JSON object: ids, pieces, and the time to build the tokenizer.
        #[arg(long)]
        json: bool,
        /// Do not prepend BOS.
        #[arg(long)]
        no_bos: bool,
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Serve(args) => serve(args),
            Command::BenchKernels(args) => bench_kernels(args),
            Command::Tokenize(args) => tokenize(args),
            Command::Inspect(args) => inspect::run(&args.model, args.json),
            Command::RandomModel(args) => random_model(args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gemma-web: {} error: {e}", e.code());
                ExitCode::FAILURE
            }
        }
    }

    fn serve(args: ServeArgs) -> Result<(), Error> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(gemma_web::serve::run(args.port, args.www, args.models))
    }

    fn random_model(args: RandomModelArgs) -> Result<(), Error> {
        use gemma_web::gguf::writer::{write_random_gemma, RandomGemmaSpec};
        use gemma_web::model::config::Arch;
        let arch = match args.arch {
            ArchArg::Gemma => Arch::Gemma,
            ArchArg::Gemma2 => Arch::Gemma2,
            ArchArg::Gemma3 => Arch::Gemma3,
        };
        let spec = RandomGemmaSpec {
            seed: args.seed,
            ..RandomGemmaSpec::preset(arch, &args.preset)?
        };
        let start = std::time::Instant::now();
        let file = std::fs::File::create(&args.out)
            .map_err(|e| Error::Io(format!("{}: {e}", args.out.display())))?;
        let bytes = write_random_gemma(&spec, std::io::BufWriter::with_capacity(1 << 20, file))?;
        let out = serde_json::json!({
            "out": args.out.display().to_string(),
            "arch": arch.name(),
            "preset": args.preset,
            "seed": args.seed,
            "bytes": bytes,
            "seconds": start.elapsed().as_secs_f64(),
        });
        println!("{out}");
        Ok(())
    }

    fn tokenize(args: TokenizeArgs) -> Result<(), Error> {
        let header = gemma_web::gguf::read_header_from_file(&args.model)?;
        let start = std::time::Instant::now();
        let tokenizer = gemma_web::tokenizer::GemmaTokenizer::from_gguf(&header)?;
        let build_ms = start.elapsed().as_secs_f64() * 1e3;
        let ids = tokenizer.encode(&args.text, !args.no_bos)?;
        let pieces: Vec<&str> = ids
            .iter()
            .map(|&id| tokenizer.id_to_piece(id).unwrap_or(""))
            .collect();
        if args.json {
            let out = serde_json::json!({
                "ids": ids,
                "pieces": pieces,
                "count": ids.len(),
                "vocab_size": tokenizer.vocab_size(),
                "merges": tokenizer.merge_count(),
                "build_ms": build_ms,
            });
            println!("{out}");
        } else {
            for (id, piece) in ids.iter().zip(&pieces) {
                println!("{id:>7}  {piece:?}");
            }
            eprintln!(
                "{} tokens (vocabulary {}, {} merges, built in {build_ms:.0} ms)",
                ids.len(),
                tokenizer.vocab_size(),
                tokenizer.merge_count()
            );
        }
        Ok(())
    }

    /// `gemma-web inspect`.
    mod inspect {
        use std::collections::BTreeMap;
        use std::path::Path;

        use gemma_web::gguf::{read_header_from_file, GgmlType, GgufHeader, MetaValue, TensorInfo};
        use gemma_web::model::config::{check_inventory, GemmaConfig};
        use gemma_web::Error;
        use serde_json::{json, Value};

        pub fn run(path: &Path, as_json: bool) -> Result<(), Error> {
            let h = read_header_from_file(path)?;
            let file_bytes = std::fs::metadata(path)?.len();
            let config = GemmaConfig::from_header(&h);
            let inventory = match &config {
                Ok(c) => check_inventory(&h, c),
                Err(_) => Ok(()),
            };
            let mut groups: BTreeMap<GgmlType, Vec<&TensorInfo>> = BTreeMap::new();
            for t in &h.tensors {
                groups.entry(t.ty).or_default().push(t);
            }
            if as_json {
                print_json(path, file_bytes, &h, &config, &inventory, &groups);
            } else {
                print_text(path, file_bytes, &h, &config, &inventory, &groups);
            }
            // The listing is printed either way; an unusable model still fails the command.
            config.and(inventory)
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

        fn print_json(
            path: &Path,
            file_bytes: u64,
            h: &GgufHeader,
            config: &Result<GemmaConfig, Error>,
            inventory: &Result<(), Error>,
            groups: &BTreeMap<GgmlType, Vec<&TensorInfo>>,
        ) {
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
                "file": path.display().to_string(),
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
            println!("{out}");
        }

        fn mb(b: u64) -> String {
            format!("{:.2} MB", b as f64 / 1e6)
        }

        fn print_text(
            path: &Path,
            file_bytes: u64,
            h: &GgufHeader,
            config: &Result<GemmaConfig, Error>,
            inventory: &Result<(), Error>,
            groups: &BTreeMap<GgmlType, Vec<&TensorInfo>>,
        ) {
            println!(
                "{}: {} bytes ({})",
                path.display(),
                file_bytes,
                mb(file_bytes)
            );
            println!(
                "GGUF v{}, {} metadata keys, {} tensors, alignment {}, data at byte {}",
                h.version,
                h.metadata.len(),
                h.tensors.len(),
                h.alignment,
                h.data_offset
            );
            println!("architecture: {}", h.architecture().unwrap_or("(none)"));
            if let Some(name) = h.get_str("general.name") {
                println!("name: {name}");
            }
            match config {
                Ok(c) => {
                    println!("config:");
                    println!(
                        "  layers {}, d_model {}, ffn {}",
                        c.n_layers, c.d_model, c.ffn
                    );
                    println!(
                        "  heads {}, kv heads {}, head_dim {}, query scale {}",
                        c.n_heads, c.n_kv_heads, c.head_dim, c.query_scale
                    );
                    println!(
                        "  vocab {}, context {}, rms eps {:e}",
                        c.vocab, c.context_len, c.eps
                    );
                    match c.sliding_window {
                        Some(w) => {
                            let global: Vec<String> = (0..c.n_layers)
                                .filter(|&l| !c.is_sliding(l))
                                .map(|l| l.to_string())
                                .collect();
                            println!(
                                "  sliding window {w} (pattern {}; global layers: {})",
                                c.sliding_pattern,
                                global.join(", ")
                            );
                        }
                        None => println!("  sliding window: none"),
                    }
                    println!(
                        "  rope base: global {}, local {}",
                        c.rope_base_global, c.rope_base_local
                    );
                    let cap = |x: Option<f32>| x.map_or("none".to_string(), |v| v.to_string());
                    println!(
                        "  soft-cap: attention {}, final {}",
                        cap(c.attn_softcap),
                        cap(c.final_softcap)
                    );
                }
                Err(e) => println!("config: {} error: {e}", e.code()),
            }
            match inventory {
                Ok(()) if config.is_ok() => println!("inventory: ok"),
                Ok(()) => {}
                Err(e) => println!("inventory: {} error: {e}", e.code()),
            }
            println!("metadata:");
            for (k, v) in &h.metadata {
                println!("  {k} = {}", meta_text(v));
            }
            let total = h.tensor_bytes();
            println!("tensors by type:");
            for (ty, ts) in groups {
                let bytes: u64 = ts.iter().map(|t| t.bytes).sum();
                println!(
                    "  {:<5} {:>4} tensors {:>14} bytes ({:>5.1}%)",
                    ty.name(),
                    ts.len(),
                    bytes,
                    100.0 * bytes as f64 / total.max(1) as f64
                );
                for t in ts {
                    println!(
                        "      {:<36} {:<16} {:>12} bytes",
                        t.name,
                        format!("{:?}", t.dims),
                        t.bytes
                    );
                }
            }
            println!(
                "total: {} tensors, {} bytes ({}) of a {} file",
                h.tensors.len(),
                total,
                mb(total),
                mb(file_bytes)
            );
        }
    }

    fn bench_kernels(args: BenchKernelsArgs) -> Result<(), Error> {
        use gemma_web::bench_kernels::{run, table, BenchOptions, ALL_TYPES};
        let mut types = Vec::new();
        for name in &args.types {
            let ty = ALL_TYPES
                .iter()
                .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| Error::Unsupported(format!("unknown weight type {name}")))?;
            types.push(*ty);
        }
        let opts = BenchOptions {
            quick: args.quick,
            default_limits: args.default_limits,
            types,
        };
        let report = pollster::block_on(run(&opts))?;
        if args.json {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Unsupported(format!("json: {e}")))?;
            println!("{text}");
        } else {
            print!("{}", table(&report));
        }
        Ok(())
    }
}
