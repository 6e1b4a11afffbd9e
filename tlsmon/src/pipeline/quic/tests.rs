//! The QUIC table on the RFC 9001 appendix A packets and on hostile datagrams.

use std::net::SocketAddr;
use std::time::Duration;

use super::{QuicStats, QuicTable};
use crate::event::{FailureReason, Outcome, Side, Transport};
use crate::pipeline::flow_table::Decided;
use crate::source::segment::{Datagram, Device, PacketDirection};

const V1_CLIENT: &str = include_str!("testdata/rfc9001_client_initial.hex");
const V1_SERVER: &str = include_str!("testdata/rfc9001_server_initial.hex");

fn unhex(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    hex::decode(clean).expect("hex")
}

fn client() -> SocketAddr {
    "192.0.2.10:50000".parse().unwrap()
}

fn server() -> SocketAddr {
    "192.0.2.1:443".parse().unwrap()
}

fn datagram(from_client: bool, payload: Vec<u8>, ms: u64) -> Datagram {
    let (src, dst) = if from_client {
        (client(), server())
    } else {
        (server(), client())
    };
    Datagram {
        ts: Duration::from_millis(1_000_000 + ms),
        device: Device::new("eth0"),
        direction: PacketDirection::Unknown,
        src,
        dst,
        payload,
        cut: 0,
        cgroup_id: None,
    }
}

/// A short-header packet to the server's connection ID (f067a5502a4262b5), as
/// the client sends after the handshake.
fn client_short() -> Vec<u8> {
    let mut p = vec![0x41];
    p.extend(unhex("f067a5502a4262b5"));
    p.extend([0u8; 30]);
    p
}

/// A short-header packet to the client's (empty) connection ID.
fn server_short() -> Vec<u8> {
    let mut p = vec![0x41];
    p.extend([0u8; 30]);
    p
}

fn run(datagrams: Vec<Datagram>) -> (Vec<Decided>, QuicStats) {
    let mut table = QuicTable::new(16, Duration::from_secs(10));
    let mut out = Vec::new();
    for d in datagrams {
        table.advance_clock(d.ts, &mut out);
        table.push(d, &mut out);
    }
    table.finish(&mut out);
    (out, table.stats().clone())
}

#[test]
fn the_rfc_exchange_with_1rtt_both_ways_is_established() {
    let (out, stats) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(false, unhex(V1_SERVER), 5),
        datagram(false, server_short(), 6),
        datagram(true, client_short(), 10),
    ]);
    assert_eq!(out.len(), 1, "{stats:?}");
    let e = &out[0].event;
    assert_eq!(e.outcome, Outcome::Established);
    assert_eq!(e.transport, Transport::Quic);
    assert_eq!(e.quic_version.as_deref(), Some("v1"));
    assert_eq!(e.sni.as_deref(), Some("example.com"));
    assert_eq!(e.offered_alpn, vec!["alpn".to_string()]);
    assert_eq!(e.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(e.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
    assert_eq!(e.group.as_deref(), Some("x25519"));
    assert_eq!(e.client_hello_segments, Some(1));
    assert!(e.ja4.as_deref().unwrap().starts_with("q13d"), "{:?}", e.ja4);
    assert!(!e.quic_retry);
    assert_eq!(e.duration_ms, Some(10.0));
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.authentication_failures, 0);
}

#[test]
fn a_client_initial_nobody_answers_is_counted_not_reported() {
    let (out, stats) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(true, unhex(V1_CLIENT), 1_000),
        datagram(true, vec![0x41; 40], 30_000),
    ]);
    assert!(out.is_empty());
    assert_eq!(stats.unanswered, 1);
    assert_eq!(stats.short_without_connection, 1);
}

#[test]
fn a_server_that_answers_and_stalls_times_out() {
    let (out, _) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(false, unhex(V1_SERVER), 5),
        datagram(true, client_short(), 30_000),
    ]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event.failure_reason, Some(FailureReason::Timeout));
}

#[test]
fn a_capture_that_ends_mid_handshake_is_incomplete() {
    let (out, _) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(false, unhex(V1_SERVER), 5),
    ]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event.outcome, Outcome::Incomplete);
    assert_eq!(out[0].event.alert_sender, None::<Side>);
}

