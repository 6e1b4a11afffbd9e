//! BPF_PROG_TEST_RUN tests of the kernel classifier on synthetic frames, through
//! the public capture API: each test loads its own Capture (own maps), runs frames
//! through the ingress or egress program, and asserts the exact segments and
//! counters that come out. Needs root.

use std::net::SocketAddr;

use tlsmon::{
    source::live::{Capture, CaptureOptions, KernelCounters},
    source::segment::{ConnectionKey, PacketDirection, Segment, TcpFlags},
};
use tlsmon_tests::frames::{self, Shape, ACK, FIN, PSH, RST, SYN};

const TC_ACT_UNSPEC: i32 = -1;
const CLIENT4: &str = "10.1.0.1:40000";
const SERVER4: &str = "10.1.0.2:443";
const CLIENT6: &str = "[fd00::1]:40000";
const SERVER6: &str = "[fd00::2]:443";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn load() -> Capture {
    load_with(CaptureOptions::default())
}

fn load_with(options: CaptureOptions) -> Capture {
    match Capture::load(options) {
        Ok(c) => c,
        Err(e) => panic!("loading the classifier failed (these tests need root): {e}"),
    }
}

/// Runs one frame and checks the classifier let it through unchanged.
fn run(capture: &mut Capture, frame: &[u8], direction: PacketDirection) {
    let verdict = capture
        .test_run()
        .run_on_frame(frame, direction)
        .unwrap_or_else(|e| panic!("frame of {} bytes: {e}", frame.len()));
    assert_eq!(
        verdict, TC_ACT_UNSPEC,
        "the classifier must always return TC_ACT_UNSPEC"
    );
}

fn drain(capture: &mut Capture) -> Vec<Segment> {
    let mut out = Vec::new();
    capture.drain_segments(&mut out);
    out
}

fn counters(capture: &Capture) -> KernelCounters {
    capture.counters().unwrap()
}

/// The hook the other end's packets cross: a host that receives the ClientHello
/// sends the SYN-ACK, and the other way round.
fn opposite(hook: PacketDirection) -> PacketDirection {
    match hook {
        PacketDirection::Egress => PacketDirection::Ingress,
        _ => PacketDirection::Egress,
    }
}

/// Shows the kernel the server's SYN-ACK of a connection whose client's first
/// payload will be at `client_seq` (the frames' ACK number 1 acknowledges the
/// server's ISN 0), seen on the hook opposite to the client's `hook`.
fn open(
    c: &mut Capture,
    client: &str,
    server: &str,
    client_seq: u32,
    shape: Shape,
    hook: PacketDirection,
) {
    let frame = frames::syn_ack(addr(server), addr(client), 0, client_seq, shape);
    run(c, &frame, opposite(hook));
}

/// Opens a connection and sends `hello` as its first client payload; checks the
/// kernel copied the hello marked as opening the connection (decoded as the
/// client's SYN at `seq - 1`, then the hello).
/// Returns the hello's segment.
fn hello(
    c: &mut Capture,
    client: &str,
    server: &str,
    seq: u32,
    payload: &[u8],
    shape: Shape,
    hook: PacketDirection,
) -> Segment {
    open(c, client, server, seq, shape, hook);
    let frame = frames::tcp_shaped(addr(client), addr(server), seq, ACK | PSH, payload, shape);
    run(c, &frame, hook);
    let mut segs = drain(c);
    assert_eq!(
        segs.len(),
        2,
        "the connection's SYN, then the hello: {segs:?}"
    );
    let syn = &segs[0];
    assert_eq!(
        syn.flags,
        TcpFlags(SYN),
        "an Open event is the client's SYN"
    );
    assert_eq!(
        (syn.seq, syn.src, syn.dst),
        (seq.wrapping_sub(1), addr(client), addr(server))
    );
    assert!(syn.payload.is_empty());
    assert_eq!(segs[1].payload, payload);
    segs.remove(1)
}

