use super::*;
use crate::event::{Direction, FailureReason, Outcome, Side};
use crate::source::segment::{Device, PacketDirection, TcpFlags};

const CLIENT: &str = "192.0.2.10:50000";
const SERVER: &str = "192.0.2.1:443";
const CLIENT_ISN: u32 = 0xffff_ff00; // wraps during the handshake on purpose
const SERVER_ISN: u32 = 7_000;

fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 3, 3];
    r.extend_from_slice(&(body.len() as u16).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn handshake(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let mut h = vec![msg_type, (len >> 16) as u8, (len >> 8) as u8, len as u8];
    h.extend_from_slice(body);
    record(22, &h)
}

/// A TLS 1.2 ClientHello offering one suite, with an SNI extension.
fn client_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0, 4, 0xc0, 0x2f, 0x00, 0x9c]);
    body.extend_from_slice(&[1, 0]);
    let host = b"example.test";
    let mut sni = vec![0, 0];
    let list_len = host.len() as u16 + 3;
    sni.extend_from_slice(&(list_len + 2).to_be_bytes());
    sni.extend_from_slice(&list_len.to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    body.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    body.extend_from_slice(&sni);
    handshake(1, &body)
}

fn server_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x22; 32]);
    body.push(0);
    body.extend_from_slice(&[0xc0, 0x2f, 0]);
    handshake(2, &body)
}

struct Conversation {
    table: FlowTable,
    out: Vec<Decided>,
    client_port: u16,
    client_seq: u32,
    server_seq: u32,
    now_ms: u64,
}

impl Conversation {
    fn new(options: FlowTableOptions) -> Self {
        Conversation {
            table: FlowTable::new(options),
            out: Vec::new(),
            client_port: 50000,
            client_seq: CLIENT_ISN,
            server_seq: SERVER_ISN,
            now_ms: 1_000,
        }
    }

    fn segment(&mut self, from_client: bool, payload: &[u8], flags: u8) -> Segment {
        self.now_ms += 1;
        // What the peer sent so far is acknowledged.
        let ack = if from_client {
            self.server_seq
        } else {
            self.client_seq
        };
        let seq = if from_client {
            &mut self.client_seq
        } else {
            &mut self.server_seq
        };
        let mut client: std::net::SocketAddr = CLIENT.parse().unwrap();
        client.set_port(self.client_port);
        let server: std::net::SocketAddr = SERVER.parse().unwrap();
        let segment = Segment {
            ts: Duration::from_millis(self.now_ms),
            device: Device::new("eth1"),
            direction: if from_client {
                PacketDirection::Ingress
            } else {
                PacketDirection::Egress
            },
            src: if from_client { client } else { server },
            dst: if from_client { server } else { client },
            seq: *seq,
            ack,
            // Every segment acknowledges something but the client's opening SYN.
            flags: TcpFlags(if from_client && flags == TcpFlags::SYN {
                flags
            } else {
                flags | TcpFlags::ACK
            }),
            payload: payload.to_vec(),
            cut: 0,
            cgroup_id: None,
        };
        *seq = seq.wrapping_add(
            payload.len() as u32 + u32::from(flags & (TcpFlags::FIN | TcpFlags::SYN) != 0),
        );
        segment
    }

    fn send(&mut self, from_client: bool, payload: &[u8], flags: u8) {
        let s = self.segment(from_client, payload, flags);
        self.table.push(s, &mut self.out);
    }

    fn handshake_open(&mut self) {
        self.send(true, &[], TcpFlags::SYN);
        self.send(false, &[], TcpFlags::SYN);
    }
}

#[test]
fn split_reordered_client_hello_then_tls12_handshake_is_established() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.handshake_open();
    let hello = client_hello();
    let (first, second) = hello.split_at(30);
    let s1 = c.segment(true, first, 0);
    let s2 = c.segment(true, second, 0);
    c.table.push(s2, &mut c.out);
    c.table.push(s1, &mut c.out);
    let mut flight = server_hello();
    flight.extend(handshake(14, &[]));
    c.send(false, &flight, 0);
    let mut finish = record(20, &[1]);
    finish.extend(record(22, &[0xaa; 40]));
    c.send(true, &finish, 0);
    assert!(c.out.is_empty());
    c.send(false, &finish, 0);
    assert_eq!(c.out.len(), 1);
    let r = &c.out[0].event;
    assert_eq!(r.outcome, Outcome::Established);
    assert_eq!(r.version.as_deref(), Some("TLSv1.2"));
    assert_eq!(
        r.cipher.as_deref(),
        Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
    );
    assert_eq!(r.sni.as_deref(), Some("example.test"));
    assert_eq!(r.client_hello_segments, Some(2));
    assert_eq!(r.client_hello_bytes, Some(hello.len() as u32 - 5));
    assert_eq!(r.direction, Direction::Inbound);
    assert_eq!(r.client_port, 50000);
    assert_eq!(r.server_port, 443);
    // Later packets of the decided connection make no second record.
    c.send(true, &record(23, &[0; 100]), TcpFlags::FIN);
    c.table.finish(&mut c.out);
    assert_eq!(c.out.len(), 1);
}

