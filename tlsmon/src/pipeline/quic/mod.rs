//! QUIC handshakes (RFC 9000, RFC 9001, RFC 9369): UDP datagrams in, the same
//! [`Decided`] records as TCP out.
//!
//! QUIC carries the TLS 1.3 handshake in CRYPTO frames of Initial packets, which
//! anyone can open with keys derived from the client's first Destination
//! Connection ID. So the ClientHello and the ServerHello are readable passively;
//! the rest of the handshake travels in Handshake packets, which are not.
//!
//! - [`varint`]: QUIC integers and a bounds-checked reader;
//! - [`header`]: splits a datagram into packets, reads long headers, Version
//!   Negotiation and Retry;
//! - [`keys`]: Initial keys, header protection, AES-128-GCM (rustls's `quic`);
//! - [`frames`]: CRYPTO, CONNECTION_CLOSE, and every other frame skipped;
//! - [`crypto_stream`]: one direction's CRYPTO bytes in order, bounded;
//! - [`connection`]: one connection's handshake and how it ended;
//! - this file: the table of connections, bounded like the TCP flow table.
//!
//! Hostile input: UDP sources are free to forge, so only a client Initial that
//! opens with its own keys starts a connection, a connection whose server never
//! answered with an authenticated Initial is not reported (it is counted in
//! [`QuicStats::unanswered`]), and a packet must name the connection's IDs to
//! move it on. Truncated packets, lying lengths, connection IDs over 20 bytes and
//! packets that fail authentication are counted, never trusted.

mod connection;
pub mod crypto_stream;
pub mod frames;
pub mod header;
pub mod keys;
mod varint;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use crate::event::{FailureReason, Transport};
use crate::pipeline::diagnosis::HandshakeClues;
use crate::pipeline::event_builder::{
    clues_of, handshake_record, record_without_hello, FlowContext,
};
use crate::pipeline::flow_table::Decided;
use crate::pipeline::outcome::{Failure, Verdict};
use crate::source::segment::{ConnectionKey, Datagram, PacketDirection, Timestamp};

use connection::{Connection, Ending};
use header::{for_each_packet, version_name, HeaderError, LongType, Packet};
use keys::InitialKeys;

/// How often idle connections are looked for (table time).
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Counters of the QUIC table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuicStats {
    /// UDP datagrams looked at.
    pub datagrams: u64,
    /// Connections followed (a client Initial opened with its own keys).
    pub connections: u64,
    /// Connections whose client was never answered: not reported as handshakes.
    pub unanswered: u64,
    /// Connections pushed out to stay within the bound (reported as incomplete
    /// when the server had answered).
    pub evicted: u64,
    /// Of those, connections whose server had not answered (not reported; not
    /// in `unanswered`).
    pub evicted_unanswered: u64,
    /// Packets cut before their end: too short for header protection, or a
    /// header that runs past the datagram.
    pub truncated_packets: u64,
    /// Long headers whose Length field claims more than the datagram holds.
    pub lying_lengths: u64,
    /// Long headers with a connection ID over 20 bytes.
    pub cid_too_long: u64,
    /// Initial packets that failed authentication (forged, corrupt, or of a
    /// connection whose first Initial was not seen).
    pub authentication_failures: u64,
    /// Decrypted packets whose frames did not parse.
    pub malformed_frames: u64,
    /// Packets of a known connection that did not fit it (wrong IDs, a Retry or
    /// Version Negotiation out of place, 1-RTT before the server answered).
    pub foreign_packets: u64,
    /// Short-header packets of no followed connection.
    pub short_without_connection: u64,
    /// Long headers of versions other than v1 and v2.
    pub unknown_versions: u64,
    /// CRYPTO bytes past the per-direction bound, dropped.
    pub crypto_bytes_cut: u64,
}

impl QuicStats {
    /// True when something QUIC-like was seen: a connection, or a packet that
    /// was counted as broken or forged.
    pub fn saw_quic(&self) -> bool {
        self.connections
            + self.truncated_packets
            + self.lying_lengths
            + self.cid_too_long
            + self.authentication_failures
            + self.malformed_frames
            > 0
    }
}