#[test]
fn ipv4_client_hello_starts_a_flow_and_is_copied_exactly() {
    let mut c = load();
    let ch = frames::client_hello(517);
    let s = hello(
        &mut c,
        CLIENT4,
        SERVER4,
        1000,
        &ch,
        Shape::default(),
        PacketDirection::Ingress,
    );
    assert_eq!((s.src, s.dst), (addr(CLIENT4), addr(SERVER4)));
    assert_eq!((s.seq, s.cut), (1000, 0));
    assert_eq!(s.flags, TcpFlags(ACK | PSH));
    assert_eq!(s.direction, PacketDirection::Ingress);
    assert_eq!(s.device.name(), "lo");
    assert_eq!(
        counters(&c),
        KernelCounters {
            packets_seen: 2,
            flows_started: 1,
            events_sent: 1,
            openings_seen: 1,
            ..KernelCounters::default()
        }
    );
    assert_eq!(c.tracked_flows(), 1);
}

/// A connection opened and its ClientHello (at sequence 1000) copied.
fn after_hello(c: &mut Capture, client: &str, server: &str) -> Segment {
    let ch = frames::client_hello(300);
    hello(
        c,
        client,
        server,
        1000,
        &ch,
        Shape::default(),
        PacketDirection::Ingress,
    )
}

#[test]
fn a_client_hello_that_continues_no_connection_starts_nothing() {
    let mut c = load();
    let ch = frames::client_hello(300);
    let send = |c: &mut Capture, seq: u32, hook: PacketDirection| {
        run(
            c,
            &frames::tcp(addr(CLIENT4), addr(SERVER4), seq, ACK | PSH, &ch),
            hook,
        );
    };
    // No SYN-ACK at all: a single spoofed packet.
    send(&mut c, 1000, PacketDirection::Ingress);
    // A SYN-ACK, but the hello is not at the sequence number it acknowledged.
    open(
        &mut c,
        CLIENT4,
        SERVER4,
        5000,
        Shape::default(),
        PacketDirection::Ingress,
    );
    send(&mut c, 1000, PacketDirection::Ingress);
    // The right sequence number, but acknowledging another server ISN.
    let wrong_ack = Shape {
        ack_number: Some(77),
        ..Shape::default()
    };
    run(
        &mut c,
        &frames::tcp_shaped(
            addr(CLIENT4),
            addr(SERVER4),
            5000,
            ACK | PSH,
            &ch,
            wrong_ack,
        ),
        PacketDirection::Ingress,
    );
    // A hello-shaped payload from the server's side of the opening.
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 1, ACK | PSH, &ch),
        PacketDirection::Egress,
    );
    assert!(drain(&mut c).is_empty());
    let k = counters(&c);
    // The spoofed packet sent before any SYN-ACK fell in a slot holding neither
    // a flow nor an opening: it returned at the hint read, unlooked at. The
    // three sent where the opening lives were looked at and refused.
    assert_eq!(
        (k.flows_started, k.client_hellos_unverified, k.openings_seen),
        (0, 3, 1)
    );
    assert_eq!(c.tracked_flows(), 0);
    // The genuine first payload still starts the flow: the opening was not used up.
    send(&mut c, 5000, PacketDirection::Ingress);
    assert_eq!(drain(&mut c).len(), 2);
    // And only once: the same hello again (a retransmission after the flow
    // ended) starts nothing new.
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 1, RST, &[]),
        PacketDirection::Egress,
    );
    assert_eq!(drain(&mut c).len(), 1);
    send(&mut c, 5000, PacketDirection::Ingress);
    assert!(drain(&mut c).is_empty());
    assert_eq!(counters(&c).flows_started, 1);
}