#[test]
fn server_alert_is_a_failure_from_the_server() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &client_hello(), 0);
    c.send(false, &record(21, &[2, 40]), 0);
    assert_eq!(c.out.len(), 1);
    let r = &c.out[0].event;
    assert_eq!(r.outcome, Outcome::Failed);
    assert_eq!(r.failure_reason, Some(FailureReason::Alert));
    assert_eq!(r.alert.as_deref(), Some("handshake_failure"));
    assert_eq!(r.alert_sender, Some(Side::Server));
}

#[test]
fn reset_after_client_hello_names_the_server() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &client_hello(), 0);
    c.send(false, &[], TcpFlags::RST);
    let r = &c.out[0].event;
    assert_eq!(
        (r.failure_reason, r.closed_by),
        (Some(FailureReason::Reset), Some(Side::Server))
    );
}

#[test]
fn fin_waits_for_the_bytes_before_it() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.handshake_open();
    c.send(true, &client_hello(), 0);
    let alert = c.segment(false, &record(21, &[2, 70]), 0);
    let fin = c.segment(false, &[], TcpFlags::FIN);
    c.table.push(fin, &mut c.out);
    assert!(c.out.is_empty(), "FIN ahead of missing bytes must wait");
    c.table.push(alert, &mut c.out);
    let r = &c.out[0].event;
    assert_eq!(r.alert.as_deref(), Some("protocol_version"));
}

#[test]
fn silence_becomes_a_timeout_on_the_capture_clock() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &client_hello(), 0);
    let start = c.table.clock();
    c.table
        .advance_clock(start + Duration::from_millis(9_999), &mut c.out);
    assert!(c.out.is_empty());
    c.table
        .advance_clock(start + Duration::from_secs(10), &mut c.out);
    assert_eq!(c.out[0].event.failure_reason, Some(FailureReason::Timeout));
    assert_eq!(c.table.tracked(), 0);
}

#[test]
fn plain_http_is_not_tls_on_a_tls_port_and_ignored_elsewhere() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    assert_eq!(c.out[0].event.failure_reason, Some(FailureReason::NotTls));

    let options = FlowTableOptions {
        tls_ports: vec![],
        ..Default::default()
    };
    let mut c = Conversation::new(options);
    c.send(true, b"GET / HTTP/1.1\r\n\r\n", 0);
    c.send(false, b"HTTP/1.1 200 OK\r\n\r\n", TcpFlags::FIN);
    c.table.finish(&mut c.out);
    assert!(c.out.is_empty());
    assert_eq!(c.table.stats().not_tls_ignored, 1);
}

#[test]
fn eviction_reports_incomplete_and_counts() {
    let options = FlowTableOptions {
        max_flows: 1,
        ..Default::default()
    };
    let mut table = FlowTable::new(options);
    let mut out = Vec::new();
    for port in [40000u16, 40001] {
        let mut c = Conversation::new(FlowTableOptions::default());
        let mut s = c.segment(true, &client_hello(), 0);
        s.src.set_port(port);
        table.push(s, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].event.outcome, Outcome::Incomplete);
    assert_eq!(out[0].event.client_port, 40000);
    assert_eq!(table.stats().flows_evicted, 1);
    assert_eq!(table.tracked(), 1);
}

#[test]
fn a_reused_address_pair_starts_a_new_handshake() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &client_hello(), 0);
    c.send(false, &record(21, &[2, 40]), 0);
    c.send(true, &[], TcpFlags::SYN);
    c.send(true, &client_hello(), 0);
    c.send(false, &[], TcpFlags::RST);
    let reasons: Vec<_> = c.out.iter().map(|d| d.event.failure_reason).collect();
    assert_eq!(
        reasons,
        vec![Some(FailureReason::Alert), Some(FailureReason::Reset)]
    );
}

