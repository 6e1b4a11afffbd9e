//! Workers change nothing but speed (issue 16): `analyze` with the flow table
//! split across 2 and 3 workers gives the same records, in the same order, as
//! one table, on every corpus capture and on a generated capture of thousands of
//! overlapping handshakes (every corpus template, timeouts included). Records
//! of flows still open when a capture ends come out in table order, which was
//! never defined: those are compared as a set.
//!
//! Needs python3 (tests/corpus/tools/bench.py); no root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use tlsmon::commands::capture_files::{analyze_file, AnalyzeOptions};
use tlsmon::event::HandshakeEvent;
use tlsmon_tests::corpus::corpus_dir;

/// Why a flow still open at the end of a capture was decided (flow table).
const ENDED_WITH_CAPTURE: &str = "capture ended before the handshake did";

fn records(path: &Path, workers: usize) -> Result<(Vec<String>, Vec<String>)> {
    let options = AnalyzeOptions {
        workers,
        ..AnalyzeOptions::default()
    };
    let (records, _) =
        analyze_file(path, &options).with_context(|| format!("analyze {}", path.display()))?;
    let line = |r: &HandshakeEvent| serde_json::to_string(r).expect("an event serializes");
    let ended = |r: &HandshakeEvent| {
        r.detail
            .as_deref()
            .is_some_and(|d| d.starts_with(ENDED_WITH_CAPTURE))
    };
    let ordered = records.iter().filter(|r| !ended(r)).map(line).collect();
    let mut at_end: Vec<String> = records.iter().filter(|r| ended(r)).map(line).collect();
    at_end.sort();
    Ok((ordered, at_end))
}

fn same_with_workers(path: &Path) -> Result<usize> {
    let (ordered, at_end) = records(path, 1)?;
    for workers in [2, 3] {
        let (w_ordered, w_at_end) = records(path, workers)?;
        ensure!(
            w_ordered == ordered,
            "{}: {workers} workers decided {} records in another order or content than one table ({})",
            path.display(),
            w_ordered.len(),
            ordered.len()
        );
        ensure!(
            w_at_end == at_end,
            "{}: {workers} workers left other flows open at the end",
            path.display()
        );
    }
    Ok(ordered.len() + at_end.len())
}

#[test]
fn every_corpus_capture_gives_the_same_records_with_workers() -> Result<()> {
    let mut captures: Vec<PathBuf> = std::fs::read_dir(corpus_dir())?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    captures.retain(|p| p.extension().is_some_and(|e| e == "pcap" || e == "pcapng"));
    captures.sort();
    ensure!(
        captures.len() >= 20,
        "corpus captures missing: {captures:?}"
    );
    let mut total = 0;
    for capture in &captures {
        total += same_with_workers(capture)?;
    }
    ensure!(
        total >= captures.len(),
        "only {total} records in the corpus"
    );
    Ok(())
}

#[test]
fn a_generated_capture_of_overlapping_handshakes_gives_the_same_records_with_workers() -> Result<()>
{
    const HANDSHAKES: usize = 4000;
    let dir = std::env::temp_dir().join(format!("tlsmon-sharded-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let pcap = dir.join("generated.pcap");
    let out = Command::new("python3")
        .arg(corpus_dir().join("tools/bench.py"))
        .args(["generate", pcap.to_str().context("path")?])
        .args(["--handshakes", &HANDSHAKES.to_string(), "--gap-us", "200"])
        .output()
        .context("running python3 bench.py generate")?;
    ensure!(
        out.status.success(),
        "bench.py generate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = same_with_workers(&pcap);
    std::fs::remove_dir_all(&dir)?;
    let records = result?;
    // Every generated connection makes one record (failures and not-TLS ones too).
    ensure!(
        records == HANDSHAKES,
        "{records} records from {HANDSHAKES} generated connections"
    );
    Ok(())
}
