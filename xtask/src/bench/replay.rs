//! The replay part: live capture at rate. A capture of many varied handshakes
//! (tests/corpus/tools/bench.py generate: every corpus connection as a template,
//! split ClientHellos, large chains, failures) is replayed with tcpreplay into a
//! veth pair at increasing rates, frames addressed to the receiving end's MAC,
//! with `tlsmon run` (a fresh one per rate) on that end. At each rate: does the
//! daemon count exactly what `tlsmon analyze` counts on the same file (per
//! outcome), with zero RingBuf drops, and what CPU did it spend per handshake.
//!
//! The capture's clock is scaled by the replay (tcpreplay --multiplier), so the
//! daemon's handshake timeout is scaled alike: 10 s of capture time, as analyze
//! uses.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::live::{cpu_time, sh, tlsmon_binary, Daemon, Namespaces};
use super::{output_of, Bench};

/// Options of the replay part.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// Handshakes in the generated capture (at least 100,000 for the figure).
    #[arg(long, default_value_t = 100_000)]
    pub replay_handshakes: u32,
    /// Replay rates to try, in handshakes per second, comma-separated (ascending).
    #[arg(long, value_delimiter = ',', default_value = "10000,20000,40000,80000")]
    pub replay_rates: Vec<u32>,
    /// The tlsmon binary to measure; a release build of this workspace when absent.
    #[arg(long)]
    pub replay_tlsmon: Option<PathBuf>,
    /// Extra arguments for `tlsmon run` (e.g. `--workers 1`), comma-separated.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub replay_args: Vec<String>,
}

/// Gap between handshake starts in the generated capture: 1,000 handshakes per
/// second at tcpreplay's multiplier 1.
const GAP_US: u32 = 1000;
/// The handshake timeout `analyze` uses, in capture time.
const TIMEOUT_SECS: f64 = 10.0;

const SENDER_NS: &str = "tlsmon-br-a";
const RECEIVER_NS: &str = "tlsmon-br-b";

/// Records per outcome, and in all.
type Counts = BTreeMap<String, u64>;

