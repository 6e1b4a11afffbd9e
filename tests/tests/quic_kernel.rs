//! BPF_PROG_TEST_RUN tests of the kernel's QUIC path on synthetic UDP frames:
//! which datagrams are copied (a client Initial, the answers to it), which are
//! not (plain UDP, unanswered floods, datagrams past the budget), and the one
//! short-header sighting per direction. Each test loads its own Capture (own
//! maps) and asserts the exact datagrams and counters. Needs root.

use std::net::SocketAddr;

use tlsmon::source::{
    live::{Capture, CaptureOptions, KernelCounters},
    segment::{Datagram, PacketDirection, Segment},
};
use tlsmon_tests::frames::{self, quic_initial, quic_long, quic_short};

const TC_ACT_UNSPEC: i32 = -1;
const CLIENT4: &str = "10.1.0.1:40000";
const SERVER4: &str = "10.1.0.2:443";
const CLIENT6: &str = "[fd00::1]:40000";
const SERVER6: &str = "[fd00::2]:443";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn load_with(options: CaptureOptions) -> Capture {
    match Capture::load(options) {
        Ok(c) => c,
        Err(e) => panic!("loading the classifier failed (these tests need root): {e}"),
    }
}

fn load() -> Capture {
    load_with(CaptureOptions::default())
}

/// Runs one UDP datagram from `src` to `dst` through hook `hook`.
fn send(c: &mut Capture, src: &str, dst: &str, payload: &[u8], hook: PacketDirection) {
    let frame = frames::udp(addr(src), addr(dst), payload);
    let verdict = c.test_run().run_on_frame(&frame, hook).unwrap();
    assert_eq!(
        verdict, TC_ACT_UNSPEC,
        "every packet goes through untouched"
    );
}

/// The datagrams the kernel sent since the last call (and no TCP segment).
fn datagrams(c: &mut Capture) -> Vec<Datagram> {
    let mut segments: Vec<Segment> = Vec::new();
    c.drain_segments(&mut segments);
    assert!(
        segments.is_empty(),
        "UDP never becomes a segment: {segments:?}"
    );
    let mut out = Vec::new();
    c.drain_datagrams(&mut out);
    out
}

/// A client Initial seen arriving (ingress), answered by the server's Initial
/// leaving (egress): the connection is tracked. Checks both were copied whole.
fn answered_connection(c: &mut Capture, client: &str, server: &str) {
    let hello = quic_initial(1200);
    send(c, client, server, &hello, PacketDirection::Ingress);
    let answer = quic_initial(1250);
    send(c, server, client, &answer, PacketDirection::Egress);
    let got = datagrams(c);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].src, got[0].dst, &got[0].payload, got[0].cut),
        (addr(client), addr(server), &hello, 0)
    );
    assert_eq!(got[0].direction, PacketDirection::Ingress);
    assert_eq!(
        (got[1].src, got[1].dst, &got[1].payload, got[1].cut),
        (addr(server), addr(client), &answer, 0)
    );
    assert_eq!(got[1].direction, PacketDirection::Egress);
}

#[test]
fn the_programs_with_the_quic_path_stay_within_the_verifier_budget() {
    let c = load();
    for program in c.program_stats().unwrap() {
        let verified = program.verified_instructions.unwrap_or(0);
        println!("{} verified instructions: {verified}", program.name);
        assert!(verified < 1_000_000, "{}: {verified}", program.name);
    }
}

#[test]
fn a_client_initial_and_its_answer_are_copied_and_plain_udp_is_not() {
    let mut c = load();
    // DNS-like and other plain UDP: no fixed bit, or a long header of an
    // unknown version; nothing copied, nothing opened.
    send(
        &mut c,
        CLIENT4,
        "10.1.0.2:53",
        &[0x12, 0x34, 1, 0, 0, 1, 0, 0],
        PacketDirection::Ingress,
    );
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &quic_long(0xc3, 0x0a0a_0a0a, 1200),
        PacketDirection::Ingress,
    );
    // A short header of no known connection, and a client Initial too small
    // for a server to accept (RFC 9000: at least 1200 bytes).
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &quic_short(60),
        PacketDirection::Ingress,
    );
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &quic_initial(1199),
        PacketDirection::Ingress,
    );
    assert_eq!(datagrams(&mut c), vec![]);
    answered_connection(&mut c, CLIENT4, SERVER4);
    // A Handshake packet of the tracked connection is copied too.
    let handshake = quic_long(0xe3, 1, 400);
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &handshake,
        PacketDirection::Ingress,
    );
    let got = datagrams(&mut c);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload, handshake);
    assert_eq!(
        c.counters().unwrap(),
        KernelCounters {
            packets_seen: 7,
            events_sent: 3,
            quic_openings: 1,
            quic_flows_started: 1,
            ..KernelCounters::default()
        }
    );
}

