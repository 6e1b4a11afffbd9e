//! The `tlsmon` binary: parse the command line, run the command, report errors.

use std::process::ExitCode;

use clap::Parser;

use tlsmon::cli::{Cli, Command};
use tlsmon::commands;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Analyze(args) => commands::analyze::run(args),
        Command::Compare(args) => commands::compare::run(args),
        Command::Run(args) => with_runtime(|| commands::run::run(args)),
        Command::Watch(args) => with_runtime(|| commands::watch::watch(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One readable line (with its causes), never a panic or a bare errno.
            eprintln!("tlsmon: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The live commands need tokio; the offline ones do not pay for it.
fn with_runtime<F, Fut>(command: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| anyhow::anyhow!("starting the async runtime: {err}"))?;
    runtime.block_on(command())
}
