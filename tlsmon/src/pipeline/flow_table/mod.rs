//! The flow table: [`Segment`]s in, one [`HandshakeEvent`] per handshake out.
//!
//! Each TCP connection on each device gets, per direction that carried bytes, a
//! [`direction::DirectionStream`] (reassembly + TLS parsing) and, from its ClientHello on,
//! a [`HandshakeTracker`](crate::pipeline::outcome::HandshakeTracker) that decides the outcome.
//! Decided connections leave the table and are remembered (by a 64-bit fingerprint of
//! their key, in a bounded set) so that their later packets are ignored instead of
//! starting a new flow.
//!
//! Memory is bounded by `max_flows`, and floods cannot push real handshakes out:
//! flows are in one of three classes, see [`FlowClass`]. Opening flows (no ClientHello
//! yet: a SYN, or bytes that do not form one yet) and unanswered ones (a ClientHello
//! the server has not answered) may each take at most a quarter of `max_flows`
//! ([`HALF_OPEN_SHARE`]); beyond it their least recently active member is evicted.
//! When the whole table is full, a newcomer evicts the least recently active opening
//! flow, else unanswered one; a handshake the server answered is never evicted, so
//! when nothing else is left the newcomer is refused. Every eviction and refusal is
//! counted ([`FlowStats`]); an evicted handshake is reported as `incomplete`.
//!
//! Sizes are those of the common case, a ClientHello waiting for its answer: a
//! direction gets its stream only when it carries bytes, the ClientHello is kept
//! compactly, buffers live only while a push runs, and maps shrink and the allocator
//! gives memory back once a flood has drained ([`FlowTable::advance_clock`]).

mod direction;
mod setup;

use std::collections::{BTreeMap, HashMap as StdHashMap, HashSet as StdHashSet, VecDeque};
use std::hash::BuildHasher;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use crate::event::{FailureReason, HandshakeEvent};
use crate::pipeline::outcome::{Close, Failure, HandshakeTracker, Verdict};
use crate::pipeline::preamble::{Preamble, Role, StarttlsProtocol, DEFAULT_STARTTLS_PORTS};
use crate::pipeline::reassembly::ReassemblyLimits;
use crate::pipeline::tls::{ClientHello, TlsMessage};
use crate::source::segment::{ConnectionKey, PacketDirection, Segment, Timestamp};

use super::diagnosis::HandshakeClues;
use super::event_builder::{
    clues_of, handshake_record, not_tls_record, record_without_hello, side_of, FlowContext,
};
use direction::{DirectionStream, PreambleNews, Scratch, TimedMessage};
use setup::{held_syn, judge_syn_data, Numbering, SynDataVerdict};

/// Connection keys are hashed several times per segment, so SipHash showed up as
/// the top cost of `analyze` (10% of its time). foldhash with a per-process random
/// seed is several times faster and still keeps an outsider, who picks addresses
/// and ports but cannot see the seed, from aiming collisions at one bucket.
type Hasher = foldhash::quality::RandomState;
type HashMap<K, V> = StdHashMap<K, V, Hasher>;
type HashSet<K> = StdHashSet<K, Hasher>;

/// Ports on which a connection that does not start with TLS is reported as `not_tls`
/// (elsewhere it is simply not a TLS connection and is ignored).
pub const DEFAULT_TLS_PORTS: &[u16] = &[
    443, 465, 563, 636, 853, 989, 990, 992, 993, 994, 995, 4433, 5061, 6443, 8443, 9443,
];

/// Opening flows, and unanswered ones, may each hold at most `max_flows /
/// HALF_OPEN_SHARE` entries (at least one): a quarter of the table each, so that at
/// least half of it is always left to handshakes the server answered.
pub const HALF_OPEN_SHARE: usize = 4;

/// How often (in table time) maps are shrunk and the allocator is asked to give
/// memory back, when enough was freed since the last time.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// Flows that must have ended since the last trim before the next one is worth its
/// cost (a walk over the allocator's free lists).
const TRIM_AFTER_FREED_FLOWS: u64 = 1024;

/// Maps this small are never shrunk (their memory is negligible, and shrinking them
/// would only make them grow again).
const SHRINK_ABOVE_CAPACITY: usize = 4096;

/// Default time a handshake may go without new bytes before it fails with `timeout`;
/// the configuration file and the command line take their default from here.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default number of connections tracked at once; the configuration file and the
/// command line take their default from here.
pub const DEFAULT_MAX_FLOWS: usize = 65_536;

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
    /// Server ports whose sessions upgrade to TLS in-band, and their protocol.
    pub starttls_ports: Vec<(u16, StarttlsProtocol)>,
}