#[test]
fn frames_for_another_host_start_nothing() {
    let mut c = load();
    let ch = frames::client_hello(300);
    // BPF_PROG_TEST_RUN sets pkt_type from the destination MAC against the test
    // device (lo, address 00:00:00:00:00:00): another address is another host.
    let elsewhere = Shape {
        to_other_host: true,
        ..Shape::default()
    };
    let foreign = frames::syn_ack(addr(SERVER4), addr(CLIENT4), 0, 1000, elsewhere);
    run(&mut c, &foreign, PacketDirection::Ingress);
    let k = counters(&c);
    assert_eq!((k.openings_seen, k.other_host_ignored), (0, 1));
    run(
        &mut c,
        &frames::tcp(addr(CLIENT4), addr(SERVER4), 1000, ACK | PSH, &ch),
        PacketDirection::Ingress,
    );
    assert!(drain(&mut c).is_empty());
    assert_eq!(counters(&c).flows_started, 0);
}

#[test]
fn ipv6_client_hello_with_an_extension_header_is_copied() {
    let mut c = load();
    let ch = frames::client_hello(400);
    let shape = Shape {
        ipv6_hop_by_hop: true,
        ..Shape::default()
    };
    let s = hello(
        &mut c,
        CLIENT6,
        SERVER6,
        77,
        &ch,
        shape,
        PacketDirection::Egress,
    );
    assert_eq!((s.src, s.dst), (addr(CLIENT6), addr(SERVER6)));
    assert_eq!(s.direction, PacketDirection::Egress);
    assert_eq!(s.seq, 77);
    assert_eq!(counters(&c).flows_started, 1);
}

#[test]
fn vlan_and_qinq_tagged_client_hellos_are_copied() {
    for vlans in [&[42u16][..], &[100, 200][..]] {
        let mut c = load();
        let ch = frames::client_hello(250);
        let shape = Shape {
            vlans,
            ..Shape::default()
        };
        let s = hello(
            &mut c,
            CLIENT4,
            SERVER4,
            5,
            &ch,
            shape,
            PacketDirection::Egress,
        );
        assert_eq!(s.src, addr(CLIENT4), "vlans {vlans:?}");
    }
}

#[test]
fn ipv4_options_are_skipped() {
    let mut c = load();
    let ch = frames::client_hello(200);
    let shape = Shape {
        // Two NOPs, then a 4-byte-aligned timestamp-free router alert (RFC 2113).
        ipv4_options: &[1, 1, 0, 0, 0x94, 4, 0, 0],
        ..Shape::default()
    };
    hello(
        &mut c,
        CLIENT4,
        SERVER4,
        9,
        &ch,
        shape,
        PacketDirection::Egress,
    );
}

#[test]
fn client_hello_split_over_two_segments_is_copied_whole() {
    let mut c = load();
    let ch = frames::client_hello(1800);
    let (first, second) = ch.split_at(1000);
    hello(
        &mut c,
        CLIENT4,
        SERVER4,
        1,
        first,
        Shape::default(),
        PacketDirection::Ingress,
    );
    // The second part starts mid-record: only the tracked flow makes it count.
    run(
        &mut c,
        &frames::tcp(addr(CLIENT4), addr(SERVER4), 1001, ACK | PSH, second),
        PacketDirection::Ingress,
    );
    let segs = drain(&mut c);
    assert_eq!(segs.len(), 1);
    assert_eq!((segs[0].seq, &segs[0].payload[..]), (1001, second));
    let k = counters(&c);
    assert_eq!((k.flows_started, k.events_sent, k.bytes_cut), (1, 2, 0));
}

#[test]
fn server_reply_on_a_tracked_flow_is_copied_with_its_direction() {
    let mut c = load();
    after_hello(&mut c, CLIENT4, SERVER4);
    let sh = frames::server_hello(1200);
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 5000, ACK | PSH, &sh),
        PacketDirection::Egress,
    );
    let segs = drain(&mut c);
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].payload, sh);
    assert_eq!((segs[0].src, segs[0].dst), (addr(SERVER4), addr(CLIENT4)));
    assert_eq!(segs[0].direction, PacketDirection::Egress);
    // Same connection key for both directions.
    assert_eq!(ConnectionKey::of(&segs[0]).lo, addr(CLIENT4));
    assert_eq!(counters(&c).flows_started, 1);
}

