//! The flow table: [`Segment`]s in, one [`HandshakeRecord`] per handshake out.
//!
//! Each TCP connection on each device gets two [`stream::DirectionStream`]s
//! (reassembly + TLS parsing) and, from its ClientHello on, an
//! [`HandshakeTracker`](crate::outcome::HandshakeTracker) that decides the outcome.
//! Decided connections leave the table and are remembered in a bounded set so that
//! their later packets are ignored instead of starting a new flow. Memory is bounded
//! by `max_flows`; making room evicts the least recently active flow, which is
//! reported as `incomplete` and counted.

mod build;
mod stream;

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use crate::handshake::TlsMessage;
use crate::outcome::{Close, HandshakeTracker, Verdict};
use crate::reassembly::ReassemblyLimits;
use crate::record::HandshakeRecord;
use crate::segment::{ConnectionKey, Segment, Timestamp};

use build::{handshake_record, not_tls_record, side_of, FlowContext};
use stream::{DirectionStream, TimedMessage};

/// Connection keys are hashed several times per segment, so SipHash showed up as
/// the top cost of `analyze` (10% of its time). foldhash with a per-process random
/// seed is several times faster and still keeps an outsider, who picks addresses
/// and ports but cannot see the seed, from aiming collisions at one bucket.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::quality::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::quality::RandomState>;

/// Ports on which a connection that does not start with TLS is reported as `not_tls`
/// (elsewhere it is simply not a TLS connection and is ignored).
pub const DEFAULT_TLS_PORTS: &[u16] = &[
    443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 4433, 5061, 6443, 8443, 9443,
];

/// Limits and timing of the flow table.
#[derive(Clone, Debug)]
pub struct FlowTableOptions {
    /// A handshake with no new bytes for this long fails with `timeout`.
    pub handshake_timeout: Duration,
    /// Most connections tracked at once.
    pub max_flows: usize,
    /// Per-direction reassembly bounds.
    pub reassembly: ReassemblyLimits,
    /// Server ports where non-TLS first bytes count as a `not_tls` failure.
    pub tls_ports: Vec<u16>,
}

impl Default for FlowTableOptions {
    fn default() -> Self {
        FlowTableOptions {
            handshake_timeout: Duration::from_secs(10),
            max_flows: 65_536,
            reassembly: ReassemblyLimits::default(),
            tls_ports: DEFAULT_TLS_PORTS.to_vec(),
        }
    }
}

/// A handshake the table decided, with the connection it belongs to (so a live
/// capture can stop copying that connection's bytes).
#[derive(Clone, Debug)]
pub struct Decided {
    /// The connection.
    pub key: ConnectionKey,
    /// Sequence number of the client's first payload byte: which connection on
    /// a reused 4-tuple this was (`None` if the client sent no payload).
    pub client_seq: Option<u32>,
    /// Its handshake record.
    pub record: HandshakeRecord,
}

/// Counters of the flow table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Connections tracked (a ClientHello or SYN was seen).
    pub flows_created: u64,
    /// Flows pushed out to stay within `max_flows` (reported as incomplete).
    pub flows_evicted: u64,
    /// Connections whose first bytes were neither TLS nor on a TLS port: not reported.
    pub not_tls_ignored: u64,
    /// Connections first seen mid-handshake or mid-session (no ClientHello): not reported.
    pub midstream_ignored: u64,
    /// Flows still undecided when a new connection opened on their 4-tuple (decided
    /// with what was seen, as `incomplete` unless the outcome was already clear).
    pub flows_superseded: u64,
    /// Messages that were malformed (each also makes a `protocol_error` record).
    pub parse_errors: u64,
    /// Retransmitted bytes (exact duplicates) seen by reassembly, over finished flows.
    pub retransmitted_bytes: u64,
    /// Overlaps whose bytes disagreed with what was already held (first copy won).
    pub overlap_conflicts: u64,
    /// Bytes never captured (holes), over finished flows.
    pub gap_bytes: u64,
    /// Bytes dropped by reassembly bounds, over finished flows.
    pub reassembly_dropped_bytes: u64,
}

/// What the table knows of one connection.
struct Flow {
    id: u64,
    /// Index 0 carries lo -> hi bytes, index 1 hi -> lo.
    streams: [Option<DirectionStream>; 2],
    /// Which stream belongs to the client, once its ClientHello (or non-TLS bytes) came.
    client_stream: Option<usize>,
    /// Per stream: sequence number of its first payload byte.
    first_payload_seq: [Option<u32>; 2],
    tracker: Option<HandshakeTracker>,
    client_hello_segments: u32,
    first_seen: Timestamp,
    deadline: Timestamp,
    /// The first bytes were not TLS on a non-TLS port: drop at close unless the other
    /// side answers in TLS.
    suspect_not_tls: bool,
}

