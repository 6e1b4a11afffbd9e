//! Turns a decided handshake into the public [`HandshakeEvent`].

use std::net::SocketAddr;

use crate::event::{Direction, FailureReason, HandshakeEvent, Outcome, Side, Transport};
use crate::pipeline::diagnosis::HandshakeClues;
use crate::pipeline::outcome::{HandshakeTracker, Verdict};
use crate::pipeline::preamble::Preamble;
use crate::pipeline::tls::names;
use crate::source::segment::{PacketDirection, Timestamp};

/// Where a handshake happened: everything about it that is not TLS.
pub(crate) struct FlowContext<'a> {
    pub device: &'a str,
    pub client: SocketAddr,
    pub server: SocketAddr,
    /// Hook direction of the client's first segment.
    pub client_packet_direction: PacketDirection,
    /// What came before the ClientHello, if anything.
    pub preamble: Option<&'a Preamble>,
}

impl FlowContext<'_> {
    fn direction(&self) -> Direction {
        match self.client_packet_direction {
            PacketDirection::Ingress => Direction::Inbound,
            PacketDirection::Egress => Direction::Outbound,
            PacketDirection::Unknown => Direction::Unknown,
        }
    }

    /// A record with only the flow's identity filled in.
    fn bare_record(&self, ts: Timestamp, outcome: Outcome) -> HandshakeEvent {
        // A PROXY header names the original client; the connection's own client
        // (the load balancer) becomes the peer.
        let (client, peer) = match self.preamble.and_then(|p| p.source) {
            Some(original) => (original, Some(self.client)),
            None => (self.client, None),
        };
        HandshakeEvent {
            ts,
            device: self.device.to_string(),
            direction: self.direction(),
            client_ip: client.ip(),
            client_port: client.port(),
            peer_ip: peer.map(|p| p.ip()),
            peer_port: peer.map(|p| p.port()),
            preamble: self.preamble.map(|p| p.kind),
            tunnel_target: self.preamble.and_then(|p| p.tunnel_target.clone()),
            server_ip: self.server.ip(),
            server_port: self.server.port(),
            cgroup: None,
            service: None,
            outcome,
            failure_reason: None,
            alert: None,
            alert_sender: None,
            closed_by: None,
            detail: None,
            version: None,
            cipher: None,
            group: None,
            sni: None,
            alpn: None,
            offered_versions: Vec::new(),
            offered_ciphers: Vec::new(),
            offered_groups: Vec::new(),
            offered_alpn: Vec::new(),
            client_hello_bytes: None,
            client_hello_segments: None,
            hello_retry: false,
            resumed: false,
            ja3: None,
            ja3s: None,
            ja4: None,
            duration_ms: None,
            server_cert: None,
            forwarded: None,
            diagnosis: None,
            transport: Transport::Tcp,
            quic_version: None,
            quic_retry: false,
        }
    }
}

/// The record of a connection whose first bytes were not TLS.
pub(crate) fn not_tls_record(
    context: &FlowContext<'_>,
    started: Timestamp,
    at: Timestamp,
) -> HandshakeEvent {
    let mut record = context.bare_record(started, Outcome::Failed);
    record.failure_reason = Some(FailureReason::NotTls);
    record.detail = Some("the client's first bytes are not a TLS ClientHello".to_string());
    record.duration_ms = Some(millis(at.saturating_sub(started)));
    record
}

/// The record of a connection decided before a ClientHello could be read (cut short,
/// malformed, or abandoned halfway): its identity and the verdict only.
pub(crate) fn record_without_hello(
    context: &FlowContext<'_>,
    started: Timestamp,
    verdict: Verdict,
) -> HandshakeEvent {
    let outcome = match verdict {
        Verdict::Established { .. } => Outcome::Established,
        Verdict::Failed(_) => Outcome::Failed,
        Verdict::Incomplete { .. } => Outcome::Incomplete,
    };
    let mut record = context.bare_record(started, outcome);
    match verdict {
        Verdict::Established { at } => {
            record.duration_ms = Some(millis(at.saturating_sub(started)))
        }
        Verdict::Failed(failure) => {
            record.failure_reason = Some(failure.reason);
            record.alert = failure.alert.map(names::alert_name);
            record.alert_sender = failure.alert_sender;
            record.closed_by = failure.closed_by;
            record.detail = failure.detail;
            record.duration_ms = Some(millis(failure.at.saturating_sub(started)));
        }
        Verdict::Incomplete { detail } => record.detail = Some(detail),
    }
    record
}

/// The record of a handshake the tracker followed.
pub(crate) fn handshake_record(
    context: &FlowContext<'_>,
    tracker: &HandshakeTracker,
    client_hello_segments: u32,
    verdict: Verdict,
) -> HandshakeEvent {
    let mut record = record_without_hello(context, tracker.started(), verdict);

    let hello = tracker.client_hello();
    record.sni = hello.sni().map(str::to_string);
    record.offered_versions = if hello.supported_versions().len() == 0 {
        vec![names::version_name(hello.legacy_version())]
    } else {
        hello
            .supported_versions()
            .map(names::version_name)
            .collect()
    };
    record.offered_ciphers = hello.cipher_suites().map(names::cipher_name).collect();
    record.offered_groups = hello.supported_groups().map(names::group_name).collect();
    record.offered_alpn = hello.alpn().map(str::to_string).collect();
    record.client_hello_bytes = Some(hello.message_len());
    record.client_hello_segments = Some(client_hello_segments);
    record.ja3 = hello.ja3();
    record.ja4 = Some(hello.ja4().to_string()).filter(|s| !s.is_empty());

    // Version and cipher: what the server chose, even if only in a HelloRetryRequest
    // (it fixes both); the group only from a real key exchange, else the HRR's request.
    if let Some(reply) = tracker.latest_server_hello() {
        record.version = Some(names::version_name(reply.selected_version));
        record.cipher = Some(names::cipher_name(reply.cipher_suite));
    }
    record.group = tracker
        .negotiated_group()
        .or_else(|| {
            tracker
                .latest_server_hello()
                .and_then(|sh| sh.key_share_group)
        })
        .map(names::group_name);
    if let Some(server_hello) = tracker.server_hello() {
        record.alpn = server_hello.alpn.clone();
        record.ja3s = Some(server_hello.ja3s.clone()).filter(|s| !s.is_empty());
    }
    record.hello_retry = tracker.hello_retry();
    record.resumed = tracker.resumed();
    record.server_cert = tracker.server_cert().cloned();
    record
}

/// What the tracker saw beyond the record, for the diagnosis.
pub(crate) fn clues_of(tracker: &HandshakeTracker) -> HandshakeClues {
    HandshakeClues {
        server_replied: tracker.server_replied(),
        certificate_requested: tracker.certificate_requested(),
    }
}

/// The side a hook direction and client identity imply (used by the flow table).
pub(crate) fn side_of(is_client_stream: bool) -> Side {
    if is_client_stream {
        Side::Client
    } else {
        Side::Server
    }
}

fn millis(d: std::time::Duration) -> f64 {
    // Microsecond resolution is what captures give; more digits would be noise.
    (d.as_micros() as f64) / 1000.0
}