/// The cgroup v2 id of this test process's cgroup: the inode number of its
/// directory in the hierarchy (found in the mount table).
fn own_cgroup_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = tlsmon::attribution::mounts::cgroup2_in(&mountinfo)
        .expect("a cgroup v2 hierarchy is mounted");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup v2 line in /proc/self/cgroup");
    let dir = mount.mount_point.join(path.trim_start_matches('/'));
    std::fs::metadata(&dir).unwrap().ino()
}

#[test]
fn egress_events_carry_the_local_sockets_cgroup_from_the_first_one_on() {
    // A test run's skb belongs to a socket the kernel makes for it, in the
    // cgroup of the process that runs the test: it stands for a local server.
    let mut c = load();
    let ch = after_hello(&mut c, CLIENT4, SERVER4);
    assert_eq!(ch.cgroup_id, None, "an ingress ClientHello names no cgroup");
    let sh = frames::server_hello(300);
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 5000, ACK | PSH, &sh),
        PacketDirection::Egress,
    );
    let own = own_cgroup_id();
    let reply = drain(&mut c);
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].cgroup_id, Some(own));
    // Later events of the flow keep it, whichever way they go.
    run(
        &mut c,
        &frames::tcp(addr(CLIENT4), addr(SERVER4), 1300, ACK | FIN, &[]),
        PacketDirection::Ingress,
    );
    let fin = drain(&mut c);
    assert_eq!(fin.len(), 1);
    assert!(fin[0].flags.fin());
    assert_eq!(fin[0].cgroup_id, Some(own));
}

#[test]
fn fin_and_rst_on_a_tracked_flow_become_control_segments() {
    let mut c = load();
    after_hello(&mut c, CLIENT4, SERVER4);
    // FIN without payload, padded by Ethernet to 60 bytes: no payload event.
    let mut fin = frames::tcp(addr(CLIENT4), addr(SERVER4), 1300, ACK | FIN, &[]);
    fin.resize(60, 0);
    run(&mut c, &fin, PacketDirection::Ingress);
    let segs = drain(&mut c);
    assert_eq!(segs.len(), 1);
    assert!(segs[0].flags.fin() && !segs[0].flags.rst());
    assert!(segs[0].payload.is_empty());
    assert_eq!((segs[0].seq, segs[0].cut), (1300, 0));

    // FIN carrying data: the data, then the FIN at the sequence after it.
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 800, ACK | FIN, b"bye!"),
        PacketDirection::Egress,
    );
    let segs = drain(&mut c);
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0].payload, b"bye!");
    assert!(!segs[0].flags.fin());
    assert!(segs[1].flags.fin() && segs[1].payload.is_empty());
    assert_eq!(segs[1].seq, 804);
    // Both sides sent FIN: the kernel forgot the flow.
    assert_eq!(c.tracked_flows(), 0);

    let mut c = load();
    after_hello(&mut c, CLIENT4, SERVER4);
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 9, RST, &[]),
        PacketDirection::Egress,
    );
    let segs = drain(&mut c);
    assert_eq!(segs.len(), 1);
    assert!(segs[0].flags.rst());
    assert_eq!(segs[0].src, addr(SERVER4));
    assert_eq!(c.tracked_flows(), 0);
    // After the reset the flow is gone: later bytes are not copied.
    run(
        &mut c,
        &frames::tcp(addr(CLIENT4), addr(SERVER4), 1300, ACK, b"late"),
        PacketDirection::Ingress,
    );
    assert!(drain(&mut c).is_empty());
}
#[test]
fn plain_http_bulk_data_and_pure_acks_produce_no_event() {
    let mut c = load();
    let http = b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n";
    run(
        &mut c,
        &frames::tcp(
            addr("10.1.0.1:40001"),
            addr("10.1.0.2:80"),
            1,
            ACK | PSH,
            http,
        ),
        PacketDirection::Ingress,
    );
    let bulk: Vec<u8> = (0..1400u32).map(|i| (i * 31 + 7) as u8).collect();
    for i in 0..50u32 {
        run(
            &mut c,
            &frames::tcp(
                addr("10.1.0.2:80"),
                addr("10.1.0.1:40001"),
                i * 1400,
                ACK,
                &bulk,
            ),
            PacketDirection::Egress,
        );
        run(
            &mut c,
            &frames::tcp(addr("10.1.0.1:40001"), addr("10.1.0.2:80"), 1, ACK, &[]),
            PacketDirection::Ingress,
        );
    }
    // TLS application data on a flow whose handshake was never seen.
    let mut app_data = vec![23, 3, 3, 0, 100];
    app_data.resize(105, 9);
    run(
        &mut c,
        &frames::tcp(addr(CLIENT4), addr(SERVER4), 1, ACK, &app_data),
        PacketDirection::Ingress,
    );
    // Not IP at all (ARP), and UDP.
    let mut arp = vec![0xff; 12];
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    run(&mut c, &arp, PacketDirection::Ingress);
    assert!(drain(&mut c).is_empty());
    assert_eq!(
        counters(&c),
        KernelCounters {
            packets_seen: 1 + 100 + 1 + 1,
            ..KernelCounters::default()
        }
    );
}