/// A conversation on its own client port, sharing `table` with others.
fn on_port(port: u16) -> Conversation {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.client_port = port;
    c
}

fn push(
    table: &mut FlowTable,
    out: &mut Vec<Decided>,
    c: &mut Conversation,
    from_client: bool,
    payload: &[u8],
    flags: u8,
) {
    let s = c.segment(from_client, payload, flags);
    table.push(s, out);
}

fn details(out: &[Decided]) -> Vec<(u16, Outcome, Option<String>)> {
    out.iter()
        .map(|d| (d.event.client_port, d.event.outcome, d.event.detail.clone()))
        .collect()
}

#[test]
fn a_syn_scan_evicts_neither_an_answered_nor_an_unanswered_handshake() {
    let options = FlowTableOptions {
        max_flows: 8, // two opening flows, two unanswered ones at most
        ..Default::default()
    };
    let mut table = FlowTable::new(options);
    let mut out = Vec::new();
    let mut answered = on_port(40_000);
    push(
        &mut table,
        &mut out,
        &mut answered,
        true,
        &[],
        TcpFlags::SYN,
    );
    push(
        &mut table,
        &mut out,
        &mut answered,
        false,
        &[],
        TcpFlags::SYN,
    );
    push(
        &mut table,
        &mut out,
        &mut answered,
        true,
        &client_hello(),
        0,
    );
    push(
        &mut table,
        &mut out,
        &mut answered,
        false,
        &server_hello(),
        0,
    );
    let mut waiting = on_port(40_001);
    push(&mut table, &mut out, &mut waiting, true, &[], TcpFlags::SYN);
    push(&mut table, &mut out, &mut waiting, true, &client_hello(), 0);
    for port in 50_000..50_070 {
        let mut scan = on_port(port);
        scan.now_ms = answered.now_ms;
        push(&mut table, &mut out, &mut scan, true, &[], TcpFlags::SYN);
    }
    assert!(out.is_empty(), "SYN-only flows make no record: {out:?}");
    let stats = table.stats().clone();
    assert_eq!(stats.evicted_opening, 68);
    assert_eq!((stats.evicted_unanswered, stats.flows_refused), (0, 0));
    assert_eq!(stats.flows_evicted, 68);
    assert_eq!(table.tracked(), 4);
    // Both handshakes go on as if nothing happened.
    let mut finish = record(20, &[1]);
    finish.extend(record(22, &[0xaa; 40]));
    push(&mut table, &mut out, &mut answered, true, &finish, 0);
    push(&mut table, &mut out, &mut answered, false, &finish, 0);
    push(
        &mut table,
        &mut out,
        &mut waiting,
        false,
        &record(21, &[2, 40]),
        0,
    );
    assert_eq!(
        details(&out),
        [
            (40_000, Outcome::Established, None),
            (40_001, Outcome::Failed, None)
        ]
    );
}

#[test]
fn unanswered_client_hellos_beyond_their_share_evict_the_oldest_of_them() {
    let options = FlowTableOptions {
        max_flows: 8,
        ..Default::default()
    };
    let mut table = FlowTable::new(options);
    let mut out = Vec::new();
    let mut answered = on_port(40_000);
    push(
        &mut table,
        &mut out,
        &mut answered,
        true,
        &client_hello(),
        0,
    );
    push(
        &mut table,
        &mut out,
        &mut answered,
        false,
        &server_hello(),
        0,
    );
    for port in 41_000..41_005 {
        let mut c = on_port(port);
        c.now_ms = answered.now_ms + u64::from(port - 41_000);
        push(&mut table, &mut out, &mut c, true, &client_hello(), 0);
    }
    let evicted = Some("evicted: too many ClientHellos without an answer".to_string());
    assert_eq!(
        details(&out),
        [
            (41_000, Outcome::Incomplete, evicted.clone()),
            (41_001, Outcome::Incomplete, evicted.clone()),
            (41_002, Outcome::Incomplete, evicted),
        ]
    );
    let stats = table.stats();
    assert_eq!((stats.evicted_unanswered, stats.evicted_opening), (3, 0));
    assert_eq!(
        table.tracked(),
        3,
        "the answered handshake and the two newest"
    );
}

