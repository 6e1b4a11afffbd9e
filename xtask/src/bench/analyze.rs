//! The analyze part: `tlsmon analyze` against tshark on a large capture made of
//! the corpus's connections, through `tests/corpus/tools/bench.py` (BENCHMARKS.md,
//! "Offline analysis").

use std::{path::PathBuf, process::Command};

use anyhow::{Context, Result};
use clap::Args;

use super::{output_of, Bench};

/// Options of the analyze part.
#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// Handshakes in the generated capture.
    #[arg(long, default_value_t = 100_000)]
    pub handshakes: u32,
    /// The tlsmon binary to time; a release build of this workspace when absent.
    #[arg(long)]
    pub tlsmon: Option<PathBuf>,
    /// Runs of tlsmon (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub analyze_runs: u32,
    /// Runs of tshark (much slower).
    #[arg(long, default_value_t = 1)]
    pub tshark_runs: u32,
    /// Time tlsmon only.
    #[arg(long)]
    pub skip_tshark: bool,
}

/// The figures bench.py prints for one tool.
#[derive(Default)]
struct Timing {
    command: String,
    wall: String,
    cpu: String,
    per_cpu_second: String,
    peak_rss: String,
}

/// Text between `start` and the next `end` in `line`.
fn between(line: &str, start: &str, end: &str) -> String {
    line.split_once(start)
        .and_then(|(_, rest)| rest.split_once(end).map(|(v, _)| v).or(Some(rest)))
        .map_or_else(String::new, |v| v.trim().to_owned())
}

/// bench.py's lines for `tool`: "TOOL: CMD", "  wall W s (...), CPU C s (...)",
/// "  per CPU second: H handshakes, ...; peak RSS R MiB".
fn timing(output: &str, tool: &str) -> Option<Timing> {
    let mut lines = output
        .lines()
        .skip_while(|l| !l.starts_with(&format!("{tool}: ")));
    let command = lines.next()?.split_once(": ")?.1.to_owned();
    let times = lines.next()?;
    let rates = lines.next()?;
    Some(Timing {
        command,
        wall: between(times, "wall ", ","),
        cpu: between(times, "), CPU ", ","),
        per_cpu_second: between(rates, "per CPU second: ", " handshakes"),
        peak_rss: between(rates, "peak RSS ", "\n"),
    })
}

/// Generates the capture (once per size) and times tlsmon and tshark on it.
pub fn run(bench: &Bench, args: &AnalyzeArgs) -> Result<String> {
    let tlsmon = match &args.tlsmon {
        Some(path) => path.clone(),
        None => {
            output_of(
                bench
                    .cargo()
                    .args(["build", "--release", "--package", "tlsmon"]),
            )?;
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| bench.root.join("target"), PathBuf::from);
            target.join("release").join("tlsmon")
        }
    };
    let script = bench.root.join("tests/corpus/tools/bench.py");
    let capture = std::env::temp_dir().join(format!("tlsmon-bench-{}.pcap", args.handshakes));
    if !capture.exists() {
        output_of(
            Command::new("python3")
                .arg(&script)
                .arg("generate")
                .arg(&capture)
                .args(["--handshakes", &args.handshakes.to_string()]),
        )
        .context("generating the capture")?;
    }
    let mut command = Command::new("python3");
    command
        .arg(&script)
        .arg("run")
        .arg(&capture)
        .arg("--tlsmon")
        .arg(&tlsmon)
        .args(["--runs", &args.analyze_runs.to_string()])
        .args(["--tshark-runs", &args.tshark_runs.to_string()]);
    if args.skip_tshark {
        command.arg("--skip-tshark");
    }
    let output = output_of(&mut command)?;
    eprint!("{output}");
    let mut md = format!(
        "\n#### Analyze\n\n\
         `cargo xtask bench --part analyze --handshakes {n}` (`tests/corpus/tools/bench.py \
         generate` then `run`), capture {capture}: {summary}\n\n\
         | tool | wall (median) | CPU (median) | handshakes per CPU second | peak RSS |\n\
         | --- | ---: | ---: | ---: | ---: |\n",
        n = args.handshakes,
        capture = capture.display(),
        summary = output.lines().next().unwrap_or("").trim(),
    );
    for tool in ["tlsmon", "tshark"] {
        if let Some(t) = timing(&output, tool) {
            md.push_str(&format!(
                "| `{}` | {} | {} | {} | {} |\n",
                t.command, t.wall, t.cpu, t.per_cpu_second, t.peak_rss
            ));
        }
    }
    if let Some(speed) = output
        .lines()
        .find(|l| l.starts_with("tlsmon/tshark speed"))
    {
        md.push_str(&format!("\n{speed}\n"));
    }
    Ok(md)
}
