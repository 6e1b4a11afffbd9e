//! `cargo xtask bench`: the benchmarks behind BENCHMARKS.md as one command. Each
//! part lives in a file of its own and returns a markdown section; the run
//! prints them under one header naming the machine and the commit, ready to
//! paste into BENCHMARKS.md.
//!
//! A part is a file of its own here with `run(&Bench, &Args) -> Result<String>`
//! (its options a clap `Args` struct flattened into [`BenchArgs`]), a variant of
//! [`Part`] and one arm in [`run`].

mod analyze;
mod daemon;
mod datapath;
mod live;
mod machine;
mod replay;

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

/// One benchmark of `cargo xtask bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Part {
    /// The kernel classifier's cost: iperf3 throughput with and without tlsmon, and
    /// ns per run next to a no-op classifier on both hooks (needs root).
    Datapath,
    /// `tlsmon analyze` against tshark on a large generated capture.
    Analyze,
    /// The daemon's CPU against s_server's for real TLS 1.3 handshakes (needs root).
    Daemon,
    /// A large generated capture replayed live at increasing rates (needs root).
    Replay,
}

/// Options of `cargo xtask bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Parts to run (repeat the flag, or comma-separated); all when absent.
    #[arg(long = "part", value_enum, value_delimiter = ',')]
    pub parts: Vec<Part>,
    #[command(flatten)]
    pub datapath: datapath::DatapathArgs,
    #[command(flatten)]
    pub analyze: analyze::AnalyzeArgs,
    #[command(flatten)]
    pub daemon: daemon::DaemonArgs,
    #[command(flatten)]
    pub replay: replay::ReplayArgs,
}

/// Everything a part needs to know about where it runs.
pub struct Bench<'a> {
    /// The workspace root.
    pub root: &'a Path,
}

impl Bench<'_> {
    /// `cargo` as the xtask was started with, in the workspace root.
    pub fn cargo(&self) -> Command {
        let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cargo.current_dir(self.root);
        cargo
    }
}

/// Runs `parts` (all when empty) and prints one markdown report.
pub fn run(root: &Path, args: BenchArgs) -> Result<()> {
    let parts = if args.parts.is_empty() {
        Part::value_variants().to_vec()
    } else {
        args.parts.clone()
    };
    let bench = Bench { root };
    let mut report = machine::header(root);
    for part in parts {
        eprintln!("== bench part {part:?}");
        let section = match part {
            Part::Datapath => datapath::run(&bench, &args.datapath),
            Part::Analyze => analyze::run(&bench, &args.analyze),
            Part::Daemon => daemon::run(&bench, &args.daemon),
            Part::Replay => replay::run(&bench, &args.replay),
        }
        .with_context(|| format!("bench part {part:?}"))?;
        report.push_str(&section);
    }
    println!("{report}");
    Ok(())
}

/// Runs `command`, failing with its stderr's tail unless it exits 0; returns its stdout.
pub fn output_of(command: &mut Command) -> Result<String> {
    let program = format!("{command:?}");
    let output = command
        .output()
        .with_context(|| format!("cannot start {program}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        bail!("{program} failed ({}):\n{tail}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