#[test]
fn truncated_or_lying_tls_headers_start_nothing_and_crash_nothing() {
    let mut c = load();
    let mut port = 41000;
    let mut send = |c: &mut Capture, payload: &[u8]| {
        port += 1;
        let client = SocketAddr::new(addr(CLIENT4).ip(), port);
        run(
            c,
            &frames::tcp(client, addr(SERVER4), 1, ACK, payload),
            PacketDirection::Ingress,
        );
    };
    send(&mut c, &[22, 3, 1, 0]); // shorter than a record header + type
    send(&mut c, &[22, 3, 1, 0xff, 0xff, 1, 0, 0]); // record longer than 2^14
    send(&mut c, &[22, 3, 1, 0, 0, 1]); // empty record
    send(&mut c, &[22, 3, 9, 0, 50, 1, 0, 0]); // unknown version 3.9
    send(&mut c, &[22, 2, 0, 0, 50, 1, 0, 0]); // version 2.0 in a TLS header
    send(&mut c, &[22, 3, 3, 0, 50, 2, 0, 0]); // ServerHello first: not a client
    send(&mut c, &[0x80, 3, 1, 3, 1, 0, 0]); // SSLv2 header, length below minimum
    send(&mut c, &[0x80, 40, 2, 3, 1, 0, 0]); // SSLv2 header, not CLIENT-HELLO
    assert!(drain(&mut c).is_empty());
    assert_eq!(counters(&c).flows_started, 0);

    // None of them even asked for the connection's opening.
    assert_eq!(counters(&c).client_hellos_unverified, 0);

    // A header that promises far more than the segment holds: tracked, and only
    // the bytes present are copied.
    let mut short = frames::client_hello(600);
    short.truncate(100);
    hello(
        &mut c,
        CLIENT4,
        SERVER4,
        1,
        &short,
        Shape::default(),
        PacketDirection::Ingress,
    );

    // A frame cut inside the TCP header, and a bogus IPv4 header length.
    let full = frames::tcp(
        addr(CLIENT4),
        addr(SERVER4),
        1,
        ACK,
        &frames::client_hello(100),
    );
    run(&mut c, &full[..14 + 20 + 10], PacketDirection::Ingress);
    let mut bad_ihl = full.clone();
    bad_ihl[14] = 0x43;
    run(&mut c, &bad_ihl, PacketDirection::Ingress);
    // An IP header and no TCP header at all. (BPF_PROG_TEST_RUN refuses frames
    // that end inside the IPv4 header, so that case cannot be fed to it.)
    run(&mut c, &full[..14 + 20], PacketDirection::Ingress);
    assert!(drain(&mut c).is_empty());
    assert_eq!(counters(&c).flows_started, 1);
}

