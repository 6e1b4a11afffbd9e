//! The one drive loop of `run`, `watch`, `analyze` and `compare`: segments go
//! into the flow table; each handshake it decides passes the forwarding linker
//! (live only: it may hold an event briefly, bounded, to link it across devices),
//! then the diagnosis stage (which learns server profiles and says why failures
//! failed), and goes to the caller's sink, so memory follows the handshakes in
//! progress, not the input's length (over capture files, failures wait for the end
//! of the file, bounded: [`crate::pipeline::diagnosis::MAX_DEFERRED`]).
//!
//! With [`Pipeline::with_workers`] the flow table stage runs in worker threads,
//! each connection in one of them ([`crate::pipeline::shards`]); the linker,
//! the diagnosis and the sink stay single and take the workers' merged output.
//! Batches ([`Pipeline::push_batch`]) are what make workers pay off.

use crate::pipeline::diagnosis::{Diagnoser, DiagnosisStats};
use crate::pipeline::flow_table::{
    ClientHelloSeen, Decided, FlowStats, FlowTable, FlowTableOptions, ResumeRequest,
};
use crate::pipeline::forwarding::{ForwardingLinker, ForwardingStats};
use crate::pipeline::quic::{QuicStats, QuicTable};
use crate::pipeline::shards::{Output, Shards};
use crate::source::segment::{ConnectionKey, Datagram, Segment, Timestamp};

/// Flows decided per step when the input ends: a full table's events are never
/// all held at once.
const FINISH_BATCH: usize = 256;

/// The flow table, the buffer its decisions pass through, and the stages after it.
pub struct Pipeline {
    flows: FlowStage,
    /// Batches a sharded table may still be working on when a push returns:
    /// 0 live (decisions go out with the batch that made them), 1 over capture
    /// files (the workers parse one batch while the next is read).
    in_flight_limit: usize,
    /// The table's options, for workers started later.
    options: FlowTableOptions,
    /// QUIC connections, next to the TCP ones (bounded by the same `max_flows`),
    /// in the caller's thread: QUIC is not sharded.
    quic: QuicTable,
    decided: Vec<Decided>,
    /// What the workers handed back, in order (with workers only).
    outputs: Vec<Output>,
    /// Links the same ClientHello on two devices (live capture only).
    forwarding: Option<Linking>,
    diagnoser: Diagnoser,
}

