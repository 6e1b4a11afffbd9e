//! One QUIC connection's handshake: its Initial keys, both CRYPTO streams, and the
//! rules that decide how it ended.
//!
//! - `established`: both sides sent a short-header (1-RTT) packet after the server
//!   answered.
//! - `failed` / `alert`: a CONNECTION_CLOSE with CRYPTO_ERROR (0x0100 + alert) in an
//!   Initial packet; the alert's sender is the side that closed.
//! - `failed` / `closed`: a CONNECTION_CLOSE with any other code (named in `detail`).
//! - `failed` / `version_negotiation`: the server listed its versions and nothing
//!   followed.
//! - `failed` / `timeout`: the server answered and the handshake then stalled.
//! - A client Initial that no authenticated server packet answered is never a
//!   handshake ([`Ending::Unanswered`]): UDP sources are free to forge.

use std::net::SocketAddr;
use std::time::Duration;

use crate::event::{FailureReason, Side};
use crate::pipeline::outcome::{Failure, HandshakeTracker, Verdict};
use crate::pipeline::tls::{decode_handshake, TlsMessage};
use crate::source::segment::{PacketDirection, Timestamp};

use super::crypto_stream::CryptoStream;
use super::frames::{for_each_frame, transport_error_name, Frame};
use super::header::{KnownVersion, LongPacket, LongType};
use super::keys::{InitialKeys, OpenError};
use super::QuicStats;

/// First CRYPTO_ERROR code: 0x0100 + TLS alert (RFC 9001 section 4.8).
const CRYPTO_ERROR_BASE: u64 = 0x0100;

/// How a connection left the table.
#[derive(Debug)]
pub(crate) enum Ending {
    /// A handshake to report.
    Report(Verdict),
    /// Only the client spoke: not a handshake (counted).
    Unanswered,
}

/// Initial keys with the DCID they come from.
struct KeySet {
    dcid: Vec<u8>,
    keys: InitialKeys,
}

/// What tlsmon follows of one connection.
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) client: SocketAddr,
    pub(crate) server: SocketAddr,
    pub(crate) client_direction: PacketDirection,
    pub(crate) cgroup_id: Option<u64>,
    pub(crate) version: u32,
    known: KnownVersion,
    /// The client's first keys, and (after a Retry) the keys of the DCID it names.
    /// At most two: a second Retry is ignored.
    keys: Vec<KeySet>,
    client_scid: Vec<u8>,
    server_scid: Option<Vec<u8>>,
    /// A Retry was confirmed: a packet opened with the keys it implies.
    pub(crate) retry: bool,
    /// The server's Version Negotiation list, when one came.
    version_negotiation: Option<Vec<u32>>,
    /// Index 0 the client's stream, 1 the server's.
    streams: [CryptoStream; 2],
    largest_pn: [Option<u64>; 2],
    hello: Option<Box<HandshakeTracker>>,
    /// Initial packets that carried the ClientHello's bytes.
    pub(crate) hello_packets: u32,
    server_hello_seen: bool,
    /// An authenticated server Initial was seen.
    server_answered: bool,
    short_seen: [bool; 2],
    pub(crate) started: Timestamp,
    pub(crate) last_activity: Timestamp,
    /// The client's CRYPTO stream did not begin with a ClientHello.
    malformed: Option<String>,
}

impl Connection {
    /// A connection whose client sent `first` (an Initial that opened with keys
    /// from its own DCID).
    pub(crate) fn new(
        id: u64,
        client: SocketAddr,
        server: SocketAddr,
        client_direction: PacketDirection,
        first: &LongPacket<'_>,
        keys: InitialKeys,
        ts: Timestamp,
    ) -> Self {
        Connection {
            id,
            client,
            server,
            client_direction,
            cgroup_id: None,
            version: match first.version {
                KnownVersion::V1 => super::header::VERSION_1,
                KnownVersion::V2 => super::header::VERSION_2,
            },
            known: first.version,
            keys: vec![KeySet {
                dcid: first.dcid.to_vec(),
                keys,
            }],
            client_scid: first.scid.to_vec(),
            server_scid: None,
            retry: false,
            version_negotiation: None,
            streams: Default::default(),
            largest_pn: [None; 2],
            hello: None,
            hello_packets: 0,
            server_hello_seen: false,
            server_answered: false,
            short_seen: [false; 2],
            started: ts,
            last_activity: ts,
            malformed: None,
        }
    }

    /// The DCID the client's first Initial named.
    pub(crate) fn original_dcid(&self) -> &[u8] {
        &self.keys[0].dcid
    }

    /// The ClientHello tracker, once the ClientHello was read.
    pub(crate) fn hello(&self) -> Option<&HandshakeTracker> {
        self.hello.as_deref()
    }

    /// An authenticated server packet was seen (or the server listed versions).
    pub(crate) fn answered(&self) -> bool {
        self.server_answered || self.version_negotiation.is_some()
    }

