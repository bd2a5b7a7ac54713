//! The `cdc-relay` binary: CLI parsing and process exit codes only (anyhow lives here).
//!
//! Every subcommand delegates to the library; nothing here holds relay logic.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cdc-relay",
    version,
    about = "Kafka CDC → DynamoDB relay that never loses or regresses data"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validates a config file (with CDC_RELAY__* overrides); prints every problem.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::CheckConfig { file } => match cdc_relay::config::Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {} problem(s)", file.display(), e.problems().len());
                for p in e.problems() {
                    eprintln!("  - {p}");
                }
                ExitCode::from(2)
            }
        },
    }
}
