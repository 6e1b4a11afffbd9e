//! `tlsmon analyze`: the daemon's pipeline run over capture files.
//!
//! Records are handed to a sink as they are decided, so memory follows the number
//! of handshakes in progress, not the length of the file.

use std::path::Path;
use std::time::Duration;

use crate::flows::{Decided, FlowStats, FlowTable, FlowTableOptions};
use crate::pcap::{CaptureFileError, CaptureFileReader, CaptureFileStats};
use crate::record::{HandshakeRecord, Outcome};

/// Flows decided per step at the end of a file.
const FINISH_BATCH: usize = 256;

/// Options of an offline analysis.
#[derive(Clone, Debug, Default)]
pub struct AnalyzeOptions {
    /// Flow table settings (handshake timeout, bounds, TLS ports).
    pub flows: FlowTableOptions,
}

impl AnalyzeOptions {
    /// Options with a handshake timeout other than the default.
    pub fn with_timeout(timeout: Duration) -> Self {
        let mut options = Self::default();
        options.flows.handshake_timeout = timeout;
        options
    }
}

/// What an analysis read and found, beyond the records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnalyzeSummary {
    /// Files read.
    pub files: u64,
    /// Packets read from all files.
    pub packets: u64,
    /// TCP segments among them.
    pub tcp_segments: u64,
    /// Packets that were not TCP.
    pub non_tcp: u64,
    /// Packets whose headers were garbage (skipped, counted).
    pub malformed_packets: u64,
    /// Packets captured shorter than they were on the wire.
    pub truncated_packets: u64,
    /// Handshakes by outcome.
    pub established: u64,
    /// Handshakes that failed.
    pub failed: u64,
    /// Handshakes the capture did not see the end of.
    pub incomplete: u64,
    /// Flow table counters summed over files.
    pub flows: FlowStats,
}

impl AnalyzeSummary {
    fn count(&mut self, record: &HandshakeRecord) {
        match record.outcome {
            Outcome::Established => self.established += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Incomplete => self.incomplete += 1,
        }
    }

    fn add_file(&mut self, stats: &CaptureFileStats, flows: &FlowStats) {
        self.files += 1;
        self.packets += stats.packets;
        self.tcp_segments += stats.tcp_segments;
        self.non_tcp += stats.non_tcp;
        self.malformed_packets += stats.malformed;
        self.truncated_packets += stats.truncated;
        let total = &mut self.flows;
        total.flows_created += flows.flows_created;
        total.flows_evicted += flows.flows_evicted;
        total.evicted_opening += flows.evicted_opening;
        total.evicted_unanswered += flows.evicted_unanswered;
        total.flows_refused += flows.flows_refused;
        total.not_tls_ignored += flows.not_tls_ignored;
        total.midstream_ignored += flows.midstream_ignored;
        total.parse_errors += flows.parse_errors;
        total.retransmitted_bytes += flows.retransmitted_bytes;
        total.overlap_conflicts += flows.overlap_conflicts;
        total.gap_bytes += flows.gap_bytes;
        total.reassembly_dropped_bytes += flows.reassembly_dropped_bytes;
    }
}

/// Analyses one capture file, handing each handshake record to `sink` as soon as it
/// is decided; counts go into `summary`.
pub fn analyze_file_into(
    path: &Path,
    options: &AnalyzeOptions,
    summary: &mut AnalyzeSummary,
    sink: &mut dyn FnMut(HandshakeRecord),
) -> Result<(), CaptureFileError> {
    let mut reader = CaptureFileReader::open(path)?;
    let mut table = FlowTable::new(options.flows.clone());
    let mut decided: Vec<Decided> = Vec::new();
    let mut emit = |decided: &mut Vec<Decided>, summary: &mut AnalyzeSummary| {
        for d in decided.drain(..) {
            summary.count(&d.record);
            sink(d.record);
        }
    };
    let result = loop {
        match reader.next_segment() {
            Ok(Some(segment)) => {
                table.push(segment, &mut decided);
                emit(&mut decided, summary);
            }
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    // What was read before a corrupt tail still counts: decide it, then report. In
    // parts, so that the records of a full table are never all held at once.
    while table.finish_some(FINISH_BATCH, &mut decided) {
        emit(&mut decided, summary);
    }
    emit(&mut decided, summary);
    summary.add_file(reader.stats(), table.stats());
    result
}

/// Analyses one capture file and returns its records, in the order they were decided.
pub fn analyze_file(
    path: &Path,
    options: &AnalyzeOptions,
) -> Result<(Vec<HandshakeRecord>, AnalyzeSummary), CaptureFileError> {
    let mut records = Vec::new();
    let mut summary = AnalyzeSummary::default();
    analyze_file_into(path, options, &mut summary, &mut |r| records.push(r))?;
    Ok((records, summary))
}