    /// A long-header packet of this connection; `scratch` is a buffer to open it in.
    pub(crate) fn on_long(
        &mut self,
        from_client: bool,
        packet: &LongPacket<'_>,
        ts: Timestamp,
        scratch: &mut Vec<u8>,
        stats: &mut QuicStats,
    ) -> Option<Verdict> {
        match packet.kind {
            LongType::Initial => self.on_initial(from_client, packet, ts, scratch, stats),
            LongType::Retry => {
                self.on_retry(from_client, packet, stats);
                None
            }
            // Handshake and 0-RTT packets are protected with keys only the
            // endpoints have: they show that the connection is alive, no more.
            LongType::Handshake | LongType::ZeroRtt => {
                if self.cid_matches(from_client, packet.dcid) {
                    self.last_activity = ts;
                }
                None
            }
        }
    }

    /// True when `dcid` is one the peer of the sender chose (or may still be
    /// unknown): the client addresses the server's SCID (or, before the server
    /// answered, one of the DCIDs it picked); the server addresses the client's SCID.
    fn cid_matches(&self, from_client: bool, dcid: &[u8]) -> bool {
        if from_client {
            self.server_scid.as_deref() == Some(dcid) || self.keys.iter().any(|k| k.dcid == dcid)
        } else {
            dcid == self.client_scid
        }
    }

    fn on_initial(
        &mut self,
        from_client: bool,
        packet: &LongPacket<'_>,
        ts: Timestamp,
        scratch: &mut Vec<u8>,
        stats: &mut QuicStats,
    ) -> Option<Verdict> {
        if packet.version != self.known || !self.cid_matches(from_client, packet.dcid) {
            stats.foreign_packets += 1;
            return None;
        }
        let side = usize::from(!from_client);
        // Try the newest keys first: after a Retry both sides use them.
        let mut opened = None;
        for (index, set) in self.keys.iter().enumerate().rev() {
            scratch.clear();
            scratch.extend_from_slice(packet.bytes);
            match set.keys.open(
                from_client,
                scratch,
                packet.pn_offset,
                self.largest_pn[side],
            ) {
                Ok(o) => {
                    opened = Some((index, o));
                    break;
                }
                Err(OpenError::TooShort) => {
                    stats.truncated_packets += 1;
                    return None;
                }
                Err(OpenError::Authentication) => {}
            }
        }
        let Some((key_index, opened)) = opened else {
            stats.authentication_failures += 1;
            return None;
        };
        if key_index > 0 {
            self.retry = true;
        }
        self.largest_pn[side] = Some(self.largest_pn[side].map_or(opened.pn, |l| l.max(opened.pn)));
        self.last_activity = ts;
        if !from_client {
            self.server_answered = true;
            if self.server_scid.is_none() {
                self.server_scid = Some(packet.scid.to_vec());
            }
        }
        let plain = &scratch[opened.header_len..opened.header_len + opened.plain_len];
        let mut close = None;
        let mut carried_hello = false;
        let stream = &mut self.streams[side];
        let parsed = for_each_frame(plain, |frame| match frame {
            Frame::Crypto { offset, data } => {
                carried_hello = true;
                stream.insert(offset, data);
            }
            Frame::ConnectionClose { code, application } => close = Some((code, application)),
        });
        if parsed.is_err() {
            stats.malformed_frames += 1;
        }
        if from_client && carried_hello && self.hello.is_none() {
            self.hello_packets += 1;
        }
        self.read_messages(side, ts);
        if let Some((code, application)) = close {
            return Some(self.closed(from_client, code, application, ts));
        }
        self.check_established(ts)
    }

    /// Feeds the whole handshake messages a stream now holds.
    fn read_messages(&mut self, side: usize, ts: Timestamp) {
        while let Some(message) = self.streams[side].next_message() {
            let decoded = decode_handshake(&message, None);
            if side == 0 {
                match (decoded, &mut self.hello) {
                    (TlsMessage::ClientHello(hello), None) => {
                        self.hello = Some(Box::new(HandshakeTracker::new(&hello, self.started)));
                    }
                    (TlsMessage::Malformed { reason }, None) => self.malformed = Some(reason),
                    (_, None) => {
                        self.malformed = Some(
                            "the client's CRYPTO stream does not begin with a ClientHello".into(),
                        )
                    }
                    // A second ClientHello (after a HelloRetryRequest).
                    (message, Some(tracker)) => {
                        tracker.on_message(Side::Client, message, ts);
                    }
                }
            } else if let Some(tracker) = &mut self.hello {
                let is_final_hello =
                    matches!(&decoded, TlsMessage::ServerHello(sh) if !sh.is_hello_retry_request);
                tracker.on_message(Side::Server, decoded, ts);
                if is_final_hello {
                    self.server_hello_seen = true;
                    // Everything else of the handshake is in Handshake packets.
                    for stream in &mut self.streams {
                        stream.release();
                    }
                }
            }
        }
    }