#[test]
fn a_short_header_of_a_known_connection_is_one_sighting_per_direction() {
    let mut c = load();
    // Before any answer, a short header is no sighting.
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &quic_initial(1200),
        PacketDirection::Ingress,
    );
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &quic_short(80),
        PacketDirection::Ingress,
    );
    assert_eq!(datagrams(&mut c).len(), 1, "the Initial only");
    send(
        &mut c,
        SERVER4,
        CLIENT4,
        &quic_initial(1200),
        PacketDirection::Egress,
    );
    assert_eq!(datagrams(&mut c).len(), 1, "the answer");
    let client_short = quic_short(80);
    for _ in 0..3 {
        send(
            &mut c,
            CLIENT4,
            SERVER4,
            &client_short,
            PacketDirection::Ingress,
        );
    }
    let got = datagrams(&mut c);
    assert_eq!(got.len(), 1, "one sighting however many follow: {got:?}");
    assert_eq!(
        (got[0].src, got[0].payload.as_slice(), got[0].cut),
        (addr(CLIENT4), &client_short[..1], 79)
    );
    let server_short = quic_short(1000);
    for _ in 0..2 {
        send(
            &mut c,
            SERVER4,
            CLIENT4,
            &server_short,
            PacketDirection::Egress,
        );
    }
    let got = datagrams(&mut c);
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].src, got[0].payload.as_slice(), got[0].cut),
        (addr(SERVER4), &server_short[..1], 999)
    );
    // Both directions reached 1-RTT: the connection is forgotten, and its
    // later packets cost nothing.
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &quic_long(0xe3, 1, 300),
        PacketDirection::Ingress,
    );
    send(
        &mut c,
        SERVER4,
        CLIENT4,
        &server_short,
        PacketDirection::Egress,
    );
    assert_eq!(datagrams(&mut c), vec![]);
    let counters = c.counters().unwrap();
    assert_eq!(counters.events_sent, 4);
    assert_eq!(counters.bytes_cut, 0, "a sighting's rest is not a cut");
}

#[test]
fn the_byte_budget_cuts_a_direction_with_a_count() {
    let mut c = load_with(CaptureOptions {
        byte_budget: 1500,
        ..CaptureOptions::default()
    });
    for _ in 0..3 {
        send(
            &mut c,
            CLIENT4,
            SERVER4,
            &quic_initial(1200),
            PacketDirection::Ingress,
        );
    }
    let got = datagrams(&mut c);
    assert_eq!(got.len(), 2, "the third has no budget left: {got:?}");
    assert_eq!((got[0].payload.len(), got[0].cut), (1200, 0));
    assert_eq!((got[1].payload.len(), got[1].cut), (300, 900));
    assert_eq!(got[1].payload, quic_initial(1200)[..300]);
    assert_eq!(c.counters().unwrap().bytes_cut, 900 + 1200);
    // The other direction has its own budget.
    let answer = quic_initial(1400);
    send(&mut c, SERVER4, CLIENT4, &answer, PacketDirection::Egress);
    let got = datagrams(&mut c);
    assert_eq!((got.len(), got[0].payload.len()), (1, 1400));
}

#[test]
fn an_unanswered_client_copies_a_bounded_number_of_datagrams() {
    let mut c = load();
    for _ in 0..10 {
        send(
            &mut c,
            CLIENT4,
            SERVER4,
            &quic_initial(1200),
            PacketDirection::Ingress,
        );
    }
    // MAX_UNANSWERED_DATAGRAMS: a ClientHello over two Initials and a
    // retransmission of each.
    assert_eq!(datagrams(&mut c).len(), 4);
    assert_eq!(c.counters().unwrap().bytes_cut, 6 * 1200);
}

#[test]
fn ipv6_initials_version_2_and_version_negotiation_are_followed() {
    let mut c = load();
    answered_connection(&mut c, CLIENT6, SERVER6);
    // QUIC v2 numbers its Initial 0b01; the server answers with Version
    // Negotiation (version 0, any fixed bit).
    let v2_initial = quic_long(0xd3, 0x6b33_43cf, 1200);
    send(
        &mut c,
        "[fd00::1]:40001",
        SERVER6,
        &v2_initial,
        PacketDirection::Ingress,
    );
    let negotiation = quic_long(0x80, 0, 64);
    send(
        &mut c,
        SERVER6,
        "[fd00::1]:40001",
        &negotiation,
        PacketDirection::Egress,
    );
    let got = datagrams(&mut c);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].payload, v2_initial);
    assert_eq!(got[1].payload, negotiation);
    let counters = c.counters().unwrap();
    assert_eq!(
        (counters.quic_openings, counters.quic_flows_started),
        (2, 2)
    );
}

#[test]
fn a_flood_of_spoofed_initials_is_bounded_and_counted() {
    let mut c = load();
    // A real connection, answered before the flood.
    answered_connection(&mut c, CLIENT4, SERVER4);
    let initial = quic_initial(1200);
    let flood = 5_000u32;
    for i in 0..flood {
        let src = format!("10.9.{}.{}:{}", (i >> 8) & 0xff, i & 0xff, 1024 + i % 60000);
        send(&mut c, &src, SERVER4, &initial, PacketDirection::Ingress);
    }
    let counters = c.counters().unwrap();
    let opened = counters.quic_openings - 1;
    assert_eq!(
        opened + counters.quic_openings_refused,
        u64::from(flood),
        "every spoofed Initial is either an opening or refused"
    );
    assert!(counters.quic_openings_refused > 0, "{counters:?}");
    let copied = datagrams(&mut c).len() as u64;
    assert_eq!(copied, opened, "one event per opening, none per refusal");
    // The tracked connection was not evicted: its short headers are seen.
    send(
        &mut c,
        CLIENT4,
        SERVER4,
        &quic_short(50),
        PacketDirection::Ingress,
    );
    let got = datagrams(&mut c);
    assert_eq!((got.len(), got[0].cut), (1, 49));
}
