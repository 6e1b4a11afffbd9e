//! `tlsmon compare FILE...`: per-device side-by-side report from captures or event logs.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use anyhow::Context;

use crate::cli::CompareArgs;
use crate::commands::capture_files::{analyze_file_into, AnalysisTotals, AnalyzeOptions};
use crate::event::HandshakeEvent;
use crate::sinks::comparison::Comparison;

use super::analyze::timeout_from_secs;
use super::use_color;

/// Runs the command.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let options = AnalyzeOptions::with_timeout(timeout_from_secs(args.handshake_timeout)?);
    let mut comparison = Comparison::grouped_by(args.group_by);
    for path in &args.files {
        if is_json_lines(path)? {
            read_events(path, &mut comparison)?;
        } else {
            let mut summary = AnalysisTotals::default();
            analyze_file_into(path, &options, &mut summary, &mut |r| comparison.add(&r))?;
        }
    }
    if comparison.devices().is_empty() {
        anyhow::bail!("no handshakes found in the given files");
    }
    print!("{}", comparison.render_text(use_color(args.color)));
    Ok(())
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
