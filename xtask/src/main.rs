//! Project tasks: `cargo xtask <command>`.

mod fuzz;

use clap::{Parser, Subcommand};

/// tlsmon's project tasks.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run each cargo-fuzz target for a bounded time (nightly; installs cargo-fuzz if missing).
    Fuzz(fuzz::FuzzArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Fuzz(args) => fuzz::run(args),
    }
}