    /// A CONNECTION_CLOSE from `from_client`'s side.
    fn closed(&self, from_client: bool, code: u64, application: bool, ts: Timestamp) -> Verdict {
        let side = if from_client {
            Side::Client
        } else {
            Side::Server
        };
        let alert = (CRYPTO_ERROR_BASE..CRYPTO_ERROR_BASE + 0x100)
            .contains(&code)
            .then(|| (code - CRYPTO_ERROR_BASE) as u8)
            .filter(|_| !application);
        let mut failure = match alert {
            Some(alert) => {
                let mut failure = Failure::new(FailureReason::Alert, ts);
                failure.alert = Some(alert);
                failure.alert_sender = Some(side);
                failure
            }
            None => {
                let mut failure = Failure::new(FailureReason::Closed, ts);
                failure.detail = Some(if application {
                    format!(
                        "CONNECTION_CLOSE with application error 0x{code:x} in an Initial packet"
                    )
                } else {
                    format!(
                        "CONNECTION_CLOSE with transport error {} in an Initial packet",
                        transport_error_name(code)
                    )
                });
                failure
            }
        };
        failure.closed_by = Some(side);
        Verdict::Failed(failure)
    }

    fn on_retry(&mut self, from_client: bool, packet: &LongPacket<'_>, stats: &mut QuicStats) {
        // A Retry comes from the server, to the client's SCID, before any server
        // Initial, and at most once; anything else is not this connection's.
        if from_client
            || packet.dcid != self.client_scid
            || self.server_answered
            || self.keys.len() > 1
            || packet.scid.is_empty()
        {
            stats.foreign_packets += 1;
            return;
        }
        // Not trusted until a packet opens with its keys (`retry` is set then):
        // a forged Retry only adds a key set that never opens anything.
        self.keys.push(KeySet {
            dcid: packet.scid.to_vec(),
            keys: InitialKeys::derive(self.known, packet.scid),
        });
    }

    /// A Version Negotiation packet addressed to this connection's client.
    pub(crate) fn on_version_negotiation(
        &mut self,
        from_client: bool,
        dcid: &[u8],
        scid: &[u8],
        versions: Vec<u32>,
        ts: Timestamp,
        stats: &mut QuicStats,
    ) {
        if from_client
            || self.server_answered
            || dcid != self.client_scid
            || scid != self.original_dcid()
            || versions.contains(&self.version)
        {
            stats.foreign_packets += 1;
            return;
        }
        self.last_activity = ts;
        self.version_negotiation = Some(versions);
    }

    /// A short-header packet; `rest` is what was captured after its first byte.
    pub(crate) fn on_short(
        &mut self,
        from_client: bool,
        rest: &[u8],
        ts: Timestamp,
        stats: &mut QuicStats,
    ) -> Option<Verdict> {
        if !self.server_answered {
            stats.foreign_packets += 1;
            return None;
        }
        // Check the DCID when its bytes were captured (live capture keeps only the
        // first byte of a short-header packet).
        let expected = if from_client {
            self.server_scid.as_deref()
        } else {
            Some(self.client_scid.as_slice())
        };
        if let Some(cid) = expected {
            if rest.len() >= cid.len() && &rest[..cid.len()] != cid {
                stats.foreign_packets += 1;
                return None;
            }
        }
        self.last_activity = ts;
        self.short_seen[usize::from(!from_client)] = true;
        self.check_established(ts)
    }

    fn check_established(&self, ts: Timestamp) -> Option<Verdict> {
        (self.short_seen == [true, true]).then_some(Verdict::Established { at: ts })
    }

    /// Time passed: decides a connection that stayed quiet for `timeout`.
    pub(crate) fn on_idle(&self, now: Timestamp, timeout: Duration) -> Option<Ending> {
        if now.saturating_sub(self.last_activity) < timeout {
            return None;
        }
        if !self.answered() {
            return Some(Ending::Unanswered);
        }
        Some(Ending::Report(self.stalled(now, timeout)))
    }

    fn stalled(&self, now: Timestamp, timeout: Duration) -> Verdict {
        if let (Some(versions), false) = (&self.version_negotiation, self.server_answered) {
            let mut failure = Failure::new(FailureReason::VersionNegotiation, now);
            let listed: Vec<String> = versions
                .iter()
                .map(|&v| super::header::version_name(v))
                .collect();
            failure.detail = Some(format!(
                "the server offered QUIC versions [{}] and the client did not try again",
                listed.join(", ")
            ));
            return Verdict::Failed(failure);
        }
        let mut failure = Failure::new(FailureReason::Timeout, now);
        failure.detail = Some(if self.server_hello_seen {
            format!(
                "no 1-RTT packets from both sides within {} s",
                timeout.as_secs_f64()
            )
        } else {
            format!("handshake stalled for {} s", timeout.as_secs_f64())
        });
        Verdict::Failed(failure)
    }

    /// The input ended or the connection had to go.
    pub(crate) fn on_end(&self, detail: &str) -> Ending {
        if !self.answered() {
            return Ending::Unanswered;
        }
        Ending::Report(Verdict::Incomplete {
            detail: detail.to_string(),
        })
    }

    /// Why the client's CRYPTO stream could not be read, if it could not.
    pub(crate) fn malformed(&self) -> Option<&str> {
        self.malformed.as_deref()
    }

    /// CRYPTO bytes dropped by the bound.
    pub(crate) fn crypto_cut(&self) -> u64 {
        self.streams.iter().map(CryptoStream::cut).sum()
    }
}