#[test]
fn sslv2_compatible_client_hello_starts_a_flow() {
    let mut c = load();
    let v2 = frames::sslv2_client_hello();
    hello(
        &mut c,
        CLIENT4,
        SERVER4,
        3,
        &v2,
        Shape::default(),
        PacketDirection::Ingress,
    );
    assert_eq!(counters(&c).flows_started, 1);
}

#[test]
fn payload_larger_than_a_chunk_is_split_and_the_budget_cuts_with_a_count() {
    let mut c = load_with(CaptureOptions {
        byte_budget: 3000,
        ..CaptureOptions::default()
    });
    after_hello(&mut c, CLIENT4, SERVER4);
    let sh = frames::server_hello(3400);
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 100, ACK, &sh),
        PacketDirection::Egress,
    );
    let segs = drain(&mut c);
    assert_eq!(segs.len(), 2, "2048 + 952 bytes");
    assert_eq!(segs[0].payload, sh[..2048]);
    assert_eq!((segs[0].seq, segs[0].cut), (100, 0));
    assert_eq!(segs[1].payload, sh[2048..3000]);
    assert_eq!((segs[1].seq, segs[1].cut), (100 + 2048, 400));
    assert_eq!(segs[1].end_seq(), 100 + 3400);
    // The server's budget is spent: nothing more from it, all of it counted.
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 3500, ACK, &[7; 500]),
        PacketDirection::Egress,
    );
    assert!(drain(&mut c).is_empty());
    let k = counters(&c);
    assert_eq!(k.bytes_cut, 400 + 500);
    assert_eq!(k.events_sent, 3, "the hello, two chunks");
    // The client's direction has its own budget (3000 - 300 left).
    run(
        &mut c,
        &frames::tcp(addr(CLIENT4), addr(SERVER4), 1300, ACK, &[1; 64]),
        PacketDirection::Ingress,
    );
    assert_eq!(drain(&mut c).len(), 1);
}

#[test]
fn a_released_flow_costs_no_more_events_and_its_tuple_starts_afresh() {
    let mut c = load();
    let ch = after_hello(&mut c, CLIENT6, SERVER6);
    let key = ConnectionKey::of(&ch);
    assert!(
        !c.release_flow(&key, 999).unwrap(),
        "another connection's sequence number leaves the flow alone"
    );
    assert_eq!(c.tracked_flows(), 1);
    assert!(c.release_flow(&key, 1000).unwrap());
    assert!(
        !c.release_flow(&key, 1000).unwrap(),
        "releasing twice is harmless"
    );
    assert_eq!(c.tracked_flows(), 0);
    for i in 0..20u32 {
        run(
            &mut c,
            &frames::tcp(addr(SERVER6), addr(CLIENT6), i * 1000, ACK, &[0x17; 1000]),
            PacketDirection::Egress,
        );
    }
    run(
        &mut c,
        &frames::tcp(addr(CLIENT6), addr(SERVER6), 1300, ACK | FIN, &[]),
        PacketDirection::Ingress,
    );
    assert!(drain(&mut c).is_empty());
    let k = counters(&c);
    assert_eq!((k.events_sent, k.bytes_cut, k.flows_released), (1, 0, 1));
    // The hint count came back with the release: nothing for healing to fix.
    assert_eq!(c.heal_hints().unwrap().slots_too_high, 0);
    // A new connection on the same 4-tuple is tracked again.
    after_hello(&mut c, CLIENT6, SERVER6);
    assert_eq!(
        counters(&c).flows_started,
        2,
        "the reused 4-tuple starts afresh"
    );
    run(
        &mut c,
        &frames::tcp(addr(SERVER6), addr(CLIENT6), 1, ACK, &[0x16; 100]),
        PacketDirection::Egress,
    );
    assert_eq!(drain(&mut c).len(), 1, "the new flow is copied again");
}

