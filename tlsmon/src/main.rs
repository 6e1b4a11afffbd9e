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
