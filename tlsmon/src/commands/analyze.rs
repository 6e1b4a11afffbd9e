//! `tlsmon analyze FILE...`: records as text, JSON lines or metrics, then a summary.

use std::io::{self, BufWriter, Write};
use std::time::Duration;

use crate::cli::{AnalyzeArgs, AnalyzeFormat};
use crate::commands::capture_files::{analyze_file_into, AnalysisTotals, AnalyzeOptions};
use crate::event::{HandshakeEvent, Outcome};
use crate::sinks::lines::{self, TextSummary};
use crate::sinks::metrics::{LabelOptions, Metrics};

use super::use_color;

/// Runs the command; the error lists every file that could not be read.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<()> {
    let mut options = AnalyzeOptions::with_timeout(timeout_from_secs(args.handshake_timeout)?);
    options.workers = args
        .workers
        .unwrap_or_else(crate::pipeline::shards::default_workers);
    options.flows.tls_ports.extend(&args.tls_ports);
    options.flows.starttls_ports =
        crate::config::with_default_starttls_ports(args.starttls_ports.clone());
    let color = use_color(args.color);
    let metrics = match args.format {
        // A capture shows no sockets, so there is no service to break down by.
        AnalyzeFormat::Metrics => Some(Metrics::new(&LabelOptions {
            service: false,
            ..LabelOptions::default()
        })?),
        _ => None,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let mut summary = AnalysisTotals::default();
    let mut per_device = TextSummary::default();
    let mut write_error: Option<io::Error> = None;
    let mut failures = Vec::new();
    for path in &args.files {
        let mut sink = |record: HandshakeEvent| {
            if let Some(metrics) = &metrics {
                metrics.observe(&record);
                return;
            }
            if args.format == AnalyzeFormat::Text {
                per_device.add(&record);
            }
            if args.failures_only && record.outcome != Outcome::Failed || write_error.is_some() {
                return;
            }
            let line = match args.format {
                AnalyzeFormat::Json => lines::json_line(&record),
                _ => lines::text_line(&record, color),
            };
            if let Err(err) = writeln!(out, "{line}") {
                write_error = Some(err);
            }
        };
        if let Err(err) = analyze_file_into(path, &options, &mut summary, &mut sink) {
            failures.push(err.to_string());
        }
    }
    if let Some(err) = write_error {
        // A closed pipe (`| head`) is the reader's choice, not an error of ours.
        if err.kind() != io::ErrorKind::BrokenPipe {
            return Err(err.into());
        }
        return Ok(());
    }
    if let Some(metrics) = &metrics {
        write!(out, "{}", metrics.encode_text()?)?;
    }
    out.flush()?;
    // The summary goes to stderr for machine formats so stdout stays parseable.
    let summary_text = render_summary(&summary);
    match args.format {
        AnalyzeFormat::Text => print!("\n{}{summary_text}", per_device.render()),
        _ => eprint!("{summary_text}"),
    }
    for failure in &failures {
        eprintln!("error: {failure}");
    }
    if !failures.is_empty() {
        anyhow::bail!(
            "{} of {} files could not be fully read",
            failures.len(),
            args.files.len()
        );
    }
    Ok(())
}

/// A validated timeout from a flag given in seconds.
pub fn timeout_from_secs(secs: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            anyhow::anyhow!("--handshake-timeout must be a positive number of seconds, not {secs}")
        })
}

fn render_summary(s: &AnalysisTotals) -> String {
    let f = &s.flows;
    let d = &s.diagnosis;
    // Only when a bound cut something: the usual summary stays as it was.
    let diagnosis = if d.profiles_evicted + d.diagnosed_early > 0 {
        format!(
            "diagnosis: {} server profiles evicted, {} failures diagnosed before the end of their file\n",
            d.profiles_evicted, d.diagnosed_early
        )
    } else {
        String::new()
    };
    let flows = format!(
        "\n{} handshakes: {} established, {} failed, {} incomplete\n\
         read {} files, {} packets ({} TCP segments, {} not TCP, {} malformed, {} truncated)\n\
         flows: {} tracked, {} evicted, {} non-TLS ignored, {} joined mid-stream ignored, {} preambles without TLS, {} parse errors\n\
         reassembly: {} retransmitted bytes, {} conflicting overlaps, {} bytes missing, {} bytes over limits, {} bytes not needed\n",
        s.established + s.failed + s.incomplete,
        s.established,
        s.failed,
        s.incomplete,
        s.files,
        s.packets,
        s.tcp_segments,
        s.non_tcp,
        s.malformed_packets,
        s.truncated_packets,
        f.flows_created,
        f.flows_evicted,
        f.not_tls_ignored,
        f.midstream_ignored,
        f.preambles_without_tls,
        f.parse_errors,
        f.retransmitted_bytes,
        f.overlap_conflicts,
        f.gap_bytes,
        f.reassembly_dropped_bytes,
        f.skipped_bytes,
    );
    // Only when the files held QUIC: the summary of TCP captures stays as it was.
    let q = &s.quic;
    let quic = if q.saw_quic() {
        format!(
            "quic: {} UDP datagrams, {} connections, {} unanswered, {} evicted, {} failed authentication, {} truncated, {} lying lengths, {} connection IDs over 20 bytes, {} malformed frames, {} foreign packets, {} CRYPTO bytes over limits\n",
            s.udp_datagrams,
            q.connections,
            q.unanswered,
            q.evicted,
            q.authentication_failures,
            q.truncated_packets,
            q.lying_lengths,
            q.cid_too_long,
            q.malformed_frames,
            q.foreign_packets,
            q.crypto_bytes_cut,
        )
    } else {
        String::new()
    };
    flows + &quic + &diagnosis
}
