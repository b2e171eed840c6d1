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

    use clap::{Args, Parser, Subcommand};
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
            Command::Tokenize(args) => tokenize(args),
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
}
