//! `tlsmon compare FILE...`: per-device side-by-side report from captures, event logs
//! or a running daemon's recent events (`--from URL`).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

use anyhow::Context;

use crate::cli::{CompareArgs, CompareFormat};
use crate::commands::capture_files::{analyze_file_into, AnalysisTotals, AnalyzeOptions};
use crate::event::HandshakeEvent;
use crate::sinks::comparison::Comparison;

use super::analyze::timeout_from_secs;
use super::use_color;

/// Runs the command.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let mut options = AnalyzeOptions::with_timeout(timeout_from_secs(args.handshake_timeout)?);
    options.workers = args
        .workers
        .unwrap_or_else(crate::pipeline::shards::default_workers);
    let mut comparison = Comparison::grouped_by(args.group_by);
    if let Some(url) = &args.from {
        for event in fetch_daemon_events(url)? {
            comparison.add(&event);
        }
    }
    for path in &args.files {
        if is_json_lines(path)? {
            read_events(path, &mut comparison)?;
        } else {
            let mut summary = AnalysisTotals::default();
            analyze_file_into(path, &options, &mut summary, &mut |r| comparison.add(&r))?;
        }
    }
    if comparison.devices().is_empty() {
        anyhow::bail!("no handshakes found in the given files or daemon");
    }
    let report = match args.format {
        CompareFormat::Text => comparison.render_text(use_color(args.color)),
        CompareFormat::Json => comparison.render_json() + "\n",
    };
    match std::io::stdout().lock().write_all(report.as_bytes()) {
        // A closed pipe (`| head`) is the reader's choice, not an error of ours.
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}

/// A running daemon's recent events (`--from`); compare is not async otherwise.
fn fetch_daemon_events(url: &str) -> anyhow::Result<Vec<HandshakeEvent>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(runtime.block_on(crate::source::daemon_events::fetch(url))?)
}

/// Event logs start with `{`; captures never do (their magic numbers differ).
fn is_json_lines(path: &Path) -> anyhow::Result<bool> {
    let mut first = [0u8; 1];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut first))
        .with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(n == 1 && first[0] == b'{')
}

fn read_events(path: &Path, comparison: &mut Comparison) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}: read error", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: HandshakeEvent = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a tlsmon event", path.display(), index + 1))?;
        comparison.add(&record);
    }
    Ok(())
}
