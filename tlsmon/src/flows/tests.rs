use super::*;
use crate::record::{Direction, FailureReason, Outcome, Side};
use crate::segment::{Device, PacketDirection, TcpFlags};

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
    client_seq: u32,
    server_seq: u32,
    now_ms: u64,
}

impl Conversation {
    fn new(options: FlowTableOptions) -> Self {
        Conversation {
            table: FlowTable::new(options),
            out: Vec::new(),
            client_seq: CLIENT_ISN,
            server_seq: SERVER_ISN,
            now_ms: 1_000,
        }
    }

    fn segment(&mut self, from_client: bool, payload: &[u8], flags: u8) -> Segment {
        self.now_ms += 1;
        let seq = if from_client {
            &mut self.client_seq
        } else {
            &mut self.server_seq
        };
        let segment = Segment {
            ts: Duration::from_millis(self.now_ms),
            device: Device::new("eth1"),
            direction: if from_client {
                PacketDirection::Ingress
            } else {
                PacketDirection::Egress
            },
            src: (if from_client { CLIENT } else { SERVER }).parse().unwrap(),
            dst: (if from_client { SERVER } else { CLIENT }).parse().unwrap(),
            seq: *seq,
            // Every segment acknowledges something but the client's opening SYN.
            flags: TcpFlags(if from_client && flags == TcpFlags::SYN {
                flags
            } else {
                flags | TcpFlags::ACK
            }),
            payload: payload.to_vec(),
            cut: 0,
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
    let r = &c.out[0].record;
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
    let r = &c.out[0].record;
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
    let r = &c.out[0].record;
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
    let r = &c.out[0].record;
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
    assert_eq!(c.out[0].record.failure_reason, Some(FailureReason::Timeout));
    assert_eq!(c.table.tracked(), 0);
}

#[test]
fn plain_http_is_not_tls_on_a_tls_port_and_ignored_elsewhere() {
    let mut c = Conversation::new(FlowTableOptions::default());
    c.send(true, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    assert_eq!(c.out[0].record.failure_reason, Some(FailureReason::NotTls));

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
    assert_eq!(out[0].record.outcome, Outcome::Incomplete);
    assert_eq!(out[0].record.client_port, 40000);
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
    let reasons: Vec<_> = c.out.iter().map(|d| d.record.failure_reason).collect();
    assert_eq!(
        reasons,
        vec![Some(FailureReason::Alert), Some(FailureReason::Reset)]
    );
}