impl Default for FlowTableOptions {
    fn default() -> Self {
        FlowTableOptions {
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_flows: DEFAULT_MAX_FLOWS,
            reassembly: ReassemblyLimits::default(),
            tls_ports: DEFAULT_TLS_PORTS.to_vec(),
            starttls_ports: DEFAULT_STARTTLS_PORTS.to_vec(),
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
    /// cgroup v2 id of the local socket (live only; `None` when the kernel saw
    /// none: forwarded traffic, or no egress packet of the connection).
    pub cgroup_id: Option<u64>,
    /// Its handshake event.
    pub event: HandshakeEvent,
    /// What the tracker saw beyond the event, for the diagnosis.
    pub clues: HandshakeClues,
}

/// A ClientHello the table just read, handed over when the table was asked to
/// collect them ([`FlowTable::collect_client_hellos`]): the pipeline links the same
/// ClientHello seen on two devices (see `pipeline::forwarding`).
#[derive(Clone, Debug)]
pub struct ClientHelloSeen {
    /// The connection (as in its [`Decided`], with `client_seq`, later).
    pub key: ConnectionKey,
    /// Sequence number of the client's first payload byte.
    pub client_seq: Option<u32>,
    /// Hook direction the client's bytes crossed the device in.
    pub direction: PacketDirection,
    /// The server's address and port.
    pub server: std::net::SocketAddr,
    /// When the ClientHello was complete.
    pub ts: Timestamp,
    /// What it offered.
    pub hello: ClientHello,
}

/// Counters of the flow table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Connections tracked (a ClientHello or SYN was seen).
    pub flows_created: u64,
    /// Flows pushed out to stay within the bounds (the sum of `evicted_opening` and
    /// `evicted_unanswered`; handshakes among them are reported as incomplete).
    pub flows_evicted: u64,
    /// Opening flows (no ClientHello yet: SYN-only or half a ClientHello) evicted.
    pub evicted_opening: u64,
    /// Handshakes whose ClientHello the server had not answered, evicted.
    pub evicted_unanswered: u64,
    /// New connections not tracked because the table was full of handshakes the
    /// server answered (nothing could be evicted); their later packets are ignored.
    pub flows_refused: u64,
    /// Connections whose first bytes were neither TLS nor on a TLS port: not reported.
    pub not_tls_ignored: u64,
    /// Connections first seen mid-handshake or mid-session (no ClientHello): not reported.
    pub midstream_ignored: u64,
    /// Flows still undecided when a new connection opened on their 4-tuple (decided
    /// with what was seen, as `incomplete` unless the outcome was already clear).
    pub flows_superseded: u64,
    /// Messages that were malformed (each also makes a `protocol_error` record).
    pub parse_errors: u64,
    /// Connections that began with a preamble (PROXY header, CONNECT, SOCKS, a
    /// STARTTLS session) that never led to a ClientHello: broken, refused (CONNECT,
    /// SOCKS), longer than its bound, not followed by TLS, or ended first. Not
    /// reported.
    pub preambles_without_tls: u64,
    /// Retransmitted bytes (exact duplicates) seen by reassembly, over finished flows.
    pub retransmitted_bytes: u64,
    /// Overlaps whose bytes disagreed with what was already held (first copy won).
    pub overlap_conflicts: u64,
    /// Bytes never captured (holes), over finished flows.
    pub gap_bytes: u64,
    /// Bytes dropped by reassembly bounds, over finished flows.
    pub reassembly_dropped_bytes: u64,
    /// Resume points handed to the kernel: "the next byte this direction needs is
    /// at sequence S" (live only).
    pub resume_requests: u64,
    /// Captured bytes not looked at because the parser did not need them (the rest
    /// of a certificate chain, encrypted payloads), over finished flows.
    pub skipped_bytes: u64,
}

/// What a flow waits for, which decides what may evict it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FlowClass {
    /// No ClientHello yet: a SYN, or first bytes that do not form a whole one yet.
    Opening = 0,
    /// A ClientHello the server has not answered with a single byte.
    Unanswered = 1,
    /// The server answered the ClientHello: never evicted.
    Answered = 2,
}

impl FlowClass {
    fn detail(self) -> &'static str {
        match self {
            FlowClass::Opening => "evicted: too many connections opening without a ClientHello",
            FlowClass::Unanswered => "evicted: too many ClientHellos without an answer",
            FlowClass::Answered => "evicted: too many flows in progress",
        }
    }
}

impl std::ops::AddAssign<&FlowStats> for FlowStats {
    /// Sums the counters of two tables (several capture files, one total).
    fn add_assign(&mut self, other: &FlowStats) {
        let FlowStats {
            flows_created,
            flows_evicted,
            evicted_opening,
            evicted_unanswered,
            flows_refused,
            not_tls_ignored,
            midstream_ignored,
            flows_superseded,
            parse_errors,
            preambles_without_tls,
            retransmitted_bytes,
            overlap_conflicts,
            gap_bytes,
            reassembly_dropped_bytes,
            resume_requests,
            skipped_bytes,
        } = other;
        self.flows_created += flows_created;
        self.flows_evicted += flows_evicted;
        self.evicted_opening += evicted_opening;
        self.evicted_unanswered += evicted_unanswered;
        self.flows_refused += flows_refused;
        self.not_tls_ignored += not_tls_ignored;
        self.midstream_ignored += midstream_ignored;
        self.flows_superseded += flows_superseded;
        self.parse_errors += parse_errors;
        self.preambles_without_tls += preambles_without_tls;
        self.retransmitted_bytes += retransmitted_bytes;
        self.overlap_conflicts += overlap_conflicts;
        self.gap_bytes += gap_bytes;
        self.reassembly_dropped_bytes += reassembly_dropped_bytes;
        self.skipped_bytes += skipped_bytes;
        self.resume_requests += resume_requests;
    }
}

