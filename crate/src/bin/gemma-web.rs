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

    use std::io::Write;
    use std::time::Instant;

    use clap::{Args, Parser, Subcommand, ValueEnum};
    use gemma_web::gpu::attention::KvDtype;
    use gemma_web::gpu::{Gpu, GpuOptions};
    use gemma_web::model::generate::chat_turn_ids;
    use gemma_web::model::{
        Backend, CpuModel, Engine, FileSource, GenerateOptions, Head, Model, ModelOptions, Output,
        Sampler, SamplingParams, Session,
    };
    use gemma_web::tokenizer::{GemmaTokenizer, StreamDecoder};
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
        /// Generate text from a prompt, streaming it to stdout.
        Generate(GenerateArgs),
        /// Run a text through the model once: per-position negative log-likelihood and top-5.
        Score(ScoreArgs),
        /// Load time, prefill and decode speed, decode against the streaming-read roofline.
        Bench(BenchArgs),
    }

    /// Where and how to load the model.
    #[derive(Args)]
    struct ModelArgs {
        /// A Gemma 1/2/3 .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// Positions of the KV cache (capped by the model's context).
        #[arg(long, default_value_t = gemma_web::model::gemma::DEFAULT_CONTEXT)]
        context: u32,
        /// Prompt tokens per prefill block.
        #[arg(long, default_value_t = gemma_web::model::gemma::DEFAULT_PREFILL_CHUNK)]
        prefill_chunk: u32,
        /// Open the device at WebGPU's default limits (as a browser would) instead of the adapter's.
        #[arg(long)]
        default_limits: bool,
        /// Where the forward pass runs: the GPU (WebGPU kernels) or the host CPU.
        #[arg(long, value_enum, default_value_t = BackendArg::Gpu)]
        backend: BackendArg,
        /// CPU backend: threads of the matrix products (default: the physical cores).
        #[arg(long)]
        threads: Option<usize>,
        /// GPU backend: the KV cache's element type; auto is f16 where the adapter has
        /// shader-f16, else f32.
        #[arg(long, value_enum, default_value_t = KvArg::Auto)]
        kv_cache: KvArg,
    }

    #[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
    enum KvArg {
        Auto,
        F32,
        F16,
    }

    #[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
    enum BackendArg {
        Gpu,
        Cpu,
    }

    #[derive(Args)]
    struct GenerateArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// The prompt. With --chat, each --prompt is one user turn of the same conversation
        /// (the KV cache of earlier turns is reused).
        #[arg(long, required = true)]
        prompt: Vec<String>,
        /// Wrap the prompt in Gemma's chat format and stop at <end_of_turn>.
        #[arg(long)]
        chat: bool,
        #[arg(long, default_value_t = 256)]
        max_tokens: u32,
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        /// 0 keeps all tokens.
        #[arg(long, default_value_t = 64)]
        top_k: u32,
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// End with one JSON line: prompt_ids, generated_ids, text, prefill_tok_s, decode_tok_s.
        #[arg(long)]
        json: bool,
    }

    #[derive(Args)]
    struct ScoreArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// The text (BOS is prepended).
        #[arg(long)]
        text: String,
        /// Print JSON (the only output format).
        #[arg(long)]
        json: bool,
    }

    #[derive(Args)]
    struct BenchArgs {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, default_value_t = 128)]
        prompt_tokens: u32,
        #[arg(long, default_value_t = 64)]
        gen_tokens: u32,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        /// Also time every kernel class with GPU timestamp queries (a second decode run of
        /// --gen-tokens tokens; needs an adapter with timestamp queries).
        #[arg(long)]
        profile: bool,
        /// Sampling of the decode loop; the default 0 is greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f32,
        #[arg(long, default_value_t = 64)]
        top_k: u32,
        #[arg(long, default_value_t = 0.95)]
        top_p: f32,
        #[arg(long, default_value_t = 1.0)]
        repetition_penalty: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
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
        /// The matvec thread layout instead of the adapter's: cpu, gpu, or
        /// WORKGROUP,ROW_THREADS,ROWS_PER_THREAD (e.g. 64,1,1).
        #[arg(long)]
        matvec_shape: Option<String>,
        /// Also time decode attention over long contexts: both layouts where the adapter has two, f32
        /// and (with shader-f16) f16 caches.
        #[arg(long)]
        attention: bool,
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
        /// Test only: append a JSON line per model request (range, status, body bytes sent).
        #[arg(long, hide = true)]
        log_requests: Option<PathBuf>,
        /// Test only: drop the connection once N model body bytes were sent (once).
        #[arg(long, hide = true)]
        fault_after_bytes: Option<u64>,
        /// Test only: flip one bit of the model byte at this offset in every response.
        #[arg(long, hide = true)]
        flip_byte: Option<u64>,
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
            Command::Generate(args) => pollster::block_on(generate(args)),
            Command::Score(args) => pollster::block_on(score(args)),
            Command::Bench(args) => pollster::block_on(bench(args)),
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
        let hooks = gemma_web::serve::TestHooks {
            log_requests: args.log_requests,
            fault_after_bytes: args.fault_after_bytes,
            flip_byte: args.flip_byte,
        };
        runtime.block_on(gemma_web::serve::run(
            args.port,
            args.www,
            args.models,
            hooks,
        ))
    }

    fn random_model(args: RandomModelArgs) -> Result<(), Error> {
        use gemma_web::model::config::Arch;
        use gemma_web::model::random::{write_random_gemma, RandomGemmaSpec};
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

    /// `gemma-web inspect`: the listing is printed either way; an unusable model still fails
    /// the command.
    mod inspect {
        use std::path::Path;

        use gemma_web::gguf::read_header_from_file;
        use gemma_web::summary::Inspection;
        use gemma_web::Error;

        pub fn run(path: &Path, as_json: bool) -> Result<(), Error> {
            let h = read_header_from_file(path)?;
            let file_bytes = std::fs::metadata(path)?.len();
            let report = Inspection::new(&h, file_bytes);
            let file = path.display().to_string();
            if as_json {
                println!("{}", report.to_json(&file));
            } else {
                print!("{}", report.to_text(&file));
            }
            report.into_result()
        }
    }

    fn bench_kernels(args: BenchKernelsArgs) -> Result<(), Error> {
        use gemma_web::bench_kernels::{run, table, BenchOptions};
        let mut types = Vec::new();
        for name in &args.types {
            let ty = gemma_web::gguf::GgmlType::ALL
                .iter()
                .find(|t| t.name().eq_ignore_ascii_case(name.trim()))
                .ok_or_else(|| Error::Unsupported(format!("unknown weight type {name}")))?;
            types.push(*ty);
        }
        let opts = BenchOptions {
            quick: args.quick,
            default_limits: args.default_limits,
            types,
            shape: args
                .matvec_shape
                .as_deref()
                .map(gemma_web::gpu::matvec::MatvecShape::parse)
                .transpose()?,
            attention: args.attention,
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

    async fn load_model(args: &ModelArgs) -> Result<Model, Error> {
        let gpu = Gpu::new(GpuOptions {
            default_limits: args.default_limits,
            ..GpuOptions::default()
        })
        .await?;
        load_with(gpu, args).await
    }

    async fn load_with(gpu: Gpu, args: &ModelArgs) -> Result<Model, Error> {
        let mut src = FileSource::open(&args.model)?;
        let opts = ModelOptions {
            context_len: Some(args.context),
            prefill_chunk: args.prefill_chunk,
            kv_cache: match args.kv_cache {
                KvArg::Auto => None,
                KvArg::F32 => Some(KvDtype::F32),
                KvArg::F16 => Some(KvDtype::F16),
            },
            ..Default::default()
        };
        Model::load(gpu, &mut src, &opts, &mut |_, _| {}).await
    }

    /// The model on the backend `args` asks for.
    async fn load_engine(args: &ModelArgs) -> Result<Engine, Error> {
        match args.backend {
            BackendArg::Gpu => Ok(Engine::Gpu(load_model(args).await?)),
            BackendArg::Cpu => Ok(Engine::Cpu(load_cpu_model(args).await?)),
        }
    }

    async fn load_cpu_model(args: &ModelArgs) -> Result<CpuModel, Error> {
        if let Some(n) = args.threads {
            gemma_web::cpu::set_threads(n);
        }
        let mut src = FileSource::open(&args.model)?;
        let opts = ModelOptions {
            context_len: Some(args.context),
            prefill_chunk: args.prefill_chunk,
            ..Default::default()
        };
        CpuModel::load(&mut src, &opts, &mut |_, _| {}).await
    }

    fn json_line(v: &serde_json::Value) -> Result<(), Error> {
        let text = serde_json::to_string(v).map_err(|e| Error::Io(format!("json: {e}")))?;
        println!("{text}");
        Ok(())
    }

    async fn generate(args: GenerateArgs) -> Result<(), Error> {
        let engine = load_engine(&args.model).await?;
        let tokenizer = GemmaTokenizer::from_gguf(engine.header())?;
        let mut session = Session::new(engine);
        let opts = GenerateOptions {
            max_tokens: args.max_tokens,
            sampling: SamplingParams {
                temperature: args.temperature,
                top_k: args.top_k,
                top_p: args.top_p,
                repetition_penalty: args.repetition_penalty,
                seed: args.seed,
            },
            stop_ids: tokenizer.stop_ids().to_vec(),
        };
        let (mut prompt_ids, mut generated_ids, mut text) = (Vec::new(), Vec::new(), String::new());
        let (mut prefill, mut decode) = (0.0f64, 0.0f64);
        let (mut prefill_tokens, mut decode_tokens) = (0usize, 0usize);
        for (i, prompt) in args.prompt.iter().enumerate() {
            let ids = if args.chat {
                chat_turn_ids(&tokenizer, &session, prompt)?
            } else if i == 0 {
                tokenizer.encode(prompt, true)?
            } else {
                tokenizer.encode(prompt, false)?
            };
            if args.prompt.len() > 1 {
                println!("{}> {prompt}", if args.chat { "user" } else { "prompt" });
            }
            let mut stream = StreamDecoder::new();
            let mut turn_text = String::new();
            let mut out = std::io::stdout();
            let mut failed = None;
            let g = session
                .generate(&ids, &opts, &mut |id| {
                    if tokenizer.is_stop(id) {
                        return true;
                    }
                    match stream.push(&tokenizer, id) {
                        Ok(piece) => {
                            let _ = out.write_all(piece.as_bytes());
                            let _ = out.flush();
                            turn_text.push_str(&piece);
                            true
                        }
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                })
                .await?;
            if let Some(e) = failed {
                return Err(e);
            }
            let tail = stream.finish();
            print!("{tail}");
            println!();
            turn_text.push_str(&tail);
            text.push_str(&turn_text);
            prefill += g.prefill_secs;
            decode += g.decode_secs;
            prefill_tokens += g.prompt_ids.len();
            decode_tokens += g.generated_ids.len().saturating_sub(1);
            prompt_ids.extend_from_slice(&g.prompt_ids);
            generated_ids.extend_from_slice(&g.generated_ids);
        }
        if args.json {
            json_line(&serde_json::json!({
                "prompt_ids": prompt_ids,
                "generated_ids": generated_ids,
                "text": text,
                "prefill_tok_s": prefill_tokens as f64 / prefill.max(1e-9),
                "decode_tok_s": decode_tokens as f64 / decode.max(1e-9),
            }))?;
        }
        Ok(())
    }

    /// Natural log-probability of `id` under `logits` (f64 log-sum-exp).
    fn log_prob(logits: &[f32], id: u32) -> f64 {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = logits
            .iter()
            .map(|&l| (f64::from(l) - f64::from(max)).exp())
            .sum();
        let l = logits
            .get(id as usize)
            .copied()
            .unwrap_or(f32::NEG_INFINITY);
        f64::from(l) - f64::from(max) - sum.ln()
    }

    fn top5(logits: &[f32]) -> Vec<(u32, f32)> {
        let mut best: Vec<(u32, f32)> = Vec::with_capacity(6);
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() {
                continue;
            }
            if best.len() < 5 || best.last().is_some_and(|b| l > b.1) {
                let at = best.iter().position(|b| l > b.1).unwrap_or(best.len());
                best.insert(at, (i as u32, l));
                best.truncate(5);
            }
        }
        best
    }

    async fn score(args: ScoreArgs) -> Result<(), Error> {
        let _ = args.json;
        let mut model = load_engine(&args.model).await?;
        let tokenizer = GemmaTokenizer::from_gguf(model.header())?;
        let ids = tokenizer.encode(&args.text, true)?;
        let mut nll = Vec::with_capacity(ids.len());
        let mut top = Vec::with_capacity(ids.len());
        model
            .score(&ids, 0, &mut |i, logits| {
                if let Some(&next) = ids.get(i + 1) {
                    nll.push(-log_prob(logits, next));
                }
                top.push(top5(logits));
            })
            .await?;
        let mean = nll.iter().sum::<f64>() / (nll.len().max(1) as f64);
        json_line(&serde_json::json!({
            "ids": ids,
            "nll": nll,
            "mean_nll": mean,
            "top5": top,
        }))
    }

    /// Peak and current resident set of this process (VmHWM, VmRSS), bytes; 0 where unknown.
    fn host_memory() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// A prompt of exactly `n` tokens: English text, repeated as needed.
    /// `gen` more tokens must fit the `context` after it.
    fn bench_prompt(
        tokenizer: &GemmaTokenizer,
        n: u32,
        gen: u32,
        context: u32,
    ) -> Result<Vec<u32>, Error> {
        let text = "The history of the sea is the history of trade, of empires and of the people \
                    who sailed between them, reading the stars and the winds. ";
        let mut ids = tokenizer.encode(text, true)?;
        let unit = tokenizer.encode(text, false)?;
        while ids.len() < n as usize && !unit.is_empty() {
            ids.extend_from_slice(&unit);
        }
        ids.truncate(n.max(1) as usize);
        let needed = ids.len() as u64 + u64::from(gen);
        if needed > u64::from(context) {
            return Err(Error::PromptTooLong {
                tokens: needed,
                context: u64::from(context),
            });
        }
        Ok(ids)
    }

    /// `bench --backend cpu`: the same measurements as the GPU bench, on the host.
    async fn bench_cpu(args: BenchArgs) -> Result<(), Error> {
        let (_, rss_before) = host_memory();
        let t = Instant::now();
        let mut model = load_cpu_model(&args.model).await?;
        let load_s = t.elapsed().as_secs_f64();
        let (peak_after_load, rss_after_load) = host_memory();
        let tokenizer = GemmaTokenizer::from_gguf(&model.header)?;
        let ids = bench_prompt(
            &tokenizer,
            args.prompt_tokens,
            args.gen_tokens,
            model.context_len,
        )?;
        // Warm-up: one short block and one decode step (thread pools, page faults).
        model
            .prefill(&ids[..ids.len().min(4)], 0, Head::Argmax)
            .await?;
        let t = Instant::now();
        let mut next = match model.prefill(&ids, 0, Head::Argmax).await? {
            Output::Argmax(id) => id,
            _ => 0,
        };
        let prefill_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..args.gen_tokens {
            let pos = ids.len() as u32 + i;
            next = match model.forward_decode(next, pos, Head::Argmax).await? {
                Output::Argmax(id) => id,
                _ => 0,
            };
        }
        let decode_s = t.elapsed().as_secs_f64();
        let (peak, _) = host_memory();
        let prefill_tok_s = ids.len() as f64 / prefill_s.max(1e-9);
        let decode_tok_s = f64::from(args.gen_tokens) / decode_s.max(1e-9);
        let bytes = model.stats.weight_bytes;
        let c = &model.config;
        let report = serde_json::json!({
            "model": args.model.model.display().to_string(),
            "arch": c.arch.name(),
            "engine": Backend::Cpu.name(),
            "threads": model.threads(),
            "context": model.context_len,
            "prefill_chunk": model.max_chunk(),
            "load_s": load_s,
            "prompt_tokens": ids.len(),
            "gen_tokens": args.gen_tokens,
            "prefill_tok_s": prefill_tok_s,
            "decode_tok_s": decode_tok_s,
            "decode_ms_per_token": 1e3 / decode_tok_s.max(1e-9),
            "weight_bytes_per_token": bytes,
            "effective_gb_s": bytes as f64 * decode_tok_s / 1e9,
            "file_bytes": model.stats.file_bytes,
            "weight_bytes": model.stats.weight_bytes,
            "kv_cache_bytes": model.stats.kv_cache_bytes,
            "activation_bytes": model.stats.activation_bytes,
            "host_rss_before_load_bytes": rss_before,
            "host_peak_after_load_bytes": peak_after_load,
            "host_rss_after_load_bytes": rss_after_load,
            "host_peak_bytes": peak,
        });
        if args.json {
            json_line(&report)
        } else {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Io(format!("json: {e}")))?;
            println!("{text}");
            Ok(())
        }
    }

    /// `bench --profile`'s GPU time per kernel class, per token over `tokens` tokens.
    fn profile_json(
        totals: std::collections::BTreeMap<&'static str, gemma_web::gpu::profile::ClassTime>,
        tokens: f64,
    ) -> serde_json::Value {
        let all: f64 = totals.values().map(|c| c.gpu_ns).sum();
        let classes: serde_json::Map<String, serde_json::Value> = totals
            .iter()
            .map(|(class, c)| {
                (
                    class.to_string(),
                    serde_json::json!({
                        "dispatches_per_token": c.dispatches as f64 / tokens,
                        "gpu_ms_per_token": c.gpu_ns / 1e6 / tokens,
                        "share": c.gpu_ns / all.max(1.0),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "gpu_ms_per_token": all / 1e6 / tokens,
            "classes": classes,
        })
    }

    async fn bench(args: BenchArgs) -> Result<(), Error> {
        if args.model.backend == BackendArg::Cpu {
            return bench_cpu(args).await;
        }
        let (_, rss_before) = host_memory();
        let t = Instant::now();
        let gpu = Gpu::new(GpuOptions {
            default_limits: args.model.default_limits,
            timestamps: args.profile,
            ..GpuOptions::default()
        })
        .await?;
        let mut model = load_with(gpu, &args.model).await?;
        model.gpu.wait_idle()?;
        let load_s = t.elapsed().as_secs_f64();
        let (peak_after_load, rss_after_load) = host_memory();
        let tokenizer = GemmaTokenizer::from_gguf(&model.header)?;
        let sampling = SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            repetition_penalty: args.repetition_penalty,
            seed: args.seed,
        };
        let head = sampling.head();

        let ids = bench_prompt(
            &tokenizer,
            args.prompt_tokens,
            args.gen_tokens,
            model.context_len,
        )?;

        // Warm-up: one short block and one decode step (first-use costs of the driver).
        model
            .prefill(&ids[..ids.len().min(4)], 0, Head::Argmax)
            .await?;
        let mut sampler = Sampler::new(sampling.clone())?;
        let mut context = ids.clone();
        let t = Instant::now();
        let out = model.prefill(&ids, 0, head).await?;
        let mut next = sampler.sample(&out, &context)?;
        let prefill_s = t.elapsed().as_secs_f64();
        let before = model.gpu.counted();
        let layer_before = model.layer_dispatches;
        let t = Instant::now();
        for i in 0..args.gen_tokens {
            let pos = ids.len() as u32 + i;
            let out = model.forward_decode(next, pos, head).await?;
            context.push(next);
            next = sampler.sample(&out, &context)?;
        }
        let decode_s = t.elapsed().as_secs_f64();
        let per = model.gpu.counted().since(&before);
        let layer_dispatches = model.layer_dispatches - layer_before;
        let (peak, _) = host_memory();
        let steps = f64::from(args.gen_tokens.max(1));
        let layers = f64::from(model.config.n_layers.max(1));

        // GPU time per kernel class, in a second prefill and decode run over the same positions.
        let (prefill_profile, profile) = if args.profile {
            model.start_profiling()?;
            model.prefill(&ids, 0, head).await?;
            let prefill = profile_json(
                model.stop_profiling().unwrap_or_default(),
                ids.len().max(1) as f64,
            );
            model.start_profiling()?;
            let mut next = context[ids.len()];
            for i in 0..args.gen_tokens {
                let pos = ids.len() as u32 + i;
                let out = model.forward_decode(next, pos, head).await?;
                next = sampler.sample(&out, &context[..pos as usize + 1])?;
            }
            let decode = profile_json(model.stop_profiling().unwrap_or_default(), steps);
            (prefill, decode)
        } else {
            (serde_json::Value::Null, serde_json::Value::Null)
        };

        let stream_gb_s = gemma_web::bench_kernels::streaming_read_gb_s(
            &model.gpu,
            (256u64 << 20).min(model.gpu.caps.max_binding),
        )
        .await?;
        let prefill_tok_s = ids.len() as f64 / prefill_s.max(1e-9);
        let decode_tok_s = f64::from(args.gen_tokens) / decode_s.max(1e-9);
        let bytes = model.decode_weight_bytes;
        let effective_gb_s = bytes as f64 * decode_tok_s / 1e9;
        let roofline_tok_s = stream_gb_s * 1e9 / bytes as f64;
        let c = &model.config;
        let report = serde_json::json!({
            "model": args.model.model.display().to_string(),
            "arch": c.arch.name(),
            "engine": Backend::Gpu.name(),
            "adapter": model.gpu.caps.adapter_name,
            "backend": model.gpu.caps.backend,
            "tier": model.gpu.caps.tier,
            "default_limits": args.model.default_limits,
            "context": model.context_len,
            "prefill_chunk": model.max_chunk(),
            "load_s": load_s,
            "prompt_tokens": ids.len(),
            "gen_tokens": args.gen_tokens,
            "prefill_tok_s": prefill_tok_s,
            "decode_tok_s": decode_tok_s,
            "decode_ms_per_token": 1e3 / decode_tok_s.max(1e-9),
            "sampling": sampling,
            "head": format!("{head:?}"),
            "dispatches_per_token": per.dispatches as f64 / steps,
            "dispatches_per_layer": layer_dispatches as f64 / steps / layers,
            "submits_per_token": per.submits as f64 / steps,
            "readback_bytes_per_token": per.readback_bytes as f64 / steps,
            "weight_bytes_per_token": bytes,
            "effective_gb_s": effective_gb_s,
            "stream_read_gb_s": stream_gb_s,
            "roofline_tok_s": roofline_tok_s,
            "decode_fraction_of_roofline": decode_tok_s / roofline_tok_s.max(1e-9),
            "file_bytes": model.stats.file_bytes,
            "weight_gpu_bytes": model.stats.weight_gpu_bytes,
            "kv_cache_bytes": model.stats.kv_cache_bytes,
            "kv_cache_type": model.stats.kv_cache_type,
            "host_rss_before_load_bytes": rss_before,
            "host_peak_after_load_bytes": peak_after_load,
            "host_rss_after_load_bytes": rss_after_load,
            "host_peak_bytes": peak,
            "profile": profile,
            "prefill_profile": prefill_profile,
        });
        if args.json {
            json_line(&report)
        } else {
            let text = serde_json::to_string_pretty(&report)
                .map_err(|e| Error::Io(format!("json: {e}")))?;
            println!("{text}");
            Ok(())
        }
    }
}
