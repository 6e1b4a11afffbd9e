//! `cargo xtask fuzz`: run every cargo-fuzz target for a bounded time.
//!
//! The targets live in `fuzz/` (its own workspace, excluded from the main one). They
//! build with nightly and AddressSanitizer; cargo-fuzz only instruments the code it
//! compiles and links the prebuilt std, so no rust-src / build-std is needed.
//! New inputs go to `target/fuzz-corpus/TARGET`; the committed seeds in
//! `fuzz/corpus/TARGET` are read, never written.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The cargo-fuzz targets, in the order they run.
pub const TARGETS: [&str; 5] = [
    "capture_file",
    "preamble",
    "quic",
    "reassembler",
    "record_parser",
];

/// Options of `cargo xtask fuzz`.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Seconds to run each target (libFuzzer's -max_total_time).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Run only these targets (repeatable); default: all of them.
    #[arg(long = "target", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
    /// Toolchain to build with (must be a nightly: sanitizers are nightly-only).
    #[arg(long, default_value = "nightly")]
    pub toolchain: String,
}

/// What one target's run reported.
struct RunSummary {
    target: String,
    runs: Option<u64>,
    seconds: Option<u64>,
}

/// Install cargo-fuzz if missing, then run each target for `args.seconds`.
pub fn run(args: FuzzArgs) -> Result<()> {
    let root = workspace_root();
    let toolchain = format!("+{}", args.toolchain);
    let nightly_ok = Command::new("cargo")
        .args([&toolchain, "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !nightly_ok {
        bail!(
            "toolchain {} not installed: run `rustup toolchain install {}`",
            args.toolchain,
            args.toolchain
        );
    }
    ensure_cargo_fuzz()?;

    let targets: Vec<String> = if args.targets.is_empty() {
        TARGETS.iter().map(|t| t.to_string()).collect()
    } else {
        args.targets.clone()
    };
    let mut summaries = Vec::new();
    for target in &targets {
        summaries.push(run_target(&root, &toolchain, target, args.seconds)?);
    }
    eprintln!("\nfuzz summary ({} s per target):", args.seconds);
    for summary in &summaries {
        let runs = summary.runs.map_or("?".to_string(), |r| r.to_string());
        let secs = summary.seconds.map_or("?".to_string(), |s| s.to_string());
        eprintln!("  {:<14} {runs} runs in {secs} s, no crash", summary.target);
    }
    Ok(())
}

fn workspace_root() -> PathBuf {
    // xtask/ lives in the workspace root.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn ensure_cargo_fuzz() -> Result<()> {
    let installed = Command::new("cargo")
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed {
        return Ok(());
    }
    eprintln!("cargo-fuzz not found: installing it with `cargo install cargo-fuzz --locked`");
    let status = Command::new("cargo")
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("starting cargo install")?;
    if !status.success() {
        bail!("`cargo install cargo-fuzz --locked` failed ({status})");
    }
    Ok(())
}

fn run_target(root: &Path, toolchain: &str, target: &str, seconds: u64) -> Result<RunSummary> {
    let scratch = root.join("target").join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let seeds = root.join("fuzz").join("corpus").join(target);
    eprintln!("== fuzzing {target} for {seconds} s");
    let mut child = Command::new("cargo")
        .current_dir(root)
        // Its own target directory: nightly and sanitizer builds (and the eBPF object
        // tlsmon's build script makes) never overwrite the stable ones.
        .env("CARGO_TARGET_DIR", root.join("fuzz").join("target"))
        .args([toolchain, "fuzz", "run", target])
        .arg(&scratch)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cargo fuzz")?;
    // libFuzzer reports on stderr; pass it through and keep its closing figures
    // ("Done 123456 runs in 30 second(s)").
    let mut summary = RunSummary {
        target: target.to_string(),
        runs: None,
        seconds: None,
    };
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.context("reading cargo fuzz output")?;
            eprintln!("{line}");
            if let Some((runs, secs)) = parse_done_line(&line) {
                summary.runs = Some(runs);
                summary.seconds = Some(secs);
            }
        }
    }
    let status = child.wait().context("waiting for cargo fuzz")?;
    if !status.success() {
        bail!(
            "fuzz target {target} failed ({status}); a crashing input is saved under {}",
            root.join("fuzz/artifacts").join(target).display()
        );
    }
    Ok(summary)
}

/// The run count and seconds of libFuzzer's "Done N runs in S second(s)" line.
fn parse_done_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("Done ")?;
    let mut words = rest.split_whitespace();
    let runs = words.next()?.parse().ok()?;
    if words.next()? != "runs" || words.next()? != "in" {
        return None;
    }
    let seconds = words.next()?.parse().ok()?;
    Some((runs, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_done_line() {
        assert_eq!(
            parse_done_line("Done 1234567 runs in 61 second(s)"),
            Some((1_234_567, 61))
        );
        assert_eq!(parse_done_line("#2 INITED cov: 10"), None);
        assert_eq!(parse_done_line("Done abc runs in 1 second(s)"), None);
    }
}