/// What the table knows of one connection.
struct Flow {
    id: u64,
    class: FlowClass,
    /// Which stream belongs to the client, once its ClientHello (or non-TLS bytes)
    /// came (0 or 1: a byte keeps the flow small; see [`Flow::client`]).
    client_stream: Option<u8>,
    /// The first bytes were not TLS on a non-TLS port: drop at close unless the other
    /// side answers in TLS.
    suspect_not_tls: bool,
    client_hello_segments: u32,
    first_seen: Timestamp,
    deadline: Timestamp,
    /// Sequence numbering of each direction's SYN (the SYN-ACK the peer
    /// acknowledged), until that direction carries bytes. Index 0 is lo -> hi,
    /// index 1 hi -> lo, as for `streams`.
    numbering: [Numbering; 2],
    /// A client's SYN that carried bytes (TCP Fast Open), held until the server
    /// acknowledges them: only then are they part of the connection.
    syn_data: Option<Box<Segment>>,
    /// Per direction: sequence number of its first payload byte (which connection
    /// on a reused 4-tuple this is, for the kernel and for a new SYN).
    first_payload_seq: [Option<u32>; 2],
    /// Directions that carried bytes (or a FIN).
    streams: [Option<Box<DirectionStream>>; 2],
    tracker: Option<Box<HandshakeTracker>>,
    /// cgroup v2 id of the local socket, from the first segment that carried one.
    cgroup_id: Option<NonZeroU64>,
    /// What the client's preamble said, when one came before the ClientHello.
    preamble: Option<Box<Preamble>>,
    /// The client asked for a STARTTLS upgrade.
    starttls_requested: bool,
}

impl Flow {
    /// Sequence number of the client's first payload byte, once the client is known.
    fn client_payload_seq(&self) -> Option<u32> {
        self.first_payload_seq[self.client()?]
    }

    /// Index of the client's stream, once known.
    fn client(&self) -> Option<usize> {
        self.client_stream.map(usize::from)
    }

    fn set_client(&mut self, index: usize) {
        self.client_stream = Some(u8::from(index == 1));
    }

    fn class_now(&self) -> FlowClass {
        match (&self.tracker, self.client()) {
            (None, _) | (Some(_), None) => FlowClass::Opening,
            (Some(_), Some(client)) if self.streams[1 - client].is_some() => FlowClass::Answered,
            (Some(_), Some(_)) => FlowClass::Unanswered,
        }
    }

    /// True when the connection began with a preamble (complete or not).
    fn began_with_preamble(&self) -> bool {
        self.preamble.is_some()
            || self
                .streams
                .iter()
                .flatten()
                .any(|s| s.preamble_kind().is_some())
    }

    /// The preamble role of a stream that starts now at `index`: the first stream
    /// may begin one, the second answers the first's (CONNECT, SOCKS).
    fn preamble_role(&self, index: usize) -> Option<Role> {
        match &self.streams[1 - index] {
            None => Some(Role::Client),
            Some(other) => Role::of_reply(other.preamble_kind()),
        }
    }

    /// The stream that holds a ClientHello not complete yet, if any.
    fn unfinished_hello(&self) -> Option<usize> {
        (0..2).find(|&i| {
            self.streams[i]
                .as_ref()
                .is_some_and(|s| s.client_hello_unfinished())
        })
    }
}

/// The set of connections being analysed.
pub struct FlowTable {
    options: FlowTableOptions,
    /// The key is shared with the flow's queue entry (one copy of 80 bytes, not two),
    /// and the flow is boxed: a hash table has up to twice the slots it fills, and
    /// empty slots then cost 16 bytes, not the size of a flow.
    flows: HashMap<Arc<ConnectionKey>, Box<Flow>>,
    /// Per [`FlowClass`], (deadline, flow id) of each of its flows: the earliest to
    /// expire, and the least recently active to evict, come first.
    queues: [BTreeMap<(Timestamp, u64), Arc<ConnectionKey>>; 3],
    /// Fingerprints of decided (or refused) connections, oldest first in `finished_order`.
    finished: HashSet<u64>,
    finished_order: VecDeque<u64>,
    fingerprints: Hasher,
    next_id: u64,
    clock: Timestamp,
    stats: FlowStats,
    scratch: Scratch,
    messages: Vec<TimedMessage>,
    /// Connections that began with a preamble and ended without a record, with
    /// their client's first payload sequence number: live, the kernel is told to
    /// stop copying them (a plaintext session on a STARTTLS port can last long).
    /// At most `max_flows` entries until taken.
    dropped_preambles: Vec<(ConnectionKey, u32)>,
    /// When maps were last shrunk and memory given back, and flows ended since.
    last_maintenance: Timestamp,
    ended_since_trim: u64,
    /// ClientHellos read since the last [`FlowTable::take_client_hellos`], when
    /// collected (`None`: not collected, the common case of one device).
    client_hellos: Option<Vec<ClientHelloSeen>>,
    /// Resume points since the last [`FlowTable::take_resume_requests`], when asked
    /// for (`None`: capture files, which have nothing to steer).
    resumes: Option<Vec<ResumeRequest>>,
}

/// Where one direction of a tracked connection next needs bytes, for the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The connection.
    pub key: ConnectionKey,
    /// Sequence number of its client's first payload byte (which connection on
    /// the 4-tuple).
    pub client_seq: u32,
    /// The endpoint that sends the direction meant.
    pub sender: std::net::SocketAddr,
    /// Sequence number of the next byte needed: bytes before it may be skipped.
    pub seq: u32,
}