#[test]
fn unknown_flows_and_devices_release_nothing() {
    let mut c = load();
    let ch = after_hello(&mut c, CLIENT4, SERVER4);
    let key = ConnectionKey::of(&ch);
    run(
        &mut c,
        &frames::tcp(addr(SERVER4), addr(CLIENT4), 1, RST, &[]),
        PacketDirection::Egress,
    );
    assert_eq!(drain(&mut c).len(), 1);
    assert_eq!(c.tracked_flows(), 0);
    assert!(
        !c.release_flow(&key, 1000).unwrap(),
        "gone flows report false"
    );
    let mut other = key.clone();
    other.device = tlsmon::source::segment::Device::new("no-such-device");
    assert!(!c.release_flow(&other, 1000).unwrap());
}

#[test]
fn a_new_connection_on_a_tracked_tuple_replaces_the_old_flow() {
    // The old connection's end was never seen (no FIN, no RST), and userspace
    // had not decided it yet: the new SYN-ACK ends it in the kernel, and the new
    // connection is announced and copied.
    let mut c = load();
    after_hello(&mut c, CLIENT4, SERVER4);
    let ch = frames::client_hello(320);
    hello(
        &mut c,
        CLIENT4,
        SERVER4,
        70_000,
        &ch,
        Shape::default(),
        PacketDirection::Ingress,
    );
    let k = counters(&c);
    assert_eq!((k.flows_started, k.flows_replaced), (2, 1));
    assert_eq!(c.tracked_flows(), 1);
    // A retransmitted SYN-ACK of the current connection replaces nothing.
    open(
        &mut c,
        CLIENT4,
        SERVER4,
        70_000,
        Shape::default(),
        PacketDirection::Ingress,
    );
    assert_eq!(counters(&c).flows_replaced, 1);
    assert_eq!(c.tracked_flows(), 1);
}

#[test]
fn a_new_client_hello_on_a_reused_tuple_after_close_starts_again() {
    let mut c = load();
    after_hello(&mut c, CLIENT4, SERVER4);
    run(
        &mut c,
        &frames::tcp(addr(CLIENT4), addr(SERVER4), 1300, RST, &[]),
        PacketDirection::Ingress,
    );
    assert_eq!(drain(&mut c).len(), 1);
    after_hello(&mut c, CLIENT4, SERVER4);
    assert_eq!(counters(&c).flows_started, 2);
}

