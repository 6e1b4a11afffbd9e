//! The one drive loop of `run`, `watch`, `analyze` and `compare`: segments go
//! into the flow table; each handshake it decides passes the forwarding linker
//! (live only: it may hold an event briefly, bounded, to link it across devices),
//! then the diagnosis stage (which learns server profiles and says why failures
//! failed), and goes to the caller's sink, so memory follows the handshakes in
//! progress, not the input's length (over capture files, failures wait for the end
//! of the file, bounded: [`crate::pipeline::diagnosis::MAX_DEFERRED`]).

use crate::pipeline::diagnosis::{Diagnoser, DiagnosisStats};
use crate::pipeline::flow_table::{
    ClientHelloSeen, Decided, FlowStats, FlowTable, FlowTableOptions, ResumeRequest,
};
use crate::pipeline::forwarding::{ForwardingLinker, ForwardingStats};
use crate::source::segment::{ConnectionKey, Segment, Timestamp};

/// Flows decided per step when the input ends: a full table's events are never
/// all held at once.
const FINISH_BATCH: usize = 256;

/// The flow table, the buffer its decisions pass through, and the stages after it.
pub struct Pipeline {
    table: FlowTable,
    decided: Vec<Decided>,
    /// Links the same ClientHello on two devices (live capture only).
    forwarding: Option<Linking>,
    diagnoser: Diagnoser,
}

/// The linker and its scratch buffers.
struct Linking {
    linker: ForwardingLinker,
    hellos: Vec<ClientHelloSeen>,
    linked: Vec<Decided>,
}

impl Pipeline {
    /// An empty pipeline for live capture: failures are diagnosed at once, against
    /// what was known at the time.
    pub fn new(options: FlowTableOptions) -> Self {
        Pipeline {
            table: FlowTable::new(options),
            decided: Vec::new(),
            forwarding: None,
            diagnoser: Diagnoser::live(),
        }
    }

    /// An empty pipeline for a capture file: failures are diagnosed when the input
    /// ends ([`finish`](Self::finish)), with what the whole file showed.
    pub fn for_capture_file(options: FlowTableOptions) -> Self {
        Pipeline {
            diagnoser: Diagnoser::whole_capture(),
            ..Self::new(options)
        }
    }

    /// Links ClientHellos seen arriving on one device and leaving on another
    /// ([`crate::pipeline::forwarding`]); events then carry `forwarded`.
    pub fn with_forwarding(mut self) -> Self {
        self.table.collect_client_hellos();
        self.forwarding = Some(Linking {
            linker: ForwardingLinker::new(),
            hellos: Vec::new(),
            linked: Vec::new(),
        });
        self
    }

    /// The forwarding linker's counters, when linking.
    pub fn forwarding_stats(&self) -> Option<&ForwardingStats> {
        self.forwarding.as_ref().map(|f| f.linker.stats())
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
        if let Some(linking) = &mut self.forwarding {
            linking.linker.advance_clock(now, &mut linking.linked);
            for decided in linking.linked.drain(..) {
                self.diagnoser.take(decided, sink);
            }
        }
    }

    /// The input ended: decides every flow still open with what was seen, and
    /// diagnoses the failures that waited for the end.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Decided)) {
        while self.table.finish_some(FINISH_BATCH, &mut self.decided) {
            self.deliver(sink);
        }
        self.deliver(sink);
        if let Some(linking) = &mut self.forwarding {
            linking.linker.finish(&mut linking.linked);
            for decided in linking.linked.drain(..) {
                self.diagnoser.take(decided, sink);
            }
        }
        self.diagnoser.finish(sink);
    }

    /// Connections that began with a preamble and ended without a record since
    /// the last call, with their client's first payload sequence number.
    pub fn take_dropped_preambles(&mut self) -> Vec<(ConnectionKey, u32)> {
        self.table.take_dropped_preambles()
    }

    /// Keeps where each direction next needs bytes, for the kernel (live only):
    /// the caller takes them after each push ([`take_resume_requests`](Self::take_resume_requests)).
    pub fn collect_resume_requests(&mut self) {
        self.table.collect_resume_requests();
    }

    /// Resume points found since the last call.
    pub fn take_resume_requests(&mut self, out: &mut Vec<ResumeRequest>) {
        self.table.take_resume_requests(out);
    }

    /// The flow table's counters.
    pub fn stats(&self) -> &FlowStats {
        self.table.stats()
    }

    /// The diagnosis stage's counters.
    pub fn diagnosis_stats(&self) -> DiagnosisStats {
        self.diagnoser.stats()
    }

    /// Connections followed now.
    pub fn tracked(&self) -> usize {
        self.table.tracked()
    }

    fn deliver(&mut self, sink: &mut dyn FnMut(Decided)) {
        if let Some(linking) = &mut self.forwarding {
            // ClientHellos first: a handshake decided in the same step as its
            // ClientHello was read must find its sighting.
            self.table.take_client_hellos(&mut linking.hellos);
            for seen in linking.hellos.drain(..) {
                linking.linker.sighting(seen, &mut linking.linked);
            }
            for decided in self.decided.drain(..) {
                linking.linker.decided(decided, &mut linking.linked);
            }
            std::mem::swap(&mut self.decided, &mut linking.linked);
        }
        for decided in self.decided.drain(..) {
            self.diagnoser.take(decided, sink);
        }
    }
}