impl FlowTable {
    /// An empty table.
    pub fn new(options: FlowTableOptions) -> Self {
        FlowTable {
            options,
            flows: HashMap::default(),
            queues: Default::default(),
            finished: HashSet::default(),
            finished_order: VecDeque::new(),
            fingerprints: Hasher::default(),
            next_id: 0,
            clock: Timestamp::ZERO,
            stats: FlowStats::default(),
            scratch: Scratch::default(),
            messages: Vec::new(),
            dropped_preambles: Vec::new(),
            last_maintenance: Timestamp::ZERO,
            ended_since_trim: 0,
            client_hellos: None,
            resumes: None,
        }
    }

    /// Keeps resume points from now on for [`FlowTable::take_resume_requests`],
    /// which the caller must then call after each push (they are held until then).
    pub fn collect_resume_requests(&mut self) {
        self.resumes.get_or_insert_with(Vec::new);
    }

    /// Moves the resume points found since the last call into `out`.
    pub fn take_resume_requests(&mut self, out: &mut Vec<ResumeRequest>) {
        if let Some(resumes) = &mut self.resumes {
            out.append(resumes);
        }
    }

    /// Keeps every ClientHello read from now on for [`FlowTable::take_client_hellos`],
    /// which the caller must then call after each push (they are held until then).
    pub fn collect_client_hellos(&mut self) {
        self.client_hellos.get_or_insert_with(Vec::new);
    }