/// The set of connections being analysed.
pub struct FlowTable {
    options: FlowTableOptions,
    flows: HashMap<ConnectionKey, Flow>,
    /// (deadline, flow id) of every flow: the earliest to expire, and the least recently
    /// active to evict, come first.
    deadlines: BTreeSet<(Timestamp, u64)>,
    keys_by_id: HashMap<u64, ConnectionKey>,
    finished: HashSet<ConnectionKey>,
    finished_order: VecDeque<ConnectionKey>,
    next_id: u64,
    clock: Timestamp,
    stats: FlowStats,
    messages: Vec<TimedMessage>,
}

impl FlowTable {
    /// An empty table.
    pub fn new(options: FlowTableOptions) -> Self {
        FlowTable {
            options,
            flows: HashMap::default(),
            deadlines: BTreeSet::new(),
            keys_by_id: HashMap::default(),
            finished: HashSet::default(),
            finished_order: VecDeque::new(),
            next_id: 0,
            clock: Timestamp::ZERO,
            stats: FlowStats::default(),
            messages: Vec::new(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &FlowStats {
        &self.stats
    }

    /// Connections currently tracked.
    pub fn tracked(&self) -> usize {
        self.flows.len()
    }

    /// The latest time the table has seen (capture time for files).
    pub fn clock(&self) -> Timestamp {
        self.clock
    }

    /// Takes one segment; handshakes it decides are appended to `out`.
    pub fn push(&mut self, segment: Segment, out: &mut Vec<Decided>) {
        if segment.ts > self.clock {
            self.advance_clock(segment.ts, out);
        }
        let key = ConnectionKey::of(&segment);
        let opening = segment.flags.syn() && !segment.flags.ack();
        if opening && self.superseded_by(&key, &segment) {
            // The address pair carries a new connection: the old one is over,
            // whatever of its end was not seen.
            self.stats.flows_superseded += 1;
            self.end_flow(&key, "a new connection reused the address pair", out);
        }
        if !self.flows.contains_key(&key) {
            // A decided connection's later packets are ignored, unless its address
            // pair is reused for a new connection (a fresh SYN).
            if self.finished.contains(&key) && !(opening && self.finished.remove(&key)) {
                return;
            }
            let carries_bytes = !segment.payload.is_empty() || segment.cut > 0;
            if !carries_bytes && !segment.flags.syn() {
                return; // a bare ACK/FIN/RST of a connection we never saw start
            }
            self.make_room(out);
            self.insert_flow(key.clone(), segment.ts);
        }
        self.process(&key, &segment, out);
    }

    /// Moves time forward (capture time for files, wall time live) and decides
    /// handshakes that waited too long.
    pub fn advance_clock(&mut self, now: Timestamp, out: &mut Vec<Decided>) {
        self.clock = self.clock.max(now);
        while let Some(&(deadline, id)) = self.deadlines.first() {
            if deadline > self.clock {
                break;
            }
            let Some(key) = self.keys_by_id.get(&id).cloned() else {
                self.deadlines.remove(&(deadline, id));
                continue;
            };
            self.expire(&key, out);
        }
    }

    /// Ends the capture: every flow still open is decided with what was seen.
    pub fn finish(&mut self, out: &mut Vec<Decided>) {
        let keys: Vec<ConnectionKey> = self.flows.keys().cloned().collect();
        for key in keys {
            self.end_flow(&key, "capture ended before the handshake did", out);
        }
    }

    /// True when `syn` (a client's opening SYN) starts a connection other than the
    /// flow in progress on `key`: its client already sent bytes at another
    /// sequence number than this SYN announces, or a handshake is under way. A
    /// retransmitted SYN is not a new connection.
    fn superseded_by(&self, key: &ConnectionKey, syn: &Segment) -> bool {
        let Some(flow) = self.flows.get(key) else {
            return false;
        };
        let index = usize::from(syn.src != key.lo);
        match flow.first_payload_seq[index] {
            Some(first) => first != syn.seq.wrapping_add(1),
            None => flow.tracker.is_some(),
        }
    }

    fn insert_flow(&mut self, key: ConnectionKey, ts: Timestamp) {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = ts + self.options.handshake_timeout;
        self.deadlines.insert((deadline, id));
        self.keys_by_id.insert(id, key.clone());
        self.stats.flows_created += 1;
        self.flows.insert(
            key,
            Flow {
                id,
                streams: [None, None],
                client_stream: None,
                first_payload_seq: [None, None],
                tracker: None,
                client_hello_segments: 0,
                first_seen: ts,
                deadline,
                suspect_not_tls: false,
            },
        );
    }

    fn make_room(&mut self, out: &mut Vec<Decided>) {
        while self.flows.len() >= self.options.max_flows.max(1) {
            let Some(&(_, id)) = self.deadlines.first() else {
                return;
            };
            let Some(key) = self.keys_by_id.get(&id).cloned() else {
                self.deadlines.pop_first();
                continue;
            };
            self.stats.flows_evicted += 1;
            self.end_flow(&key, "evicted: too many flows in progress", out);
        }
    }

    fn process(&mut self, key: &ConnectionKey, segment: &Segment, out: &mut Vec<Decided>) {
        let index = usize::from(segment.src != key.lo);
        let limits = self.options.reassembly;
        let mut messages = std::mem::take(&mut self.messages);
        messages.clear();
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        if flow.first_payload_seq[index].is_none() && !segment.payload.is_empty() {
            flow.first_payload_seq[index] = Some(segment.seq);
        }
        let stream = flow.streams[index]
            .get_or_insert_with(|| DirectionStream::new(limits, segment.direction));
        stream.push(segment, &mut messages);
        let verdict = self.handle_messages(key, index, segment, &mut messages, out);
        self.messages = messages;
        if verdict {
            return;
        }
        self.handle_closes(key, index, segment, out);
        self.touch(key, segment.ts);
    }

    /// Feeds messages of stream `index` to the flow's tracker; true if the flow was decided.
    fn handle_messages(
        &mut self,
        key: &ConnectionKey,
        index: usize,
        segment: &Segment,
        messages: &mut Vec<TimedMessage>,
        out: &mut Vec<Decided>,
    ) -> bool {
        for timed in messages.drain(..) {
            let Some(flow) = self.flows.get_mut(key) else {
                return true;
            };
            if matches!(timed.parsed.message, TlsMessage::Malformed { .. }) {
                self.stats.parse_errors += 1;
            }
            match flow.tracker.as_mut() {
                Some(tracker) => {
                    let side = side_of(flow.client_stream == Some(index));
                    if let Some(verdict) = tracker.on_message(side, timed.parsed.message, timed.ts)
                    {
                        self.decide(key, verdict, out);
                        return true;
                    }
                }
                None => match timed.parsed.message {
                    TlsMessage::ClientHello(hello) => {
                        let segments = flow.streams[index].as_ref().map_or(1, |s| {
                            s.segments_spanning(timed.parsed.start, timed.parsed.end)
                        });
                        flow.client_stream = Some(index);
                        flow.client_hello_segments = segments;
                        flow.tracker = Some(HandshakeTracker::new(hello, timed.ts));
                    }
                    TlsMessage::NotTls if flow.client_stream.is_none() => {
                        flow.client_stream = Some(index);
                        let server_port = segment.dst.port();
                        if self.options.tls_ports.contains(&server_port) {
                            self.decide_not_tls(key, timed.ts, out);
                            return true;
                        }
                        flow.suspect_not_tls = true;
                    }
                    // The other side of a non-TLS opener answers in TLS (an alert from
                    // a TLS server): it was a TLS port after all.
                    ref reply
                        if flow.suspect_not_tls
                            && flow.client_stream != Some(index)
                            && !matches!(
                                reply,
                                TlsMessage::NotTls | TlsMessage::Malformed { .. }
                            ) =>
                    {
                        self.decide_not_tls(key, timed.ts, out);
                        return true;
                    }
                    _ => {
                        if flow.suspect_not_tls {
                            self.stats.not_tls_ignored += 1;
                        } else {
                            self.stats.midstream_ignored += 1;
                        }
                        self.forget(key);
                        return true;
                    }
                },
            }
        }
        false
    }

    /// Applies RST at once and FIN once the stream reached it.
    fn handle_closes(
        &mut self,
        key: &ConnectionKey,
        index: usize,
        segment: &Segment,
        out: &mut Vec<Decided>,
    ) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        let close = if segment.flags.rst() {
            Some(Close::Rst)
        } else if flow.streams[index]
            .as_ref()
            .is_some_and(|s| s.fin_reached())
        {
            Some(Close::Fin)
        } else {
            None
        };
        let Some(close) = close else {
            return;
        };
        match flow.tracker.as_mut() {
            Some(tracker) => {
                let side = side_of(flow.client_stream == Some(index));
                let verdict = tracker.on_close(side, close, segment.ts);
                self.decide(key, verdict, out);
            }
            None => {
                if flow.suspect_not_tls {
                    self.stats.not_tls_ignored += 1;
                }
                self.forget(key);
            }
        }
    }

    fn touch(&mut self, key: &ConnectionKey, ts: Timestamp) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        let deadline = match &flow.tracker {
            Some(tracker) => tracker.idle_deadline(self.options.handshake_timeout),
            None => ts + self.options.handshake_timeout,
        }
        .max(ts);
        if deadline != flow.deadline {
            self.deadlines.remove(&(flow.deadline, flow.id));
            self.deadlines.insert((deadline, flow.id));
            flow.deadline = deadline;
        }
    }

    fn expire(&mut self, key: &ConnectionKey, out: &mut Vec<Decided>) {
        let now = self.clock;
        let timeout = self.options.handshake_timeout;
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        let gap = flow
            .streams
            .iter()
            .flatten()
            .any(|s| s.has_gap() || s.fin_blocked());
        let verdict = match flow.tracker.as_mut() {
            Some(_) if gap => Some(Verdict::Incomplete {
                detail: "bytes missing from the capture".to_string(),
            }),
            Some(tracker) => tracker.on_idle(now, timeout),
            None => {
                if flow.suspect_not_tls {
                    self.stats.not_tls_ignored += 1;
                }
                self.forget(key);
                return;
            }
        };
        match verdict {
            Some(verdict) => self.decide(key, verdict, out),
            None => {
                // Not yet: re-arm at the tracker's next deadline.
                let id = flow.id;
                let old = flow.deadline;
                let next = flow
                    .tracker
                    .as_ref()
                    .map_or(now + timeout, |t| t.idle_deadline(timeout))
                    .max(now + Duration::from_millis(1));
                flow.deadline = next;
                self.deadlines.remove(&(old, id));
                self.deadlines.insert((next, id));
            }
        }
    }

    fn end_flow(&mut self, key: &ConnectionKey, detail: &str, out: &mut Vec<Decided>) {
        let Some(flow) = self.flows.get(key) else {
            return;
        };
        match &flow.tracker {
            Some(tracker) => {
                let verdict = tracker.on_end(detail);
                self.decide(key, verdict, out);
            }
            None => {
                if flow.suspect_not_tls {
                    self.stats.not_tls_ignored += 1;
                }
                self.forget(key);
            }
        }
    }

    fn decide_not_tls(&mut self, key: &ConnectionKey, at: Timestamp, out: &mut Vec<Decided>) {
        if let Some(flow) = self.flows.get(key) {
            if let Some(context) = context_of(key, flow) {
                let record = not_tls_record(&context, flow.first_seen, at);
                out.push(Decided {
                    key: key.clone(),
                    client_seq: flow.client_payload_seq(),
                    record,
                });
            }
        }
        self.forget(key);
    }

    fn decide(&mut self, key: &ConnectionKey, verdict: Verdict, out: &mut Vec<Decided>) {
        if let Some(flow) = self.flows.get(key) {
            if let (Some(tracker), Some(context)) = (&flow.tracker, context_of(key, flow)) {
                let record =
                    handshake_record(&context, tracker, flow.client_hello_segments, verdict);
                out.push(Decided {
                    key: key.clone(),
                    client_seq: flow.client_payload_seq(),
                    record,
                });
            }
        }
        self.forget(key);
    }

    /// Removes a flow and remembers it as finished so its later packets are ignored.
    fn forget(&mut self, key: &ConnectionKey) {
        let Some(flow) = self.flows.remove(key) else {
            return;
        };
        self.deadlines.remove(&(flow.deadline, flow.id));
        self.keys_by_id.remove(&flow.id);
        for stream in flow.streams.iter().flatten() {
            let r = stream.reassembly_stats();
            self.stats.retransmitted_bytes += r.retransmitted_bytes;
            self.stats.overlap_conflicts += r.overlap_conflicts;
            self.stats.gap_bytes += r.gap_bytes;
            self.stats.reassembly_dropped_bytes += r.dropped_over_limit_bytes;
        }
        if self.finished_order.len() >= self.options.max_flows.max(1) {
            if let Some(oldest) = self.finished_order.pop_front() {
                self.finished.remove(&oldest);
            }
        }
        self.finished.insert(key.clone());
        self.finished_order.push_back(key.clone());
    }

    /// Out-of-order bytes held over all flows.
    pub fn buffered_bytes(&self) -> usize {
        self.flows
            .values()
            .flat_map(|f| f.streams.iter().flatten())
            .map(|s| s.buffered_bytes())
            .sum()
    }
}

impl Flow {
    /// Sequence number of the client's first payload byte, once the client is known.
    fn client_payload_seq(&self) -> Option<u32> {
        self.first_payload_seq[self.client_stream?]
    }
}

/// The flow's endpoints and the hook direction of its client, once known.
fn context_of<'a>(key: &'a ConnectionKey, flow: &Flow) -> Option<FlowContext<'a>> {
    let client_index = flow.client_stream?;
    let (client, server) = if client_index == 0 {
        (key.lo, key.hi)
    } else {
        (key.hi, key.lo)
    };
    let client_packet_direction = flow.streams[client_index].as_ref()?.packet_direction;
    Some(FlowContext {
        device: key.device.name(),
        client,
        server,
        client_packet_direction,
    })
}

#[cfg(test)]
mod tests;
