use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::pipeline::tls::ClientHello;
use crate::sinks::metrics::tests::record;

const TLS13: u16 = 0x0304;
const TLS12: u16 = 0x0303;
const AES128: u16 = 0x1301;
const AES256: u16 = 0x1302;
const X25519: u16 = 29;

fn at(ms: u64) -> Timestamp {
    Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
}

fn hello(random: u8) -> ClientHello {
    ClientHello {
        legacy_version: TLS12,
        random: [random; 32],
        supported_versions: vec![TLS13, TLS12],
        cipher_suites: vec![AES128, AES256],
        supported_groups: vec![X25519],
        extensions: vec![0, 10, 43, 51],
        sni: Some("server.test".into()),
        ..ClientHello::default()
    }
}

/// A connection on `device` from client port `port` to `server`.
fn key(device: &str, port: u16, server: &str) -> ConnectionKey {
    let client: SocketAddr = format!("10.0.0.2:{port}").parse().unwrap();
    let server: SocketAddr = server.parse().unwrap();
    ConnectionKey {
        device: Device::new(device),
        lo: client.min(server),
        hi: client.max(server),
    }
}

fn seen(
    device: &str,
    port: u16,
    direction: PacketDirection,
    ms: u64,
    hello: ClientHello,
) -> ClientHelloSeen {
    let server = "10.0.9.1:443";
    ClientHelloSeen {
        key: key(device, port, server),
        client_seq: Some(u32::from(port)),
        direction,
        server: server.parse().unwrap(),
        ts: at(ms),
        hello,
    }
}

fn decided(device: &str, port: u16) -> Decided {
    let mut event = record();
    event.device = device.to_string();
    event.client_port = port;
    Decided {
        key: key(device, port, "10.0.9.1:443"),
        client_seq: Some(u32::from(port)),
        cgroup_id: None,
        event,
        clues: Default::default(),
    }
}

fn arrive(linker: &mut ForwardingLinker, device: &str, port: u16, ms: u64, random: u8) {
    let mut out = Vec::new();
    linker.sighting(
        seen(device, port, PacketDirection::Ingress, ms, hello(random)),
        &mut out,
    );
    assert!(out.is_empty());
}

fn leave(
    linker: &mut ForwardingLinker,
    device: &str,
    port: u16,
    ms: u64,
    hello: ClientHello,
) -> Vec<Decided> {
    let mut out = Vec::new();
    linker.sighting(
        seen(device, port, PacketDirection::Egress, ms, hello),
        &mut out,
    );
    out
}

fn decide(linker: &mut ForwardingLinker, device: &str, port: u16) -> Vec<Decided> {
    let mut out = Vec::new();
    linker.decided(decided(device, port), &mut out);
    out
}

fn forwarded_of(out: &[Decided]) -> Option<Forwarded> {
    assert_eq!(out.len(), 1, "one event expected");
    out[0].event.forwarded.clone()
}

fn linked(in_device: &str, out_device: &str, changes: &[&str]) -> Option<Forwarded> {
    Some(Forwarded {
        in_device: in_device.into(),
        out_device: Some(out_device.into()),
        changes: changes.iter().map(|c| c.to_string()).collect(),
    })
}

#[test]
fn an_arrival_and_its_departure_are_linked_on_both_events() {
    let mut linker = ForwardingLinker::new();
    arrive(&mut linker, "eth0", 40000, 0, 1);
    assert!(leave(&mut linker, "eth1", 50000, 1, hello(1)).is_empty());
    let want = linked("eth0", "eth1", &[]);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth1", 50000)), want);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth0", 40000)), want);
    assert_eq!(linker.stats().linked, 1);
    // Other handshakes are untouched.
    assert_eq!(forwarded_of(&decide(&mut linker, "eth0", 40001)), None);
}

#[test]
fn what_the_forwarder_removed_is_named() {
    let mut linker = ForwardingLinker::new();
    arrive(&mut linker, "eth0", 40000, 0, 1);
    let mut meddled = hello(1);
    meddled.supported_versions = vec![TLS12];
    meddled.cipher_suites = vec![AES128];
    leave(&mut linker, "eth1", 50000, 1, meddled);
    assert_eq!(
        forwarded_of(&decide(&mut linker, "eth0", 40000)),
        linked(
            "eth0",
            "eth1",
            &[
                "offered version TLSv1.3 removed",
                "cipher suite TLS_AES_256_GCM_SHA384 removed"
            ]
        )
    );
}