    /// Moves the ClientHellos read since the last call into `out`, in the order read.
    pub fn take_client_hellos(&mut self, out: &mut Vec<ClientHelloSeen>) {
        if let Some(hellos) = &mut self.client_hellos {
            out.append(hellos);
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

    /// Most flows of `class` tracked at once.
    fn bound(&self, class: FlowClass) -> usize {
        let max_flows = self.options.max_flows.max(1);
        match class {
            FlowClass::Answered => max_flows,
            _ => (max_flows / HALF_OPEN_SHARE).max(1),
        }
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
            let fingerprint = self.fingerprints.hash_one(&key);
            if self.finished.contains(&fingerprint)
                && !(opening && self.finished.remove(&fingerprint))
            {
                return;
            }
            let carries_bytes = !segment.payload.is_empty() || segment.cut > 0;
            if !carries_bytes && !segment.flags.syn() {
                return; // a bare ACK/FIN/RST of a connection we never saw start
            }
            if !self.make_room(out) {
                self.stats.flows_refused += 1;
                self.remember_finished(fingerprint);
                return;
            }
            self.insert_flow(Arc::new(key.clone()), segment.ts);
        }
        self.process(&key, &segment, out);
    }

    /// Moves time forward (capture time for files, wall time live) and decides
    /// handshakes that waited too long. Once a second of table time, maps that
    /// emptied are shrunk and, after many flows ended, the allocator is asked to
    /// give its free memory back (see [`release_free_memory`]).
    pub fn advance_clock(&mut self, now: Timestamp, out: &mut Vec<Decided>) {
        self.clock = self.clock.max(now);
        while let Some((deadline, key)) = self.earliest_deadline() {
            if deadline > self.clock {
                break;
            }
            self.expire(&key, out);
        }
        if self.clock.saturating_sub(self.last_maintenance) >= MAINTENANCE_INTERVAL {
            self.last_maintenance = self.clock;
            self.maintain();
        }
    }

    /// Ends the capture: every flow still open is decided with what was seen.
    pub fn finish(&mut self, out: &mut Vec<Decided>) {
        while self.finish_some(usize::MAX, out) {}
    }

    /// Ends the capture a part at a time: decides up to `limit` of the flows still
    /// open; true while some remain. A caller that hands each part on before asking
    /// for the next never holds the records of the whole table at once.
    pub fn finish_some(&mut self, limit: usize, out: &mut Vec<Decided>) -> bool {
        let keys: Vec<Arc<ConnectionKey>> = self.flows.keys().take(limit).cloned().collect();
        for key in keys {
            self.end_flow(&key, "capture ended before the handshake did", out);
        }
        !self.flows.is_empty()
    }

    fn earliest_deadline(&self) -> Option<(Timestamp, Arc<ConnectionKey>)> {
        self.queues
            .iter()
            .filter_map(|q| q.first_key_value())
            .min_by_key(|((deadline, id), _)| (*deadline, *id))
            .map(|((deadline, _), key)| (*deadline, key.clone()))
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

    fn insert_flow(&mut self, key: Arc<ConnectionKey>, ts: Timestamp) {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = ts + self.options.handshake_timeout;
        self.queues[FlowClass::Opening as usize].insert((deadline, id), key.clone());
        self.stats.flows_created += 1;
        self.flows.insert(
            key,
            Box::new(Flow {
                id,
                class: FlowClass::Opening,
                client_stream: None,
                suspect_not_tls: false,
                client_hello_segments: 0,
                first_seen: ts,
                deadline,
                numbering: [Numbering::default(); 2],
                syn_data: None,
                first_payload_seq: [None, None],
                streams: [None, None],
                tracker: None,
                cgroup_id: None,
                preamble: None,
                starttls_requested: false,
            }),
        );
    }

    /// Makes room for a new (opening) flow; false when only answered handshakes are
    /// left to evict and the newcomer must be refused.
    fn make_room(&mut self, out: &mut Vec<Decided>) -> bool {
        if self.class_len(FlowClass::Opening) >= self.bound(FlowClass::Opening) {
            self.evict_oldest(FlowClass::Opening, None, out);
        }
        while self.flows.len() >= self.options.max_flows.max(1) {
            if !self.evict_oldest(FlowClass::Opening, None, out)
                && !self.evict_oldest(FlowClass::Unanswered, None, out)
            {
                return false;
            }
        }
        true
    }

    fn class_len(&self, class: FlowClass) -> usize {
        self.queues[class as usize].len()
    }

    /// Evicts the least recently active flow of `class` other than `spare`; false
    /// if there is none.
    fn evict_oldest(
        &mut self,
        class: FlowClass,
        spare: Option<&ConnectionKey>,
        out: &mut Vec<Decided>,
    ) -> bool {
        let victim = self.queues[class as usize]
            .values()
            .find(|key| Some(&***key) != spare)
            .cloned();
        let Some(key) = victim else {
            return false;
        };
        self.stats.flows_evicted += 1;
        match class {
            FlowClass::Opening => self.stats.evicted_opening += 1,
            FlowClass::Unanswered => self.stats.evicted_unanswered += 1,
            FlowClass::Answered => {}
        }
        let records = out.len();
        self.end_flow(&key, class.detail(), out);
        if out.len() == records {
            // Nothing was reported (a SYN, say): the connection's later packets may
            // start it afresh. A real connection pushed out by a SYN scan between its
            // SYN and its ClientHello is then still seen.
            self.unremember(&key);
        }
        true
    }

    fn process(&mut self, key: &ConnectionKey, segment: &Segment, out: &mut Vec<Decided>) {
        let index = usize::from(segment.src != key.lo);
        if segment.flags.ack() {
            if let Some(accepted) = self.acknowledge(key, index, segment.ack) {
                // The client's SYN bytes come first: they precede this segment.
                self.process_bytes(key, 1 - index, &accepted, out);
                if !self.flows.contains_key(key) {
                    return;
                }
            }
        }
        if self.hold_syn_data(key, index, segment) {
            self.touch(key, segment.ts, out);
            return;
        }
        self.drop_resent_syn_data(key, segment);
        self.process_bytes(key, index, segment, out);
    }

    /// The client sends the bytes of its held SYN again, as ordinary bytes (the
    /// server refused them, which a live capture does not show): those count, and
    /// the held copy goes.
    fn drop_resent_syn_data(&mut self, key: &ConnectionKey, segment: &Segment) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        let resent = flow.syn_data.as_ref().is_some_and(|held| {
            held.src == segment.src
                && !segment.flags.syn()
                && !segment.payload.is_empty()
                && segment.seq == held.seq.wrapping_add(1)
        });
        if resent {
            flow.syn_data = None;
        }
    }

    /// The peer of direction `1 - index` acknowledged `ack`: it may pick that
    /// direction's numbering among its SYNs, and accept (returned) or refuse (dropped)
    /// the bytes of a held SYN.
    fn acknowledge(&mut self, key: &ConnectionKey, index: usize, ack: u32) -> Option<Box<Segment>> {
        let flow = self.flows.get_mut(key)?;
        let peer = 1 - index;
        if flow.streams[peer].is_none() {
            flow.numbering[peer].on_peer_ack(ack);
        }
        let held = flow.syn_data.as_ref()?;
        if usize::from(held.src != key.lo) != peer {
            return None;
        }
        match judge_syn_data(held, ack) {
            SynDataVerdict::Accepted => flow.syn_data.take(),
            SynDataVerdict::Refused => {
                flow.syn_data = None;
                None
            }
            SynDataVerdict::Undecided => None,
        }
    }

    /// Holds the bytes of a client's SYN (TCP Fast Open) until the server
    /// acknowledges them; true if `segment` was such a SYN.
    fn hold_syn_data(&mut self, key: &ConnectionKey, index: usize, segment: &Segment) -> bool {
        let opening_with_bytes = segment.flags.syn()
            && !segment.flags.ack()
            && (!segment.payload.is_empty() || segment.cut > 0);
        if !opening_with_bytes {
            return false;
        }
        let max_bytes = self.options.reassembly.max_buffered_bytes;
        let Some(flow) = self.flows.get_mut(key) else {
            return false;
        };
        if flow.streams[index].is_some() {
            // The direction already carries bytes: a late SYN is ordinary input.
            return false;
        }
        flow.numbering[index].on_syn(segment.seq);
        flow.syn_data = Some(held_syn(segment, max_bytes));
        true
    }

    /// Feeds one segment of direction `index` to its stream and the flow's tracker.
    fn process_bytes(
        &mut self,
        key: &ConnectionKey,
        index: usize,
        segment: &Segment,
        out: &mut Vec<Decided>,
    ) {
        let limits = self.options.reassembly;
        let mut messages = std::mem::take(&mut self.messages);
        messages.clear();
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        if flow.first_payload_seq[index].is_none() && !segment.payload.is_empty() {
            // A SYN's bytes (TCP Fast Open) start one after its sequence number.
            let syn = u32::from(segment.flags.syn());
            flow.first_payload_seq[index] = Some(segment.seq.wrapping_add(syn));
        }
        if flow.cgroup_id.is_none() {
            flow.cgroup_id = segment.cgroup_id.and_then(NonZeroU64::new);
        }
        let needs_stream = !segment.payload.is_empty() || segment.cut > 0 || segment.flags.fin();
        if flow.streams[index].is_none() && !needs_stream {
            // A SYN, SYN-ACK or bare ACK: remember where the bytes will start.
            if segment.flags.syn() {
                flow.numbering[index].on_syn(segment.seq);
            }
        } else {
            let isn = flow.numbering[index].take();
            let role = match starttls_role(
                &self.options.starttls_ports,
                segment,
                flow.starttls_requested,
            ) {
                Some(role) => Some(role),
                None => flow.preamble_role(index),
            };
            let client_seq = flow.first_payload_seq[flow.client().unwrap_or(index)];
            let stream = flow.streams[index].get_or_insert_with(|| {
                Box::new(DirectionStream::new(limits, segment.direction, isn, role))
            });
            stream.push(segment, &mut self.scratch, &mut messages);
            if let Some(resumes) = &mut self.resumes {
                // Only for a handshake under way: the kernel names the connection by
                // its client's first byte.
                if let (Some(seq), Some(client_seq)) = (stream.take_resume_point(), client_seq) {
                    self.stats.resume_requests += 1;
                    resumes.push(ResumeRequest {
                        key: key.clone(),
                        client_seq,
                        sender: segment.src,
                        seq,
                    });
                }
            }
            match stream.take_preamble_news() {
                Some(PreambleNews::Parsed(said)) => {
                    if matches!(role, Some(Role::StarttlsClient(_))) {
                        flow.starttls_requested = true;
                        if let Some(server) = flow.streams[1 - index].as_mut() {
                            server.arm_starttls();
                        }
                    }
                    flow.preamble = Some(Box::new(said));
                }
                Some(PreambleNews::Answered) | None => {}
                Some(PreambleNews::Failed {
                    kind,
                    reason,
                    refused,
                }) => {
                    self.messages = messages;
                    if refused {
                        flow.set_client(1 - index);
                        let mut failure = Failure::new(FailureReason::StarttlsRefused, segment.ts);
                        failure.detail = Some(reason);
                        self.decide_without_hello(key, Verdict::Failed(failure), out);
                    } else {
                        tracing::debug!("{} preamble on {key:?}: {reason}", kind.as_str());
                        self.drop_unreported(key);
                    }
                    return;
                }
            }
        }
        let verdict = self.handle_messages(key, index, segment, &mut messages, out);
        self.messages = messages;
        if verdict {
            return;
        }
        self.handle_closes(key, index, segment, out);
        self.touch(key, segment.ts, out);
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
            let side = side_of(flow.client() == Some(index));
            match flow.tracker.as_mut() {
                Some(tracker) => {
                    if let Some(verdict) = tracker.on_message(side, timed.parsed.message, timed.ts)
                    {
                        self.decide(key, verdict, out);
                        return true;
                    }
                }
                None => match timed.parsed.message {
                    TlsMessage::ClientHello(hello) => {
                        let segments = flow.streams[index]
                            .as_ref()
                            .map_or(1, |s| s.first_message_segments());
                        flow.set_client(index);
                        flow.client_hello_segments = segments;
                        flow.tracker = Some(Box::new(HandshakeTracker::new(&hello, timed.ts)));
                        if let Some(hellos) = &mut self.client_hellos {
                            hellos.push(ClientHelloSeen {
                                key: key.clone(),
                                client_seq: flow.first_payload_seq[index],
                                direction: segment.direction,
                                server: segment.dst,
                                ts: timed.ts,
                                hello,
                            });
                        }
                    }
                    // What follows a preamble is not TLS: nothing to report.
                    TlsMessage::NotTls if flow.preamble.is_some() => {
                        self.drop_unreported(key);
                        return true;
                    }
                    TlsMessage::NotTls if flow.client_stream.is_none() => {
                        flow.set_client(index);
                        let server_port = segment.dst.port();
                        if self.options.tls_ports.contains(&server_port) {
                            self.decide_not_tls(key, timed.ts, out);
                            return true;
                        }
                        flow.suspect_not_tls = true;
                    }
                    // A ClientHello that does not parse, or broken first bytes toward a
                    // TLS port: a handshake attempt that failed.
                    TlsMessage::Malformed { reason }
                        if flow.client_stream.is_none()
                            && (flow.streams[index]
                                .as_ref()
                                .is_some_and(|s| s.opened_with_client_hello())
                                || self.options.tls_ports.contains(&segment.dst.port())) =>
                    {
                        flow.set_client(index);
                        let mut failure = Failure::new(FailureReason::ProtocolError, timed.ts);
                        failure.detail = Some(format!("client: {reason}"));
                        self.decide_without_hello(key, Verdict::Failed(failure), out);
                        return true;
                    }
                    // The other side of a non-TLS opener answers in TLS (an alert from
                    // a TLS server): it was a TLS port after all.
                    ref reply
                        if flow.suspect_not_tls
                            && flow.client() != Some(index)
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
                        } else if !flow.began_with_preamble() {
                            self.stats.midstream_ignored += 1;
                        }
                        self.drop_unreported(key);
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
        let side = side_of(flow.client() == Some(index));
        match flow.tracker.as_mut() {
            Some(tracker) => {
                let verdict = tracker.on_close(side, close, segment.ts);
                self.decide(key, verdict, out);
            }
            None => match flow.unfinished_hello() {
                // The client gave up (or was turned away) halfway through its ClientHello.
                Some(client) => {
                    flow.set_client(client);
                    let side = side_of(client == index);
                    let reason = match close {
                        Close::Fin => FailureReason::Closed,
                        Close::Rst => FailureReason::Reset,
                    };
                    let mut failure = Failure::new(reason, segment.ts);
                    failure.closed_by = Some(side);
                    failure.detail = Some("before the ClientHello was complete".to_string());
                    self.decide_without_hello(key, Verdict::Failed(failure), out);
                }
                None => {
                    if flow.suspect_not_tls {
                        self.stats.not_tls_ignored += 1;
                    }
                    self.drop_unreported(key);
                }
            },
        }
    }

    /// After a segment: the flow's next deadline, and its class (which may make it
    /// evict the least recently active flow of its new class).
    fn touch(&mut self, key: &ConnectionKey, ts: Timestamp, out: &mut Vec<Decided>) {
        let timeout = self.options.handshake_timeout;
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        let deadline = match &flow.tracker {
            Some(tracker) => tracker.idle_deadline(timeout),
            None => ts + timeout,
        }
        .max(ts);
        let class = flow.class_now();
        let moved = class != flow.class;
        self.requeue(key, deadline, class);
        if moved && self.class_len(class) > self.bound(class) {
            self.evict_oldest(class, Some(key), out);
        }
    }

    /// Moves the flow's queue entry to `deadline` in the queue of `class`.
    fn requeue(&mut self, key: &ConnectionKey, deadline: Timestamp, class: FlowClass) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        if deadline == flow.deadline && class == flow.class {
            return;
        }
        let Some(queued) = self.queues[flow.class as usize].remove(&(flow.deadline, flow.id))
        else {
            return;
        };
        self.queues[class as usize].insert((deadline, flow.id), queued);
        flow.deadline = deadline;
        flow.class = class;
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
                if let Some(client) = flow.unfinished_hello() {
                    flow.set_client(client);
                    let verdict = if gap {
                        Verdict::Incomplete {
                            detail: "bytes missing from the capture before the ClientHello \
                                     was complete"
                                .to_string(),
                        }
                    } else {
                        let mut failure = Failure::new(FailureReason::Timeout, now);
                        failure.detail = Some(format!(
                            "ClientHello still incomplete after {} s",
                            timeout.as_secs_f64()
                        ));
                        Verdict::Failed(failure)
                    };
                    self.decide_without_hello(key, verdict, out);
                    return;
                }
                if flow.suspect_not_tls {
                    self.stats.not_tls_ignored += 1;
                }
                self.drop_unreported(key);
                return;
            }
        };
        match verdict {
            Some(verdict) => self.decide(key, verdict, out),
            None => {
                // Not yet: re-arm at the tracker's next deadline.
                let next = flow
                    .tracker
                    .as_ref()
                    .map_or(now + timeout, |t| t.idle_deadline(timeout))
                    .max(now + Duration::from_millis(1));
                let class = flow.class;
                self.requeue(key, next, class);
            }
        }
    }

    fn end_flow(&mut self, key: &ConnectionKey, detail: &str, out: &mut Vec<Decided>) {
        let Some(flow) = self.flows.get_mut(key) else {
            return;
        };
        match &flow.tracker {
            Some(tracker) => {
                let verdict = tracker.on_end(detail);
                self.decide(key, verdict, out);
            }
            None => match flow.unfinished_hello() {
                Some(client) => {
                    flow.set_client(client);
                    let gap = flow.streams[client].as_ref().is_some_and(|s| s.has_gap());
                    let detail = if gap {
                        "bytes missing from the capture before the ClientHello was complete"
                            .to_string()
                    } else {
                        format!("{detail} (the ClientHello was not complete)")
                    };
                    self.decide_without_hello(key, Verdict::Incomplete { detail }, out);
                }
                None => {
                    if flow.suspect_not_tls {
                        self.stats.not_tls_ignored += 1;
                    }
                    self.drop_unreported(key);
                }
            },
        }
    }

    fn decide_not_tls(&mut self, key: &ConnectionKey, at: Timestamp, out: &mut Vec<Decided>) {
        if let Some(flow) = self.flows.get(key) {
            if let Some(context) = context_of(key, flow) {
                let record = not_tls_record(&context, flow.first_seen, at);
                out.push(Decided {
                    key: key.clone(),
                    client_seq: flow.client_payload_seq(),
                    cgroup_id: flow.cgroup_id.map(NonZeroU64::get),
                    event: record,
                    clues: HandshakeClues::default(),
                });
            }
        }
        self.forget(key);
    }

    /// Decides a flow whose client never completed a ClientHello that parses.
    fn decide_without_hello(
        &mut self,
        key: &ConnectionKey,
        verdict: Verdict,
        out: &mut Vec<Decided>,
    ) {
        if let Some(flow) = self.flows.get(key) {
            if let Some(context) = context_of(key, flow) {
                let record = record_without_hello(&context, flow.first_seen, verdict);
                out.push(Decided {
                    key: key.clone(),
                    client_seq: flow.client_payload_seq(),
                    cgroup_id: flow.cgroup_id.map(NonZeroU64::get),
                    event: record,
                    clues: HandshakeClues::default(),
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
                    cgroup_id: flow.cgroup_id.map(NonZeroU64::get),
                    event: record,
                    clues: clues_of(tracker),
                });
            }
        }
        self.forget(key);
    }

    /// Forgets a flow that ends without a record, counting a preamble that never
    /// led to a ClientHello.
    fn drop_unreported(&mut self, key: &ConnectionKey) {
        if let Some(flow) = self.flows.get(key) {
            if flow.tracker.is_none() && flow.began_with_preamble() {
                self.stats.preambles_without_tls += 1;
                let client_seq = (0..2)
                    .find(|&i| {
                        flow.streams[i]
                            .as_ref()
                            .is_some_and(|s| s.began_with_client_preamble())
                    })
                    .and_then(|i| flow.first_payload_seq[i]);
                // Bounded like the table: a caller that never takes them
                // (`analyze`) does not grow it past `max_flows`.
                if let Some(seq) = client_seq {
                    if self.dropped_preambles.len() < self.options.max_flows.max(1) {
                        self.dropped_preambles.push((key.clone(), seq));
                    }
                }
            }
        }
        self.forget(key);
    }

    /// Takes the connections that began with a preamble and ended without a
    /// record since the last call, with their client's first payload sequence
    /// number (what releasing the kernel's flow needs).
    pub fn take_dropped_preambles(&mut self) -> Vec<(ConnectionKey, u32)> {
        std::mem::take(&mut self.dropped_preambles)
    }

    /// Removes a flow and remembers it as finished so its later packets are ignored.
    fn forget(&mut self, key: &ConnectionKey) {
        let Some(flow) = self.flows.remove(key) else {
            return;
        };
        self.queues[flow.class as usize].remove(&(flow.deadline, flow.id));
        for stream in flow.streams.iter().flatten() {
            let r = stream.reassembly_stats();
            self.stats.retransmitted_bytes += r.retransmitted_bytes;
            self.stats.overlap_conflicts += r.overlap_conflicts;
            self.stats.gap_bytes += r.gap_bytes;
            self.stats.reassembly_dropped_bytes += r.dropped_over_limit_bytes;
            self.stats.skipped_bytes += r.skipped_bytes;
        }
        self.ended_since_trim += 1;
        let fingerprint = self.fingerprints.hash_one(key);
        self.remember_finished(fingerprint);
    }

    /// Adds a connection's fingerprint to the bounded set of finished ones.
    fn remember_finished(&mut self, fingerprint: u64) {
        if self.finished_order.len() >= self.options.max_flows.max(1) {
            if let Some(oldest) = self.finished_order.pop_front() {
                self.finished.remove(&oldest);
            }
        }
        self.finished.insert(fingerprint);
        self.finished_order.push_back(fingerprint);
    }

    /// Takes back the most recent [`FlowTable::remember_finished`] of `key`.
    fn unremember(&mut self, key: &ConnectionKey) {
        let fingerprint = self.fingerprints.hash_one(key);
        if self.finished_order.back() == Some(&fingerprint) {
            self.finished_order.pop_back();
            self.finished.remove(&fingerprint);
        }
    }

    /// Shrinks what a flood left oversized and, once enough flows ended, hands the
    /// allocator's free memory back to the system.
    fn maintain(&mut self) {
        let mut shrunk = false;
        let len = self.flows.len();
        if self.flows.capacity() > SHRINK_ABOVE_CAPACITY && self.flows.capacity() > 4 * len {
            self.flows.shrink_to(2 * len);
            shrunk = true;
        }
        // A burst can leave the per-push buffers large; they are refilled on demand.
        if self.messages.capacity() > 256 {
            self.messages = Vec::new();
        }
        self.scratch.shrink();
        if shrunk || self.ended_since_trim >= TRIM_AFTER_FREED_FLOWS {
            self.ended_since_trim = 0;
            release_free_memory();
        }
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

/// Asks the allocator to return its free memory to the system.
///
/// glibc's malloc keeps freed memory for reuse and gives back only the top of its
/// heaps, and only beyond a threshold that grows with the sizes it has seen; memory
/// freed below a block still in use stays resident. After a flood, the freed flows lie
/// all over the heap among a few live blocks, so without this the daemon would keep
/// its peak size for good. `malloc_trim(0)` returns every whole free page of every
/// arena (madvise) without moving anything; it walks the free lists, so it runs only
/// after many flows ended, at most once per [`MAINTENANCE_INTERVAL`]. The call
/// exists only in glibc; other C libraries are left to their own policy.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only releases free pages.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The STARTTLS role of a stream that starts with `segment`: its sender is the
/// client when it sends to a STARTTLS port, the server when it sends from one.
fn starttls_role(
    ports: &[(u16, StarttlsProtocol)],
    segment: &Segment,
    requested: bool,
) -> Option<Role> {
    let protocol_of = |port: u16| {
        ports
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, proto)| *proto)
    };
    if let Some(protocol) = protocol_of(segment.dst.port()) {
        return Some(Role::StarttlsClient(protocol));
    }
    protocol_of(segment.src.port()).map(|protocol| Role::StarttlsServer {
        protocol,
        armed: requested,
    })
}

/// The flow's endpoints and the hook direction of its client, once known.
fn context_of<'a>(key: &'a ConnectionKey, flow: &'a Flow) -> Option<FlowContext<'a>> {
    let client_index = flow.client()?;
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
        preamble: flow.preamble.as_deref(),
    })
}

#[cfg(test)]
mod tests;