impl std::ops::AddAssign<&QuicStats> for QuicStats {
    /// Sums the counters of two tables.
    fn add_assign(&mut self, o: &QuicStats) {
        self.datagrams += o.datagrams;
        self.connections += o.connections;
        self.unanswered += o.unanswered;
        self.evicted += o.evicted;
        self.evicted_unanswered += o.evicted_unanswered;
        self.truncated_packets += o.truncated_packets;
        self.lying_lengths += o.lying_lengths;
        self.cid_too_long += o.cid_too_long;
        self.authentication_failures += o.authentication_failures;
        self.malformed_frames += o.malformed_frames;
        self.foreign_packets += o.foreign_packets;
        self.short_without_connection += o.short_without_connection;
        self.unknown_versions += o.unknown_versions;
        self.crypto_bytes_cut += o.crypto_bytes_cut;
    }
}

/// The QUIC connections followed on every device, bounded.
pub struct QuicTable {
    connections: HashMap<ConnectionKey, Box<Connection>>,
    /// Keys of connections that were decided, with their original DCID, so that
    /// their later (retransmitted) Initials do not start them again. Bounded by
    /// `max_connections`, oldest forgotten first.
    decided: HashMap<ConnectionKey, Vec<u8>>,
    decided_order: VecDeque<ConnectionKey>,
    /// Connections in the order they were opened, for eviction (entries of
    /// connections that left already are skipped).
    opened_order: VecDeque<(u64, ConnectionKey)>,
    max_connections: usize,
    timeout: Duration,
    next_id: u64,
    next_sweep: Timestamp,
    scratch: Vec<u8>,
    stats: QuicStats,
}

