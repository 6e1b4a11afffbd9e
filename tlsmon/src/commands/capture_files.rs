//! Capture files through the pipeline: the glue of `analyze` and `compare`, and
//! of the tests that check the pipeline on recorded traffic.

use std::path::Path;
use std::time::Duration;

/// Segments handed to the pipeline at once: enough that a worker's share
/// outweighs passing it between threads, few enough to stay small in memory.
const BATCH: usize = 1024;

use crate::event::{HandshakeEvent, Outcome};
use crate::pipeline::diagnosis::DiagnosisStats;
use crate::pipeline::drive::Pipeline;
use crate::pipeline::flow_table::{Decided, FlowStats, FlowTableOptions};
use crate::pipeline::quic::QuicStats;
use crate::source::pcap::{CaptureFileError, CaptureFileReader, CaptureFileStats, CapturedPacket};

/// Options of an offline analysis.
#[derive(Clone, Debug, Default)]
pub struct AnalyzeOptions {
    /// Flow table settings (handshake timeout, bounds, TLS ports).
    pub flows: FlowTableOptions,
    /// Worker threads for the flow table; 0 or 1: none, the caller's thread
    /// does it all (the default here; the command line defaults to one per CPU).
    pub workers: usize,
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
pub struct AnalysisTotals {
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
    /// Diagnosis counters summed over files.
    pub diagnosis: DiagnosisStats,
    /// UDP datagrams among the packets (read for QUIC).
    pub udp_datagrams: u64,
    /// QUIC table counters summed over files.
    pub quic: QuicStats,
}

impl AnalysisTotals {
    fn count(&mut self, record: &HandshakeEvent) {
        match record.outcome {
            Outcome::Established => self.established += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Incomplete => self.incomplete += 1,
        }
    }

    fn add_file(
        &mut self,
        stats: &CaptureFileStats,
        flows: &FlowStats,
        quic: &QuicStats,
        diagnosis: DiagnosisStats,
    ) {
        self.udp_datagrams += stats.udp_datagrams;
        self.quic += quic;
        self.diagnosis.profiles_evicted += diagnosis.profiles_evicted;
        self.diagnosis.diagnosed_early += diagnosis.diagnosed_early;
        self.files += 1;
        self.packets += stats.packets;
        self.tcp_segments += stats.tcp_segments;
        self.non_tcp += stats.non_tcp;
        self.malformed_packets += stats.malformed;
        self.truncated_packets += stats.truncated;
        self.flows += flows;
    }
}

/// Analyses one capture file, handing each handshake record to `sink` as soon as it
/// is decided (failed ones once the file is read, so that their diagnosis uses all
/// of it); counts go into `summary`.
pub fn analyze_file_into(
    path: &Path,
    options: &AnalyzeOptions,
    summary: &mut AnalysisTotals,
    sink: &mut dyn FnMut(HandshakeEvent),
) -> Result<(), CaptureFileError> {
    let mut reader = CaptureFileReader::open(path)?;
    let mut pipeline =
        Pipeline::for_capture_file(options.flows.clone()).with_workers(options.workers);
    let mut emit = |decided: Decided| {
        summary.count(&decided.event);
        sink(decided.event);
    };
    let mut batch = Vec::with_capacity(BATCH);
    let result = loop {
        match reader.next_packet() {
            Ok(Some(CapturedPacket::Tcp(segment))) => {
                batch.push(segment);
                if batch.len() == BATCH {
                    pipeline.push_batch(&mut batch, &mut emit);
                }
            }
            Ok(Some(CapturedPacket::Udp(datagram))) => {
                // The TCP packets read before it go first, as in the file.
                pipeline.push_batch(&mut batch, &mut emit);
                pipeline.push_datagram(datagram, &mut emit);
            }
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    pipeline.push_batch(&mut batch, &mut emit);
    // What was read before a corrupt tail still counts: decide it, then report.
    pipeline.finish(&mut emit);
    summary.add_file(
        reader.stats(),
        pipeline.stats(),
        pipeline.quic_stats(),
        pipeline.diagnosis_stats(),
    );
    result
}

/// Analyses one capture file and returns its records, in the order they were decided
/// (failed ones last, diagnosed with the whole file).
pub fn analyze_file(
    path: &Path,
    options: &AnalyzeOptions,
) -> Result<(Vec<HandshakeEvent>, AnalysisTotals), CaptureFileError> {
    let mut records = Vec::new();
    let mut summary = AnalysisTotals::default();
    analyze_file_into(path, options, &mut summary, &mut |r| records.push(r))?;
    Ok((records, summary))
}
