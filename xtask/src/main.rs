//! Project tasks: `cargo xtask <command>`.

mod bench;
mod fuzz;
mod packages;
mod run;
mod setup;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

/// tlsmon's project tasks.
#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install bpf-linker built against rustc's LLVM (skipped when it already works).
    Setup,
    /// Set up if needed, build tlsmon (release) and run it as root with ARGS.
    Run {
        /// Arguments for tlsmon, after `--` (e.g. `cargo xtask run -- run -i eth0`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up if needed (bpf-linker, and the apt and pip packages the tests drive), then run the
    /// whole test suite as root (`cargo test --workspace`).
    Test {
        /// Extra arguments for cargo test (e.g. `-- --nocapture`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install only the apt and pip packages the test suite needs (what `test` does first).
    TestDeps,
    /// Run each cargo-fuzz target for a bounded time (nightly; installs cargo-fuzz if missing).
    Fuzz(fuzz::FuzzArgs),
    /// Run benchmarks (datapath, analyze, ...) and print a markdown report for BENCHMARKS.md.
    Bench(bench::BenchArgs),
}

fn workspace_root() -> PathBuf {
    // xtask/ lives in the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Task::Setup => setup::run(),
        Task::Run { args } => run::run(&workspace_root(), args),
        Task::Test { args } => run::test(&workspace_root(), args),
        Task::TestDeps => packages::ensure_test_packages(&workspace_root()),
        Task::Fuzz(args) => fuzz::run(args),
        Task::Bench(args) => bench::run(&workspace_root(), args),
    }
}