#[test]
fn changes_name_additions_sni_and_order() {
    let before = Offered::of(&hello(1));
    let mut after = hello(1);
    after.supported_groups = vec![X25519, 0x11ec];
    after.extensions = vec![10, 0, 43, 51];
    after.sni = Some("other.test".into());
    assert_eq!(
        changes::between(&before, &Offered::of(&after)),
        [
            "group X25519MLKEM768 added",
            "extensions reordered",
            "SNI changed from server.test to other.test"
        ]
    );
    after.sni = None;
    after.supported_versions.clear();
    assert_eq!(
        changes::between(&before, &Offered::of(&after))[0],
        "offered version TLSv1.3 removed"
    );
}

#[test]
fn changes_are_bounded_and_the_rest_counted() {
    let before = Offered::of(&hello(1));
    let mut after = hello(1);
    after.cipher_suites = (0x5000..0x5100).collect();
    let changes = changes::between(&before, &Offered::of(&after));
    assert_eq!(changes.len(), MAX_CHANGES);
    // 2 removed + 256 added, 31 listed.
    assert_eq!(changes.last().unwrap(), "and 227 more changes");
}

#[test]
fn a_departure_never_links_to_a_later_arrival() {
    // The host's own outbound ClientHello, then someone replays its random inbound.
    let mut linker = ForwardingLinker::new();
    assert!(leave(&mut linker, "eth1", 50000, 0, hello(1)).is_empty());
    arrive(&mut linker, "eth0", 40000, 1, 1);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth1", 50000)), None);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth0", 40000)), None);
    assert_eq!(linker.stats().linked, 0);
}

#[test]
fn a_replayed_random_changes_nothing_for_the_real_handshake() {
    let mut linker = ForwardingLinker::new();
    arrive(&mut linker, "eth0", 40000, 0, 1);
    // A replay arrives on another NIC before the real ClientHello left ...
    arrive(&mut linker, "eth2", 40001, 1, 1);
    leave(&mut linker, "eth1", 50000, 2, hello(1));
    // ... and another one leaves after it was linked.
    leave(&mut linker, "eth1", 50001, 3, hello(1));
    let want = linked("eth0", "eth1", &[]);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth0", 40000)), want);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth1", 50000)), want);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth2", 40001)), None);
    assert_eq!(forwarded_of(&decide(&mut linker, "eth1", 50001)), None);
    assert_eq!(linker.stats().random_reused, 2);
    assert_eq!(linker.stats().linked, 1);
}

#[test]
fn a_departure_after_the_window_is_not_linked() {
    let mut linker = ForwardingLinker::new();
    arrive(&mut linker, "eth0", 40000, 0, 1);
    let late = LINK_WINDOW.as_millis() as u64 + 1;
    leave(&mut linker, "eth1", 50000, late, hello(1));
    assert_eq!(forwarded_of(&decide(&mut linker, "eth1", 50000)), None);
    let mut out = Vec::new();
    linker.advance_clock(at(late), &mut out);
    assert!(out.is_empty());
    // Not a forwarding path yet: nothing is claimed.
    assert_eq!(forwarded_of(&decide(&mut linker, "eth0", 40000)), None);
    assert_eq!(linker.stats().not_forwarded, 0);
}

#[test]
fn capture_files_are_never_linked() {
    let mut linker = ForwardingLinker::new();
    let mut out = Vec::new();
    linker.sighting(
        seen("a.pcap", 40000, PacketDirection::Unknown, 0, hello(1)),
        &mut out,
    );
    linker.sighting(
        seen("b.pcap", 50000, PacketDirection::Unknown, 1, hello(1)),
        &mut out,
    );
    assert!(out.is_empty());
    assert_eq!(forwarded_of(&decide(&mut linker, "a.pcap", 40000)), None);
}

/// A linker that has seen one handshake forwarded from eth0 to eth1.
fn on_a_forwarding_path() -> ForwardingLinker {
    let mut linker = ForwardingLinker::new();
    arrive(&mut linker, "eth0", 40000, 0, 1);
    leave(&mut linker, "eth1", 50000, 1, hello(1));
    decide(&mut linker, "eth0", 40000);
    decide(&mut linker, "eth1", 50000);
    linker
}