#[test]
fn a_table_full_of_answered_handshakes_refuses_newcomers_and_counts_each_once() {
    let options = FlowTableOptions {
        max_flows: 4,
        ..Default::default()
    };
    let mut table = FlowTable::new(options);
    let mut out = Vec::new();
    let mut answered: Vec<Conversation> = (40_000..40_004).map(on_port).collect();
    for c in &mut answered {
        push(&mut table, &mut out, c, true, &[], TcpFlags::SYN);
        push(&mut table, &mut out, c, false, &[], TcpFlags::SYN);
        push(&mut table, &mut out, c, true, &client_hello(), 0);
        push(&mut table, &mut out, c, false, &server_hello(), 0);
    }
    assert_eq!(table.tracked(), 4);
    let mut newcomer = on_port(45_000);
    push(
        &mut table,
        &mut out,
        &mut newcomer,
        true,
        &[],
        TcpFlags::SYN,
    );
    push(
        &mut table,
        &mut out,
        &mut newcomer,
        true,
        &client_hello(),
        0,
    );
    push(
        &mut table,
        &mut out,
        &mut newcomer,
        false,
        &server_hello(),
        0,
    );
    let stats = table.stats();
    assert_eq!(stats.flows_refused, 1, "one connection, counted once");
    assert_eq!(stats.flows_evicted, 0);
    assert!(out.is_empty());
    table.finish(&mut out);
    let ports: Vec<u16> = out.iter().map(|d| d.event.client_port).collect();
    assert_eq!(out.len(), 4);
    assert!(!ports.contains(&45_000));
}

#[test]
fn a_client_hello_cut_by_the_snap_length_is_incomplete_not_nothing() {
    for end in ["capture", "timeout"] {
        let mut c = Conversation::new(FlowTableOptions::default());
        c.handshake_open();
        let hello = client_hello();
        let mut cut = c.segment(true, &hello, 0);
        cut.payload.truncate(30);
        cut.cut = (hello.len() - 30) as u32;
        c.table.push(cut, &mut c.out);
        let mut reply = c.segment(false, &server_hello(), 0);
        reply.payload.truncate(20);
        reply.cut = (server_hello().len() - 20) as u32;
        c.table.push(reply, &mut c.out);
        assert!(c.out.is_empty());
        match end {
            "capture" => c.table.finish(&mut c.out),
            _ => {
                let later = c.table.clock() + Duration::from_secs(10);
                c.table.advance_clock(later, &mut c.out);
            }
        }
        assert_eq!(c.out.len(), 1, "{end}");
        let r = &c.out[0].event;
        assert_eq!(r.outcome, Outcome::Incomplete, "{end}");
        assert_eq!(
            r.detail.as_deref(),
            Some("bytes missing from the capture before the ClientHello was complete"),
            "{end}"
        );
        assert_eq!((r.client_port, r.server_port), (50000, 443));
        assert_eq!(r.client_hello_bytes, None);
    }
}

#[test]
fn a_client_hello_still_arriving_at_the_end_of_the_capture_is_incomplete() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.handshake_open();
    let hello = client_hello();
    c.send(true, &hello[..40], 0);
    c.table.finish(&mut c.out);
    let r = &c.out[0].event;
    assert_eq!(r.outcome, Outcome::Incomplete);
    assert_eq!(
        r.detail.as_deref(),
        Some("capture ended before the handshake did (the ClientHello was not complete)")
    );
}

#[test]
fn a_client_that_gives_up_halfway_through_its_client_hello_failed() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.handshake_open();
    c.send(true, &client_hello()[..40], 0);
    c.send(true, &[], TcpFlags::RST);
    let r = &c.out[0].event;
    assert_eq!(
        (r.outcome, r.failure_reason, r.closed_by),
        (
            Outcome::Failed,
            Some(FailureReason::Reset),
            Some(Side::Client)
        )
    );
    assert_eq!(
        r.detail.as_deref(),
        Some("before the ClientHello was complete")
    );
}

#[test]
fn a_malformed_client_hello_is_a_protocol_error_with_detail() {
    // Cipher suites length 3 (odd): tls-parser rejects the ClientHello.
    let mut body = vec![3, 3];
    body.extend_from_slice(&[0x11; 32]);
    body.extend_from_slice(&[0, 0, 3, 0xc0, 0x2f, 0x00, 1, 0]);
    let broken = handshake(1, &body);
    // On a TLS port, and elsewhere: the record says it is a ClientHello.
    for tls_ports in [DEFAULT_TLS_PORTS.to_vec(), vec![]] {
        let mut c = Conversation::new(FlowTableOptions {
            tls_ports,
            ..Default::default()
        });
        c.handshake_open();
        c.send(true, &broken, 0);
        assert_eq!(c.out.len(), 1);
        let r = &c.out[0].event;
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.failure_reason, Some(FailureReason::ProtocolError));
        let detail = r.detail.as_deref().unwrap_or_default();
        assert!(
            detail.starts_with("client: ClientHello does not parse"),
            "{detail}"
        );
        assert_eq!(c.table.stats().parse_errors, 1);
    }
}

