//! The one drive loop of `run`, `watch`, `analyze` and `compare`: segments go
//! into the flow table, and each handshake it decides goes to the caller's sink
//! at once, so memory follows the handshakes in progress, not the input's length.

use crate::pipeline::flow_table::{Decided, FlowStats, FlowTable, FlowTableOptions};
use crate::source::segment::{ConnectionKey, Segment, Timestamp};

/// Flows decided per step when the input ends: a full table's events are never
/// all held at once.
const FINISH_BATCH: usize = 256;

/// The flow table and the buffer its decisions pass through.
pub struct Pipeline {
    table: FlowTable,
    decided: Vec<Decided>,
}

impl Pipeline {
    /// An empty pipeline.
    pub fn new(options: FlowTableOptions) -> Self {
        Pipeline {
            table: FlowTable::new(options),
            decided: Vec::new(),
        }
    }

    /// Takes one segment; hands what it decided to `sink`.
    pub fn push(&mut self, segment: Segment, sink: &mut dyn FnMut(Decided)) {
        self.table.push(segment, &mut self.decided);
        self.deliver(sink);
    }

    /// Moves time forward (wall time live; capture files advance it with their
    /// packets) and hands handshakes that timed out to `sink`.
    pub fn advance_clock(&mut self, now: Timestamp, sink: &mut dyn FnMut(Decided)) {
        self.table.advance_clock(now, &mut self.decided);
        self.deliver(sink);
    }

    /// The input ended: decides every flow still open with what was seen.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Decided)) {
        while self.table.finish_some(FINISH_BATCH, &mut self.decided) {
            self.deliver(sink);
        }
        self.deliver(sink);
    }

    /// Connections that began with a preamble and ended without a record since
    /// the last call, with their client's first payload sequence number.
    pub fn take_dropped_preambles(&mut self) -> Vec<(ConnectionKey, u32)> {
        self.table.take_dropped_preambles()
    }

    /// The flow table's counters.
    pub fn stats(&self) -> &FlowStats {
        self.table.stats()
    }

    /// Connections followed now.
    pub fn tracked(&self) -> usize {
        self.table.tracked()
    }

    fn deliver(&mut self, sink: &mut dyn FnMut(Decided)) {
        for decided in self.decided.drain(..) {
            sink(decided);
        }
    }
}