#[test]
fn an_arrival_decided_early_on_a_forwarding_path_waits_for_its_departure() {
    let mut linker = on_a_forwarding_path();
    arrive(&mut linker, "eth0", 40001, 10, 2);
    assert!(decide(&mut linker, "eth0", 40001).is_empty(), "held");
    let released = leave(&mut linker, "eth1", 50001, 20, hello(2));
    assert_eq!(forwarded_of(&released), linked("eth0", "eth1", &[]));
    assert_eq!(
        forwarded_of(&decide(&mut linker, "eth1", 50001)),
        linked("eth0", "eth1", &[])
    );
}

#[test]
fn an_arrival_on_a_forwarding_path_that_never_leaves_says_so() {
    let mut linker = on_a_forwarding_path();
    arrive(&mut linker, "eth0", 40001, 10, 2);
    assert!(decide(&mut linker, "eth0", 40001).is_empty(), "held");
    let mut out = Vec::new();
    linker.advance_clock(at(10 + HOLD_GRACE.as_millis() as u64 - 1), &mut out);
    assert!(out.is_empty(), "still within the grace");
    linker.advance_clock(at(10 + HOLD_GRACE.as_millis() as u64), &mut out);
    let want = Some(Forwarded {
        in_device: "eth0".into(),
        out_device: None,
        changes: Vec::new(),
    });
    assert_eq!(forwarded_of(&out), want);
    assert_eq!(linker.stats().not_forwarded, 1);

    // Undecided when the window passes: the same, at its decision.
    arrive(&mut linker, "eth0", 40002, 10_000, 3);
    let mut out = Vec::new();
    linker.advance_clock(at(10_000 + LINK_WINDOW.as_millis() as u64), &mut out);
    assert!(out.is_empty());
    assert_eq!(forwarded_of(&decide(&mut linker, "eth0", 40002)), want);
    assert_eq!(linker.stats().not_forwarded, 2);

    // At the end of the input, a held event goes out the same way.
    arrive(&mut linker, "eth0", 40003, 20_000, 4);
    assert!(decide(&mut linker, "eth0", 40003).is_empty());
    let mut out = Vec::new();
    linker.finish(&mut out);
    assert_eq!(forwarded_of(&out), want);
}

#[test]
fn the_window_is_bounded_and_what_it_drops_is_counted_not_claimed() {
    let mut linker = on_a_forwarding_path();
    for i in 0..=MAX_WAITING {
        let mut h = hello(0);
        h.random[..4].copy_from_slice(&(i as u32).to_be_bytes());
        let mut out = Vec::new();
        linker.sighting(
            seen("eth0", 1000, PacketDirection::Ingress, 10, h),
            &mut out,
        );
        // Same flow key for all: only the count matters here, but each has its own mark.
        assert!(out.is_empty());
    }
    assert_eq!(linker.stats().waiting_evicted, 1);
    assert!(linker.waiting <= MAX_WAITING);
    assert!(linker.waiting_bytes <= MAX_WAITING_BYTES);
}

#[test]
fn big_offers_are_bounded_by_bytes() {
    let mut linker = ForwardingLinker::new();
    let mut h = hello(0);
    h.cipher_suites = vec![AES128; 30_000];
    let per = Offered::of(&h).cost();
    let fits = MAX_WAITING_BYTES / per;
    for i in 0..fits + 3 {
        h.random[..4].copy_from_slice(&(i as u32).to_be_bytes());
        let mut out = Vec::new();
        let port = 1000 + i as u16;
        linker.sighting(
            seen("eth0", port, PacketDirection::Ingress, 10, h.clone()),
            &mut out,
        );
    }
    assert_eq!(linker.stats().waiting_evicted, 3);
    assert!(linker.waiting_bytes <= MAX_WAITING_BYTES);
    // An evicted arrival's event says nothing (it may have left unseen).
    let out = decide(&mut linker, "eth0", 1000);
    assert_eq!(forwarded_of(&out), None);
    assert_eq!(linker.stats().not_forwarded, 0);
}