/// The flow table stage: one table in the caller's thread, or workers.
enum FlowStage {
    /// Boxed, as the other: both are large, and the stage is made once.
    Single(Box<FlowTable>),
    /// Worker threads, each with its own table.
    Sharded(Box<Shards>),
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
            quic: QuicTable::new(options.max_flows, options.handshake_timeout),
            flows: FlowStage::Single(Box::new(FlowTable::new(options.clone()))),
            options,
            in_flight_limit: 0,
            decided: Vec::new(),
            outputs: Vec::new(),
            forwarding: None,
            diagnoser: Diagnoser::live(),
        }
    }

    /// An empty pipeline for a capture file: failures are diagnosed when the input
    /// ends ([`finish`](Self::finish)), with what the whole file showed.
    pub fn for_capture_file(options: FlowTableOptions) -> Self {
        Pipeline {
            diagnoser: Diagnoser::whole_capture(),
            in_flight_limit: 1,
            ..Self::new(options)
        }
    }

    /// Runs the flow table stage in `workers` threads (1: in the caller's thread,
    /// as without this call). Call before pushing anything, and after
    /// [`with_forwarding`](Self::with_forwarding).
    pub fn with_workers(mut self, workers: usize) -> Self {
        if workers > 1 {
            let shards = Shards::new(&self.options, workers, self.forwarding.is_some());
            self.flows = FlowStage::Sharded(Box::new(shards));
        }
        self
    }

    /// Links ClientHellos seen arriving on one device and leaving on another
    /// ([`crate::pipeline::forwarding`]); events then carry `forwarded`.
    pub fn with_forwarding(mut self) -> Self {
        match &mut self.flows {
            FlowStage::Single(table) => table.collect_client_hellos(),
            FlowStage::Sharded(shards) => {
                **shards = Shards::new(&self.options, shards.workers(), true);
            }
        }
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
        // Capture files move QUIC's clock with every packet, as TCP's.
        self.quic.advance_clock(segment.ts, &mut self.decided);
        match &mut self.flows {
            FlowStage::Single(table) => table.push(segment, &mut self.decided),
            FlowStage::Sharded(shards) => {
                shards.push_batch(&mut vec![segment], self.in_flight_limit, &mut self.outputs)
            }
        }
        self.deliver(sink);
    }

    /// Takes a batch of segments (emptying `segments`); hands what they decided
    /// to `sink`, in the order one table would have. Over capture files the
    /// decisions of the last batch may come with the next call (or
    /// [`finish`](Self::finish)).
    pub fn push_batch(&mut self, segments: &mut Vec<Segment>, sink: &mut dyn FnMut(Decided)) {
        if let FlowStage::Sharded(shards) = &mut self.flows {
            if let Some(last) = segments.last() {
                self.quic.advance_clock(last.ts, &mut self.decided);
            }
            shards.push_batch(segments, self.in_flight_limit, &mut self.outputs);
            self.deliver(sink);
            return;
        }
        for segment in segments.drain(..) {
            self.push(segment, sink);
        }
    }

    /// Takes one UDP datagram (QUIC); hands what it decided to `sink`.
    pub fn push_datagram(&mut self, datagram: Datagram, sink: &mut dyn FnMut(Decided)) {
        self.quic.advance_clock(datagram.ts, &mut self.decided);
        self.quic.push(datagram, &mut self.decided);
        self.deliver(sink);
    }

    /// Moves time forward (wall time live; capture files advance it with their
    /// packets) and hands handshakes that timed out to `sink`.
    pub fn advance_clock(&mut self, now: Timestamp, sink: &mut dyn FnMut(Decided)) {
        match &mut self.flows {
            FlowStage::Single(table) => table.advance_clock(now, &mut self.decided),
            FlowStage::Sharded(shards) => shards.advance_clock(now, &mut self.outputs),
        }
        self.quic.advance_clock(now, &mut self.decided);
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
        loop {
            let more = match &mut self.flows {
                FlowStage::Single(table) => table.finish_some(FINISH_BATCH, &mut self.decided),
                FlowStage::Sharded(shards) => shards.finish_some(FINISH_BATCH, &mut self.outputs),
            };
            self.deliver(sink);
            if !more {
                break;
            }
        }
        self.quic.finish(&mut self.decided);
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
        match &mut self.flows {
            FlowStage::Single(table) => table.take_dropped_preambles(),
            FlowStage::Sharded(shards) => shards.take_dropped_preambles(),
        }
    }

    /// Keeps where each direction next needs bytes, for the kernel (live only):
    /// the caller takes them after each push ([`take_resume_requests`](Self::take_resume_requests)).
    /// Only the single table does this; with workers the kernel's own record
    /// following alone decides what is skipped.
    pub fn collect_resume_requests(&mut self) {
        if let FlowStage::Single(table) = &mut self.flows {
            table.collect_resume_requests();
        }
    }

    /// Resume points found since the last call.
    pub fn take_resume_requests(&mut self, out: &mut Vec<ResumeRequest>) {
        if let FlowStage::Single(table) = &mut self.flows {
            table.take_resume_requests(out);
        }
    }

    /// The flow table's counters (summed over workers, as of their last batch).
    pub fn stats(&self) -> &FlowStats {
        match &self.flows {
            FlowStage::Single(table) => table.stats(),
            FlowStage::Sharded(shards) => shards.stats(),
        }
    }

    /// The QUIC table's counters.
    pub fn quic_stats(&self) -> &QuicStats {
        self.quic.stats()
    }

    /// The diagnosis stage's counters.
    pub fn diagnosis_stats(&self) -> DiagnosisStats {
        self.diagnoser.stats()
    }

    /// Connections followed now.
    pub fn tracked(&self) -> usize {
        let tcp = match &self.flows {
            FlowStage::Single(table) => table.tracked(),
            FlowStage::Sharded(shards) => shards.tracked(),
        };
        tcp + self.quic.tracked()
    }

    fn deliver(&mut self, sink: &mut dyn FnMut(Decided)) {
        // The workers' outputs, interleaved as one table's would be: each
        // ClientHello reaches the linker before the decisions that followed it.
        for output in self.outputs.drain(..) {
            match (output, &mut self.forwarding) {
                (Output::ClientHello(seen), Some(linking)) => {
                    linking.linker.sighting(seen, &mut linking.linked)
                }
                (Output::ClientHello(_), None) => {}
                (Output::Decided(decided), Some(linking)) => {
                    linking.linker.decided(decided, &mut linking.linked)
                }
                (Output::Decided(decided), None) => self.decided.push(decided),
            }
        }
        if let Some(linking) = &mut self.forwarding {
            if let FlowStage::Single(table) = &mut self.flows {
                // ClientHellos first: a handshake decided in the same step as its
                // ClientHello was read must find its sighting.
                table.take_client_hellos(&mut linking.hellos);
                for seen in linking.hellos.drain(..) {
                    linking.linker.sighting(seen, &mut linking.linked);
                }
                for decided in self.decided.drain(..) {
                    linking.linker.decided(decided, &mut linking.linked);
                }
            }
            self.decided.append(&mut linking.linked);
        }
        for decided in self.decided.drain(..) {
            self.diagnoser.take(decided, sink);
        }
    }
}