#[test]
fn an_opening_holds_its_slot_until_its_first_payload_passes() {
    // Bulk data returns at the hint read only if a connection that can still
    // start tracking always counts in its slot, and one that cannot no longer
    // does. A hello-shaped payload at the opening's sequence numbers shows which:
    // looked at (and refused, counted unverified) while the slot counts, not
    // looked at once it does not.
    let mut c = load();
    let ch = frames::client_hello(300);
    let client = addr(CLIENT4);
    let server = addr(SERVER4);
    let late_hello = frames::tcp(client, server, 1000, ACK | PSH, &ch);
    open(
        &mut c,
        CLIENT4,
        SERVER4,
        1000,
        Shape::default(),
        PacketDirection::Ingress,
    );
    // Healing leaves an opening's count alone: it lives.
    assert_eq!(c.heal_hints().unwrap().slots_too_high, 0);
    // Bulk from the server that does not begin where its bytes begin (not its
    // first payload) consumes nothing.
    run(
        &mut c,
        &frames::tcp(server, client, 5000, ACK, &[0x42; 1400]),
        PacketDirection::Egress,
    );
    // The client's first payload is plain HTTP: no flow, and the opening is used up.
    run(
        &mut c,
        &frames::tcp(client, server, 1000, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n"),
        PacketDirection::Ingress,
    );
    run(&mut c, &late_hello, PacketDirection::Ingress);
    let k = counters(&c);
    assert_eq!(
        (k.flows_started, k.client_hellos_unverified),
        (0, 0),
        "the slot counted nothing after the first payload"
    );
    assert_eq!(c.heal_hints().unwrap().slots_too_high, 0);

    // The same for a connection that ends before any payload (FIN from the
    // client at its first sequence number), and for one the server resets.
    for (flags, from_client) in [(ACK | FIN, true), (RST, false)] {
        open(
            &mut c,
            CLIENT4,
            SERVER4,
            1000,
            Shape::default(),
            PacketDirection::Ingress,
        );
        let before = counters(&c).client_hellos_unverified;
        // Looked at while the opening lives: the wrong sequence number is refused.
        run(
            &mut c,
            &frames::tcp(client, server, 999, ACK | PSH, &ch),
            PacketDirection::Ingress,
        );
        assert_eq!(counters(&c).client_hellos_unverified, before + 1);
        let end = if from_client {
            frames::tcp(client, server, 1000, flags, &[])
        } else {
            frames::tcp(server, client, 1, flags, &[])
        };
        let hook = if from_client {
            PacketDirection::Ingress
        } else {
            PacketDirection::Egress
        };
        run(&mut c, &end, hook);
        run(&mut c, &late_hello, PacketDirection::Ingress);
        assert_eq!(
            counters(&c).client_hellos_unverified,
            before + 1,
            "flags {flags:#x}: the slot counted nothing after the end"
        );
    }
    assert_eq!(c.heal_hints().unwrap().slots_too_high, 0);
    assert!(drain(&mut c).is_empty());

    // A ClientHello consumes its opening too, and the slot then counts the flow
    // alone: releasing it leaves nothing for healing to fix.
    let hello_seg = after_hello(&mut c, CLIENT4, SERVER4);
    assert!(c
        .release_flow(&ConnectionKey::of(&hello_seg), 1000)
        .unwrap());
    run(&mut c, &late_hello, PacketDirection::Ingress);
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.heal_hints().unwrap().slots_too_high, 0);
}

#[test]
fn hint_counts_left_by_lru_evictions_are_healed() {
    // More connections in their handshake phase than the flow map holds: the
    // LRU evicts some without giving their hint counts back. Healing must bring
    // every count back to the flows that live, so that releasing them all leaves
    // nothing counted (a count stuck above zero would cost every packet of its
    // slot a lookup, forever).
    let mut c = load();
    let ch = frames::client_hello(64);
    // The kernel's flow map holds 65,536 flows.
    let flows: u32 = 65_536 + 6_000;
    let mut hellos = Vec::new();
    for i in 0..flows {
        let client = SocketAddr::new(
            std::net::Ipv4Addr::from(0x0a02_0000 + (i >> 14)).into(),
            1024 + (i & 0x3fff) as u16,
        );
        let server = addr(SERVER4);
        run(
            &mut c,
            &frames::syn_ack(server, client, 0, 10, Shape::default()),
            PacketDirection::Egress,
        );
        run(
            &mut c,
            &frames::tcp(client, server, 10, ACK | PSH, &ch),
            PacketDirection::Ingress,
        );
        hellos.push((client, server));
        if i % 2048 == 0 {
            drain(&mut c);
        }
    }
    drain(&mut c);
    let k = counters(&c);
    assert_eq!(k.flows_started, u64::from(flows));
    let living = c.tracked_flows();
    assert!(living < flows as usize, "the LRU evicted ({living} left)");
    let first = c.heal_hints().unwrap();
    assert!(first.slots_too_high > 0, "{first:?}");
    assert_eq!(first.slots_healed, first.slots_too_high, "{first:?}");
    assert_eq!(c.heal_hints().unwrap().slots_too_high, 0);
    // Release every flow still tracked: every count must now be exactly zero.
    let device = tlsmon::source::segment::Device::new("lo");
    let mut released = 0;
    for (client, server) in hellos {
        let key = ConnectionKey {
            device: device.clone(),
            lo: client.min(server),
            hi: client.max(server),
        };
        released += usize::from(c.release_flow(&key, 10).unwrap());
    }
    assert_eq!(released, living);
    assert_eq!(c.tracked_flows(), 0);
    assert_eq!(c.heal_hints().unwrap().slots_too_high, 0);
}
