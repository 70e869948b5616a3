//! `visionfleet-operator`: reconciles VisionModels into inference-agent DaemonSets.

use std::io::Write;

use clap::{Parser, Subcommand};

use visionfleet_operator::crd;

/// Kubernetes operator that rolls VisionModels out to edge nodes.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the VisionModel CustomResourceDefinition as YAML.
    Crd,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();

    match cli.command {
        Command::Crd => {
            let yaml = crd::render()?;
            std::io::stdout().write_all(yaml.as_bytes())?;
        }
    }
    Ok(())
}