#[test]
fn broken_first_bytes_toward_a_tls_port_are_a_protocol_error() {
    // A handshake record too long for TLS: malformed at its header.
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &[22, 3, 1, 0xff, 0xff, 1, 0, 0], 0);
    assert_eq!(
        c.out[0].event.failure_reason,
        Some(FailureReason::ProtocolError)
    );
    // Elsewhere it is not known to be a handshake: ignored, as before.
    let mut c = Conversation::new(FlowTableOptions {
        tls_ports: vec![],
        ..Default::default()
    });
    c.send(true, &[22, 3, 1, 0xff, 0xff, 1, 0, 0], 0);
    c.table.finish(&mut c.out);
    assert!(c.out.is_empty());
    assert_eq!(c.table.stats().midstream_ignored, 1);
}

#[test]
fn client_hello_segments_are_counted_past_64() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.handshake_open();
    let mut hello = client_hello();
    // Pad the ClientHello to 300 bytes of body extensions, then send it 3 bytes at a time.
    let pad = 250;
    let mut ext = vec![0, 21];
    ext.extend_from_slice(&(pad as u16).to_be_bytes());
    ext.extend(std::iter::repeat_n(0, pad));
    let body_len = hello.len() - 9 + ext.len();
    let exts_at = 5 + 4 + 2 + 32 + 1 + 6 + 2;
    let exts_len = u16::from_be_bytes([hello[exts_at], hello[exts_at + 1]]) as usize + ext.len();
    hello[exts_at..exts_at + 2].copy_from_slice(&(exts_len as u16).to_be_bytes());
    hello.extend(ext);
    hello[3..5].copy_from_slice(&((body_len + 4) as u16).to_be_bytes());
    hello[6..9].copy_from_slice(&(body_len as u32).to_be_bytes()[1..]);
    let pieces: Vec<&[u8]> = hello.chunks(3).collect();
    for piece in &pieces {
        c.send(true, piece, 0);
    }
    c.send(false, &record(21, &[2, 40]), 0);
    let r = &c.out[0].event;
    assert_eq!(r.failure_reason, Some(FailureReason::Alert), "{r:?}");
    assert_eq!(r.client_hello_segments, Some(pieces.len() as u32));
    assert!(pieces.len() > 64);
}

#[test]
fn a_connection_pushed_out_before_its_client_hello_is_still_seen() {
    let options = FlowTableOptions {
        max_flows: 8,
        ..Default::default()
    };
    let mut table = FlowTable::new(options);
    let mut out = Vec::new();
    let mut real = on_port(40_000);
    push(&mut table, &mut out, &mut real, true, &[], TcpFlags::SYN);
    push(&mut table, &mut out, &mut real, false, &[], TcpFlags::SYN);
    for port in 50_000..50_010 {
        let mut scan = on_port(port);
        scan.now_ms = real.now_ms;
        push(&mut table, &mut out, &mut scan, true, &[], TcpFlags::SYN);
    }
    assert_eq!(table.stats().evicted_opening, 9, "the real SYN went too");
    push(&mut table, &mut out, &mut real, true, &client_hello(), 0);
    push(
        &mut table,
        &mut out,
        &mut real,
        false,
        &record(21, &[2, 40]),
        0,
    );
    assert_eq!(details(&out), [(40_000, Outcome::Failed, None)]);
}

/// The server's flight and both Finished of a full TLS 1.2 handshake, after the
/// ClientHello: the handshake is decided as established.
fn finish_tls12(c: &mut Conversation) {
    let mut flight = server_hello();
    flight.extend(handshake(14, &[]));
    c.send(false, &flight, 0);
    let mut finish = record(20, &[1]);
    finish.extend(record(22, &[0xaa; 40]));
    c.send(true, &finish, 0);
    c.send(false, &finish, 0);
}