fn count_outcomes(json_lines: &str) -> Counts {
    let mut counts = Counts::new();
    for line in json_lines.lines().filter(|l| !l.trim().is_empty()) {
        let outcome = line
            .split_once("\"outcome\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("?", |(o, _)| o);
        *counts.entry(outcome.to_owned()).or_default() += 1;
        *counts.entry("all".to_owned()).or_default() += 1;
    }
    counts
}

fn show(counts: &Counts) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One rate's figures.
struct AtRate {
    asked: u32,
    achieved: f64,
    counts: Counts,
    dropped: f64,
    cpu: Duration,
}

/// Generates the capture, counts it with analyze, then replays it at each rate.
pub fn run(bench: &Bench, args: &ReplayArgs) -> Result<String> {
    let tlsmon = tlsmon_binary(bench, args.replay_tlsmon.as_deref())?;
    let script = bench.root.join("tests/corpus/tools/bench.py");
    let capture =
        std::env::temp_dir().join(format!("tlsmon-bench-live-{}.pcap", args.replay_handshakes));
    if !capture.exists() {
        output_of(
            Command::new("python3")
                .arg(&script)
                .arg("generate")
                .arg(&capture)
                .args(["--handshakes", &args.replay_handshakes.to_string()])
                .args(["--gap-us", &GAP_US.to_string()])
                // Only connections live capture follows: otherwise the daemon's
                // count can never equal analyze's, whatever the rate.
                .arg("--live-visible"),
        )
        .context("generating the capture")?;
    }
    let analyzed = output_of(
        Command::new(&tlsmon)
            .arg("analyze")
            .arg(&capture)
            .args(["--format", "json"]),
    )?;
    let expected = count_outcomes(&analyzed);
    let work = std::env::temp_dir().join(format!("tlsmon-bench-replay-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let results = replay_all(&tlsmon, args, &capture, &work);
    let _ = std::fs::remove_dir_all(&work);
    let results = results?;
    let extra = if args.replay_args.is_empty() {
        String::new()
    } else {
        format!(" --replay-args {}", args.replay_args.join(","))
    };
    let mut md = format!(
        "\n#### Live capture at rate\n\n\
         `cargo xtask bench --part replay --replay-handshakes {n} --replay-rates {rates}{extra}`, \
         tlsmon `{bin}`: {capture} (`bench.py generate --gap-us {GAP_US} --live-visible`) rewritten to the \
         receiving veth's MAC and replayed with `tcpreplay --multiplier`, a fresh `tlsmon run` \
         per rate (handshake timeout scaled to 10 s of capture time). `tlsmon analyze` of the \
         file: {expected}.\n\n\
         | asked | achieved | daemon's records | same as analyze | RingBuf drops | daemon CPU | per handshake | handshakes per CPU second |\n\
         | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |\n",
        n = args.replay_handshakes,
        rates = args
            .replay_rates
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        bin = tlsmon.display(),
        capture = capture.display(),
        expected = show(&expected),
    );
    let mut best = None;
    for r in &results {
        let exact = r.counts == expected && r.dropped == 0.0;
        if exact {
            best = Some(r.achieved);
        }
        let recorded = r.counts.get("all").copied().unwrap_or(0).max(1) as f64;
        md.push_str(&format!(
            "| {}/s | {:.0}/s | {} | {} | {} | {:.2} s | {:.1} µs | {:.0} |\n",
            r.asked,
            r.achieved,
            show(&r.counts),
            if exact { "yes" } else { "no" },
            r.dropped,
            r.cpu.as_secs_f64(),
            r.cpu.as_secs_f64() * 1e6 / recorded,
            recorded / r.cpu.as_secs_f64().max(1e-9),
        ));
    }
    md.push_str(&match best {
        Some(rate) => format!(
            "\nHighest rate with the daemon's counts equal to analyze's and no drop: {rate:.0} handshakes/s.\n"
        ),
        None => "\nNo rate tried gave the daemon's counts equal to analyze's with no drop.\n".into(),
    });
    Ok(md)
}

fn replay_all(
    tlsmon: &Path,
    args: &ReplayArgs,
    capture: &Path,
    work: &Path,
) -> Result<Vec<AtRate>> {
    let namespaces = Namespaces::new(&[SENDER_NS, RECEIVER_NS])?;
    namespaces.veth((SENDER_NS, "br-a", None), (RECEIVER_NS, "br-b", None))?;
    let mac = namespaces.mac(RECEIVER_NS, "br-b")?;
    let rewritten = work.join("rewritten.pcap");
    sh(
        "tcprewrite",
        &[
            &format!("--enet-dmac={mac}"),
            "-i",
            capture.to_str().context("path")?,
            "-o",
            rewritten.to_str().context("path")?,
        ],
    )?;
    let base_rate = 1e6 / f64::from(GAP_US);
    let mut results = Vec::new();
    for &rate in &args.replay_rates {
        let multiplier = f64::from(rate) / base_rate;
        let events = work.join(format!("events-{rate}.jsonl"));
        let timeout = format!("{:.3}", TIMEOUT_SECS / multiplier);
        let mut extra = vec![
            "--events-file",
            events.to_str().context("path")?,
            "--handshake-timeout",
            &timeout,
        ];
        extra.extend(args.replay_args.iter().map(String::as_str));
        let daemon = Daemon::start(
            tlsmon,
            RECEIVER_NS,
            "br-b",
            &work.join(format!("tlsmon-{rate}.log")),
            &extra,
        )?;
        std::thread::sleep(Duration::from_secs(1));
        let cpu_before = cpu_time(daemon.process.pid())?;
        let started = Instant::now();
        let out = sh(
            "ip",
            &[
                "netns",
                "exec",
                SENDER_NS,
                "tcpreplay",
                "-i",
                "br-a",
                &format!("--multiplier={multiplier}"),
                rewritten.to_str().context("path")?,
            ],
        )?;
        let replay_secs = actual_seconds(&out).unwrap_or_else(|| started.elapsed().as_secs_f64());
        daemon.settle(Duration::from_secs(120))?;
        let cpu = cpu_time(daemon.process.pid())? - cpu_before;
        let dropped = daemon.metric("tlsmon_capture_ringbuf_dropped_total")?;
        drop(daemon);
        let counts = count_outcomes(&std::fs::read_to_string(&events).unwrap_or_default());
        let handshakes = f64::from(args.replay_handshakes);
        eprintln!(
            "replay at {rate}/s: {} in {replay_secs:.1} s, drops {dropped}, cpu {:?}",
            show(&counts),
            cpu
        );
        results.push(AtRate {
            asked: rate,
            achieved: handshakes / replay_secs,
            counts,
            dropped,
            cpu,
        });
    }
    drop(namespaces);
    if results.is_empty() {
        bail!("no replay rate given");
    }
    Ok(results)
}

/// tcpreplay's "Actual: N packets (B bytes) sent in S seconds".
fn actual_seconds(output: &str) -> Option<f64> {
    output
        .lines()
        .find(|l| l.trim_start().starts_with("Actual:"))?
        .split_once(" sent in ")?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