impl QuicTable {
    /// An empty table of at most `max_connections` connections; a handshake quiet
    /// for `timeout` is decided.
    pub fn new(max_connections: usize, timeout: Duration) -> Self {
        QuicTable {
            connections: HashMap::new(),
            decided: HashMap::new(),
            decided_order: VecDeque::new(),
            opened_order: VecDeque::new(),
            max_connections: max_connections.max(1),
            timeout,
            next_id: 0,
            next_sweep: Duration::ZERO,
            scratch: Vec::new(),
            stats: QuicStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &QuicStats {
        &self.stats
    }

    /// Connections followed now.
    pub fn tracked(&self) -> usize {
        self.connections.len()
    }

    /// Takes one datagram; pushes what it decided to `out`.
    pub fn push(&mut self, datagram: Datagram, out: &mut Vec<Decided>) {
        self.stats.datagrams += 1;
        let key = key_of(&datagram);
        let payload = &datagram.payload;
        let mut packets = Vec::new();
        let parsed = for_each_packet(payload, |p| packets.push(p));
        match parsed {
            Ok(()) => {}
            Err(HeaderError::Truncated) => self.stats.truncated_packets += 1,
            // A packet the capture cut short reads like one whose Length lies.
            Err(HeaderError::LyingLength) if datagram.cut > 0 => self.stats.truncated_packets += 1,
            Err(HeaderError::LyingLength) => self.stats.lying_lengths += 1,
            Err(HeaderError::CidTooLong) => self.stats.cid_too_long += 1,
        }
        if packets.is_empty() {
            return;
        }
        if !self.connections.contains_key(&key) && !self.open(&key, &datagram, &packets, out) {
            return;
        }
        let Some(conn) = self.connections.get_mut(&key) else {
            return;
        };
        let from_client = datagram.src == conn.client;
        if from_client && conn.cgroup_id.is_none() {
            conn.cgroup_id = datagram.cgroup_id;
        }
        if conn.cgroup_id.is_none() && datagram.direction == PacketDirection::Egress {
            conn.cgroup_id = datagram.cgroup_id;
        }
        let mut verdict = None;
        for packet in packets {
            verdict = match packet {
                Packet::Long(p) => conn.on_long(
                    from_client,
                    &p,
                    datagram.ts,
                    &mut self.scratch,
                    &mut self.stats,
                ),
                Packet::Short { rest } => {
                    conn.on_short(from_client, rest, datagram.ts, &mut self.stats)
                }
                Packet::VersionNegotiation {
                    dcid,
                    scid,
                    versions,
                } => {
                    conn.on_version_negotiation(
                        from_client,
                        dcid,
                        scid,
                        versions,
                        datagram.ts,
                        &mut self.stats,
                    );
                    None
                }
                Packet::UnknownVersion { .. } => {
                    self.stats.unknown_versions += 1;
                    None
                }
            };
            if verdict.is_some() {
                break;
            }
        }
        if let Some(verdict) = verdict {
            self.decide(&key, Ending::Report(verdict), out);
        }
    }

    /// Starts a connection when `packets` hold a client Initial that opens with
    /// keys from its own DCID. False when nothing was started.
    fn open(
        &mut self,
        key: &ConnectionKey,
        datagram: &Datagram,
        packets: &[Packet<'_>],
        out: &mut Vec<Decided>,
    ) -> bool {
        let first = packets.iter().find_map(|p| match p {
            Packet::Long(p) if p.kind == LongType::Initial => Some(p),
            _ => None,
        });
        let Some(first) = first else {
            for packet in packets {
                match packet {
                    Packet::Short { .. } => self.stats.short_without_connection += 1,
                    Packet::UnknownVersion { .. } => self.stats.unknown_versions += 1,
                    _ => {}
                }
            }
            return false;
        };
        // Late packets of a decided connection are ignored; a new connection on
        // the same addresses (another DCID) may start.
        let after_decision = match self.decided.get(key) {
            Some(dcid) if dcid == first.dcid => return false,
            Some(_) => true,
            None => false,
        };
        let keys = InitialKeys::derive(first.version, first.dcid);
        self.scratch.clear();
        self.scratch.extend_from_slice(first.bytes);
        match keys.open(true, &mut self.scratch, first.pn_offset, None) {
            Ok(_) => {}
            Err(keys::OpenError::TooShort) => {
                self.stats.truncated_packets += 1;
                return false;
            }
            // After a decision this is most likely a late server Initial (whose
            // DCID is the client's SCID), not a forgery: not counted.
            Err(keys::OpenError::Authentication) => {
                if !after_decision {
                    self.stats.authentication_failures += 1;
                }
                return false;
            }
        }
        if self.connections.len() >= self.max_connections && !self.evict_one(out) {
            return false;
        }
        self.next_id += 1;
        let id = self.next_id;
        let conn = Connection::new(
            id,
            datagram.src,
            datagram.dst,
            datagram.direction,
            first,
            keys,
            datagram.ts,
        );
        self.stats.connections += 1;
        self.connections.insert(key.clone(), Box::new(conn));
        self.opened_order.push_back((id, key.clone()));
        true
    }

    /// Pushes out the oldest connection to make room (reported as incomplete when
    /// its server had answered); false when none is left. Every connection is
    /// decided within the timeout anyway, and what is evicted is counted.
    fn evict_one(&mut self, out: &mut Vec<Decided>) -> bool {
        while let Some((id, key)) = self.opened_order.pop_front() {
            let Some(conn) = self.connections.get(&key).filter(|c| c.id == id) else {
                continue;
            };
            let ending = conn.on_end("evicted: too many QUIC connections in progress");
            self.stats.evicted += 1;
            let unanswered = matches!(ending, Ending::Unanswered);
            self.decide(&key, ending, out);
            if unanswered {
                // Counted here, not in `unanswered` (which `decide` counted).
                self.stats.evicted_unanswered += 1;
                self.stats.unanswered -= 1;
            }
            return true;
        }
        false
    }

    /// Moves table time to `now`: connections quiet for the timeout are decided.
    pub fn advance_clock(&mut self, now: Timestamp, out: &mut Vec<Decided>) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_INTERVAL;
        let timeout = self.timeout;
        let idle: Vec<(ConnectionKey, Ending)> = self
            .connections
            .iter()
            .filter_map(|(key, conn)| conn.on_idle(now, timeout).map(|e| (key.clone(), e)))
            .collect();
        for (key, ending) in idle {
            self.decide(&key, ending, out);
        }
        // Forget the order entries of connections that are gone.
        if self.opened_order.len() > 2 * self.connections.len() + 64 {
            let connections = &self.connections;
            self.opened_order
                .retain(|(id, key)| connections.get(key).is_some_and(|c| c.id == *id));
        }
    }

    /// The input ended: decides every connection with what was seen.
    pub fn finish(&mut self, out: &mut Vec<Decided>) {
        let keys: Vec<ConnectionKey> = self.connections.keys().cloned().collect();
        for key in keys {
            let Some(conn) = self.connections.get(&key) else {
                continue;
            };
            let ending = conn.on_end("capture ended");
            self.decide(&key, ending, out);
        }
    }

    /// Removes the connection of `key` and reports it (or counts it unanswered).
    fn decide(&mut self, key: &ConnectionKey, ending: Ending, out: &mut Vec<Decided>) {
        let Some(conn) = self.connections.remove(key) else {
            return;
        };
        self.stats.crypto_bytes_cut += conn.crypto_cut();
        self.remember_decided(key, conn.original_dcid().to_vec());
        let verdict = match ending {
            Ending::Unanswered => {
                self.stats.unanswered += 1;
                return;
            }
            Ending::Report(verdict) => verdict,
        };
        out.push(decided_record(key, &conn, verdict));
    }

    fn remember_decided(&mut self, key: &ConnectionKey, dcid: Vec<u8>) {
        if self.decided.insert(key.clone(), dcid).is_none() {
            self.decided_order.push_back(key.clone());
        }
        while self.decided_order.len() > self.max_connections {
            if let Some(old) = self.decided_order.pop_front() {
                self.decided.remove(&old);
            }
        }
    }
}

/// The record of a decided QUIC handshake.
fn decided_record(key: &ConnectionKey, conn: &Connection, verdict: Verdict) -> Decided {
    let context = FlowContext {
        device: key.device.name(),
        client: conn.client,
        server: conn.server,
        client_packet_direction: conn.client_direction,
        preamble: None,
    };
    let (mut event, clues) = match conn.hello() {
        Some(tracker) => (
            handshake_record(&context, tracker, conn.hello_packets, verdict),
            clues_of(tracker),
        ),
        None => {
            // The ClientHello could not be read: a malformed one fails the
            // handshake as a protocol error, whatever else was seen.
            let verdict = match conn.malformed() {
                Some(reason) if !matches!(verdict, Verdict::Established { .. }) => {
                    let mut failure =
                        Failure::new(FailureReason::ProtocolError, conn.last_activity);
                    failure.detail = Some(reason.to_string());
                    Verdict::Failed(failure)
                }
                _ => verdict,
            };
            (
                record_without_hello(&context, conn.started, verdict),
                HandshakeClues::default(),
            )
        }
    };
    event.transport = Transport::Quic;
    event.quic_version = Some(version_name(conn.version));
    event.quic_retry = conn.retry;
    // JA4 marks QUIC ClientHellos with `q` where TCP ones have `t`.
    if let Some(ja4) = &mut event.ja4 {
        if ja4.starts_with('t') {
            ja4.replace_range(..1, "q");
        }
    }
    Decided {
        key: key.clone(),
        client_seq: None,
        cgroup_id: conn.cgroup_id,
        event,
        clues,
    }
}

/// The connection key of a datagram: device and the two endpoints, lower first.
fn key_of(datagram: &Datagram) -> ConnectionKey {
    let (lo, hi): (SocketAddr, SocketAddr) = if datagram.src <= datagram.dst {
        (datagram.src, datagram.dst)
    } else {
        (datagram.dst, datagram.src)
    };
    ConnectionKey {
        device: datagram.device.clone(),
        lo,
        hi,
    }
}

#[cfg(test)]
mod tests;