#[test]
fn forged_and_broken_datagrams_are_counted_and_change_nothing() {
    let mut forged = unhex(V1_SERVER);
    let last = forged.len() - 1;
    forged[last] ^= 0xff; // fails authentication
    let mut lying = unhex(V1_CLIENT);
    lying[16] = 0x7f; // Length 0x3fff: past the datagram
    lying[17] = 0xff;
    let mut long_cid = vec![0xc0, 0, 0, 0, 1, 21];
    long_cid.extend([0u8; 60]);
    let truncated = unhex(V1_CLIENT)[..40].to_vec();
    let (out, stats) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(false, forged, 1),
        datagram(true, lying, 2),
        datagram(true, long_cid, 3),
        // Cut by the capture: truncated, not lying.
        Datagram {
            cut: 1160,
            ..datagram(true, truncated, 4)
        },
        // A short header before the server answered moves nothing.
        datagram(false, server_short(), 5),
        datagram(true, client_short(), 6),
        datagram(false, unhex(V1_SERVER), 7),
        // The wrong connection ID from the client: not this connection's.
        datagram(true, vec![0x41; 40], 8),
        datagram(false, server_short(), 9),
    ]);
    assert_eq!(stats.authentication_failures, 1);
    assert_eq!(stats.lying_lengths, 1);
    assert_eq!(stats.cid_too_long, 1);
    assert_eq!(stats.truncated_packets, 1);
    assert_eq!(stats.foreign_packets, 3);
    // Not established: the client's 1-RTT packet came before the server answered.
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event.outcome, Outcome::Incomplete);
}

/// Seals a v1 Initial as `from_client`'s side of the connection whose keys come
/// from `key_dcid` (rustls does the crypto, as in tlsmon).
fn seal_initial(
    key_dcid: &[u8],
    from_client: bool,
    dcid: &[u8],
    scid: &[u8],
    pn: u16,
    payload: &[u8],
) -> Vec<u8> {
    use rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256;
    let rustls::SupportedCipherSuite::Tls13(suite) = TLS13_AES_128_GCM_SHA256 else {
        unreachable!()
    };
    let side = if from_client {
        rustls::Side::Client
    } else {
        rustls::Side::Server
    };
    let keys = rustls::quic::Keys::initial(
        rustls::quic::Version::V1,
        suite,
        suite.quic.unwrap(),
        key_dcid,
        side,
    );
    let mut payload = payload.to_vec();
    payload.resize(payload.len().max(40), 0);
    let mut header = vec![0xc1, 0, 0, 0, 1, dcid.len() as u8];
    header.extend(dcid);
    header.push(scid.len() as u8);
    header.extend(scid);
    header.push(0); // no token
    let length = 2 + payload.len() + 16;
    header.extend([0x40 | (length >> 8) as u8, length as u8]);
    let pn_offset = header.len();
    header.extend(pn.to_be_bytes());
    let tag = keys
        .local
        .packet
        .encrypt_in_place(u64::from(pn), &header, &mut payload)
        .unwrap();
    let mut packet = header;
    packet.extend(payload);
    packet.extend(tag.as_ref());
    let sample: Vec<u8> = packet[pn_offset + 4..pn_offset + 20].to_vec();
    let (head, rest) = packet.split_at_mut(pn_offset);
    keys.local
        .header
        .encrypt_in_place(&sample, &mut head[0], &mut rest[..2])
        .unwrap();
    packet
}

#[test]
fn a_crypto_error_close_in_an_initial_is_an_alert_from_its_sender() {
    let rfc_dcid = unhex("8394c8f03e515708");
    // CONNECTION_CLOSE, CRYPTO_ERROR 0x0178: no_application_protocol (120).
    let close = [0x1c, 0x41, 0x78, 0x06, 0x00];
    let (out, _) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(
            false,
            seal_initial(&rfc_dcid, false, &[], &[9; 8], 0, &close),
            3,
        ),
    ]);
    assert_eq!(out.len(), 1);
    let e = &out[0].event;
    assert_eq!(e.failure_reason, Some(FailureReason::Alert));
    assert_eq!(e.alert.as_deref(), Some("no_application_protocol"));
    assert_eq!(e.alert_sender, Some(Side::Server));
    assert_eq!(e.closed_by, Some(Side::Server));
    assert_eq!(e.transport, Transport::Quic);
}

#[test]
fn a_transport_error_close_is_named() {
    let rfc_dcid = unhex("8394c8f03e515708");
    // CONNECTION_CLOSE, PROTOCOL_VIOLATION.
    let close = [0x1c, 0x0a, 0x00, 0x00];
    let (out, _) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(
            false,
            seal_initial(&rfc_dcid, false, &[], &[9; 8], 0, &close),
            3,
        ),
    ]);
    assert_eq!(out.len(), 1);
    let e = &out[0].event;
    assert_eq!(e.failure_reason, Some(FailureReason::Closed));
    assert_eq!(e.closed_by, Some(Side::Server));
    assert_eq!(
        e.detail.as_deref(),
        Some("CONNECTION_CLOSE with transport error PROTOCOL_VIOLATION in an Initial packet")
    );
}