fn only_established(c: &Conversation) -> &HandshakeEvent {
    assert_eq!(c.out.len(), 1, "{:?}", c.out);
    let r = &c.out[0].event;
    assert_eq!(r.outcome, Outcome::Established, "{r:?}");
    assert_eq!(r.version.as_deref(), Some("TLSv1.2"));
    r
}

#[test]
fn a_client_hello_in_the_syn_counts_once_the_server_accepts_it() {
    let mut c = Conversation::new(FlowTableOptions::default());
    // TCP Fast Open: the ClientHello rides in the SYN; the SYN-ACK acknowledges it.
    c.send(true, &client_hello(), TcpFlags::SYN);
    assert_eq!(c.table.tracked(), 1);
    c.send(false, &[], TcpFlags::SYN);
    c.send(true, &[], 0);
    finish_tls12(&mut c);
    let r = only_established(&c);
    assert_eq!(r.sni.as_deref(), Some("example.test"));
    assert_eq!(r.client_hello_segments, Some(1));
    // Its bytes start one after the SYN's sequence number.
    assert_eq!(c.out[0].client_seq, Some(CLIENT_ISN.wrapping_add(1)));
}

#[test]
fn a_client_hello_in_an_unanswered_syn_is_no_handshake() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &client_hello(), TcpFlags::SYN);
    c.now_ms += 60_000;
    let later = Duration::from_millis(c.now_ms);
    c.table.advance_clock(later, &mut c.out);
    assert!(c.out.is_empty(), "{:?}", c.out);
    assert_eq!(c.table.tracked(), 0);
    // Nor when the capture ends first.
    c.client_port += 1;
    c.client_seq = CLIENT_ISN;
    c.send(true, &client_hello(), TcpFlags::SYN);
    c.table.finish(&mut c.out);
    assert!(c.out.is_empty(), "{:?}", c.out);
}

#[test]
fn a_refused_syn_client_hello_counts_once_when_the_client_sends_it_again() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &client_hello(), TcpFlags::SYN);
    // The server takes the SYN but not its bytes (no valid cookie) ...
    let mut syn_ack = c.segment(false, &[], TcpFlags::SYN);
    syn_ack.ack = CLIENT_ISN.wrapping_add(1);
    c.table.push(syn_ack, &mut c.out);
    // ... and a spoofer's RST-less silence would end here; this client resends.
    c.client_seq = CLIENT_ISN.wrapping_add(1);
    c.send(true, &client_hello(), 0);
    finish_tls12(&mut c);
    let r = only_established(&c);
    assert_eq!(r.client_hello_segments, Some(1));
    assert_eq!(c.table.stats().retransmitted_bytes, 0);
}

#[test]
fn the_server_bytes_follow_the_syn_ack_the_client_acknowledged() {
    for tfo in [false, true] {
        let mut c = Conversation::new(FlowTableOptions::default());
        if tfo {
            c.send(true, &client_hello(), TcpFlags::SYN);
        } else {
            c.send(true, &[], TcpFlags::SYN);
        }
        // Two SYN-ACKs with different ISNs; the client acknowledges the second.
        c.send(false, &[], TcpFlags::SYN);
        c.server_seq = 900_000;
        c.send(false, &[], TcpFlags::SYN);
        c.send(true, &[], 0);
        if !tfo {
            c.send(true, &client_hello(), 0);
        }
        finish_tls12(&mut c);
        only_established(&c);
    }
}

#[test]
fn an_acknowledged_first_syn_ack_is_not_replaced_by_a_stale_one() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.handshake_open();
    c.send(true, &[], 0); // acknowledges SERVER_ISN + 1
    let next_server_seq = c.server_seq;
    let mut stale = c.segment(false, &[], TcpFlags::SYN);
    stale.seq = 123_456;
    c.table.push(stale, &mut c.out);
    c.server_seq = next_server_seq;
    c.send(true, &client_hello(), 0);
    finish_tls12(&mut c);
    only_established(&c);
}

#[test]
fn a_refused_syn_client_hello_seen_live_counts_once() {
    // Live, the kernel reports no refusing SYN-ACK: the client's SYN, then its
    // ClientHello again as the flow's first payload (with the SYN that stands for it).
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, &client_hello(), TcpFlags::SYN);
    c.client_seq = CLIENT_ISN;
    c.send(true, &[], TcpFlags::SYN);
    c.send(true, &client_hello(), 0);
    finish_tls12(&mut c);
    let r = only_established(&c);
    assert_eq!(r.client_hello_segments, Some(1));
    assert_eq!(c.table.stats().retransmitted_bytes, 0);
}
