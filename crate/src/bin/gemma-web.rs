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

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Serve(args) => serve(args),
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
}