#[test]
fn a_close_under_keys_of_another_dcid_changes_nothing() {
    let close = [0x1c, 0x41, 0x78, 0x06, 0x00];
    let (out, stats) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(
            false,
            seal_initial(b"attacker", false, &[], &[9; 8], 0, &close),
            3,
        ),
        datagram(false, unhex(V1_SERVER), 5),
    ]);
    assert_eq!(stats.authentication_failures, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event.outcome, Outcome::Incomplete);
}

#[test]
fn retry_then_the_handshake_under_the_new_keys() {
    let retry_scid = [7u8; 8];
    // Retry: long header type 3, to the client's (empty) SCID, from retry_scid,
    // a token and a 16-byte tag.
    let mut retry = vec![0xf0, 0, 0, 0, 1, 0, 8];
    retry.extend(retry_scid);
    retry.extend(b"token");
    retry.extend([0u8; 16]);
    // The client's RFC Initial carries the ClientHello; after the Retry it sends
    // it again to the new DCID (here: a sealed Initial with its CRYPTO frame).
    let client_payload = unhex(include_str!("testdata/rfc9001_client_crypto_frame.hex"));
    let server_hello = unhex("02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf73988cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c940d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00020304");
    let (out, stats) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(false, retry, 1),
        datagram(
            true,
            seal_initial(&retry_scid, true, &retry_scid, &[], 3, &client_payload),
            2,
        ),
        datagram(
            false,
            seal_initial(&retry_scid, false, &[], &[5; 8], 0, &server_hello),
            3,
        ),
        datagram(false, server_short(), 4),
        datagram(
            true,
            {
                let mut p = vec![0x41];
                p.extend([5u8; 8]);
                p.extend([0u8; 20]);
                p
            },
            5,
        ),
    ]);
    assert_eq!(out.len(), 1, "{stats:?}");
    let e = &out[0].event;
    assert_eq!(e.outcome, Outcome::Established);
    assert!(e.quic_retry);
    assert_eq!(e.cipher.as_deref(), Some("TLS_AES_128_GCM_SHA256"));
}

#[test]
fn a_full_table_pushes_out_its_oldest_connection_and_counts_it() {
    let mut table = QuicTable::new(2, Duration::from_secs(10));
    let mut out = Vec::new();
    for port in 0..3u16 {
        let mut d = datagram(true, unhex(V1_CLIENT), u64::from(port));
        d.src.set_port(50_000 + port);
        table.push(d, &mut out);
    }
    assert_eq!(table.tracked(), 2);
    assert!(out.is_empty());
    let stats = table.stats();
    assert_eq!(
        (
            stats.connections,
            stats.evicted,
            stats.evicted_unanswered,
            stats.unanswered
        ),
        (3, 1, 1, 0)
    );
}

#[test]
fn version_negotiation_with_nothing_after_it_fails_as_such() {
    // To the client's (empty) SCID, from its DCID, listing a version it lacks.
    let mut vn = vec![0x80, 0, 0, 0, 0, 0, 8];
    vn.extend(unhex("8394c8f03e515708"));
    vn.extend([0x0a, 0x0a, 0x0a, 0x0a, 0x6b, 0x33, 0x43, 0xcf]);
    let (out, _) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(false, vn, 2),
        datagram(true, vec![0x41; 10], 20_000),
    ]);
    assert_eq!(out.len(), 1);
    let e = &out[0].event;
    assert_eq!(e.failure_reason, Some(FailureReason::VersionNegotiation));
    assert_eq!(
        e.detail.as_deref(),
        Some("the server offered QUIC versions [0x0a0a0a0a, v2] and the client did not try again")
    );
}

#[test]
fn a_version_negotiation_to_other_ids_changes_nothing() {
    let mut vn = vec![0x80, 0, 0, 0, 0, 0, 8];
    vn.extend([1u8; 8]);
    vn.extend([0x6b, 0x33, 0x43, 0xcf]);
    let (out, stats) = run(vec![
        datagram(true, unhex(V1_CLIENT), 0),
        datagram(false, vn, 2),
    ]);
    assert!(out.is_empty());
    assert_eq!((stats.unanswered, stats.foreign_packets), (1, 1));
}
