//! `visionfleet-agent`: runs a vision model on frames and writes one JSON
//! line per frame on stdout; logs go to stderr.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;
use visionfleet_agent::app;
use visionfleet_agent::cli::{Cli, Command};

/// Log filter when `RUST_LOG` is unset. ONNX Runtime logs every graph
/// transformation at info, so its own messages start at warn.
const DEFAULT_LOG_FILTER: &str = "info,ort=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();

    let result = match cli.command {
        Command::Devices(args) => app::devices(&args),
        Command::Run(args) => run(*args),
        Command::Serve(args) => serve(*args),
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: visionfleet_agent::cli::RunArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(app::run(args)).map(|_| ())
}

fn serve(args: visionfleet_agent::serve::ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(visionfleet_agent::serve::serve(args))
}

fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
