//! End to end, as root: OpenSSL s_server in one network namespace, s_client in
//! another, joined by a veth pair; tlsmon's Capture attached to the server's end.
//!
//! Tests here change tc state of interfaces they create themselves only; they run
//! one at a time (SERIAL) so packet counts and timings stay exact.

use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use tlsmon::{
    source::live::{AttachedVia, Capture, CaptureOptions},
    source::segment::{ConnectionKey, PacketDirection, Segment},
};
use tlsmon_tests::{
    attached::{tc_filters_of_ours, tcx_programs_of_ours},
    netns::{ChildGuard, TestCert, VethLink},
    poll,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads segments until `done` says so, or fails after `timeout`.
fn collect_until(
    rt: &tokio::runtime::Runtime,
    capture: &mut Capture,
    timeout: Duration,
    mut done: impl FnMut(&[Segment]) -> bool,
) -> Vec<Segment> {
    rt.block_on(async {
        let mut all = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&all) {
            let mut batch = Vec::new();
            match tokio::time::timeout_at(deadline, capture.next_segments(&mut batch)).await {
                Ok(r) => {
                    r.unwrap();
                }
                Err(_) => panic!("timed out; segments so far: {}", describe(&all)),
            }
            all.extend(batch);
        }
        all
    })
}

fn describe(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| {
            format!(
                "{} {:?} {}->{} len={} flags={:#x}",
                s.device,
                s.direction,
                s.src,
                s.dst,
                s.payload.len(),
                s.flags.0
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn is_client_hello(s: &Segment) -> bool {
    s.payload.len() > 5 && s.payload[0] == 22 && s.payload[5] == 1
}

fn is_server_hello(s: &Segment) -> bool {
    s.payload.len() > 5 && s.payload[0] == 22 && s.payload[5] == 2
}

/// Nothing of tlsmon left on the server's interface: no TCX link, no filter.
fn assert_nothing_of_ours_attached(link: &VethLink) {
    assert_eq!(tcx_programs_of_ours(&link.server, &link.server_if), (0, 0));
    assert_eq!(tc_filters_of_ours(&link.server, &link.server_if), (0, 0));
    let qdiscs = link
        .server
        .exec(&["tc", "qdisc", "show", "dev", &link.server_if]);
    assert!(!qdiscs.contains("clsact"), "{qdiscs}");
}

#[test]
fn openssl_handshake_is_captured_bulk_is_free_and_later_classifiers_see_everything() {
    let _serial = serial();
    let link = VethLink::new(1);
    let cert = TestCert::new();
    let server_if = link.server_if.clone();
    let (mut capture, mut second) = link.server.run_inside(move || {
        let mut c = Capture::load(CaptureOptions::default()).unwrap();
        assert!(c.attach(&server_if).unwrap());
        assert!(!c.attach(&server_if).unwrap(), "second attach is a no-op");
        // A second classifier, attached after tlsmon (TCX appends at the end): a
        // second instance of the same program, whose packet counter proves that
        // tlsmon passed every packet on (TCX_NEXT) rather than ending the chain.
        let mut second = Capture::load(CaptureOptions::default()).unwrap();
        assert!(second.attach(&server_if).unwrap());
        (c, second)
    });
    // The rest runs on this thread, which must see the server's namespace for
    // ifindex-to-name lookups and detaching.
    link.server.enter_current_thread();
    assert_eq!(capture.attached(), vec![link.server_if.clone()]);
    assert_eq!(
        capture.attached_via(&link.server_if),
        Some(AttachedVia::Tcx)
    );
    // Two instances: each attached its pair once.
    assert_eq!(tcx_programs_of_ours(&link.server, &link.server_if), (2, 2));

    let _server = link.openssl_server(&cert, 1, &[]);
    let mut client = ChildGuard(
        link.client
            .command("openssl")
            .args(["s_client", "-connect", &format!("{}:4433", link.server_ip)])
            .args([
                "-servername",
                "tlsmon.test",
                "-nocommands",
                "-no_ign_eof",
                "-brief",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // -brief prints "CONNECTION ESTABLISHED" once the handshake is complete.
    let stderr = client.0.stderr.take().unwrap();
    let (tx, established) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("CONNECTION ESTABLISHED") {
                let _ = tx.send(());
            }
        }
    });

    let rt = runtime();
    let segments = collect_until(&rt, &mut capture, Duration::from_secs(20), |all| {
        all.iter().any(is_client_hello) && all.iter().any(is_server_hello)
    });
    let hello = segments.iter().find(|s| is_client_hello(s)).unwrap();
    assert_eq!(hello.device.name(), link.server_if);
    assert_eq!(hello.direction, PacketDirection::Ingress);
    assert_eq!(hello.src.ip().to_string(), link.client_ip);
    assert_eq!(hello.dst.to_string(), format!("{}:4433", link.server_ip));
    // The record header says how long the ClientHello is; all of it arrived.
    let record_len = u16::from_be_bytes([hello.payload[3], hello.payload[4]]) as usize;
    let client_bytes: usize = segments
        .iter()
        .filter(|s| s.direction == PacketDirection::Ingress)
        .map(|s| s.payload.len())
        .sum();
    assert!(client_bytes >= 5 + record_len, "{}", describe(&segments));
    let reply = segments.iter().find(|s| is_server_hello(s)).unwrap();
    assert_eq!(reply.device.name(), link.server_if);
    assert_eq!(reply.direction, PacketDirection::Egress);
    assert_eq!(reply.src.to_string(), format!("{}:4433", link.server_ip));
    assert_eq!(ConnectionKey::of(reply), ConnectionKey::of(hello));

    established
        .recv_timeout(Duration::from_secs(20))
        .expect("s_client never reported the handshake");
    assert!(capture
        .release_flow(&ConnectionKey::of(hello), hello.seq)
        .unwrap());
    let before_bulk = capture.counters().unwrap();

    // 2 MiB of application data after the flow is done: no event may follow.
    let mut stdin = client.0.stdin.take().unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..32 {
        stdin.write_all(&chunk).unwrap();
    }
    drop(stdin);
    assert!(
        client.wait_exit(Duration::from_secs(30)),
        "s_client did not finish"
    );
    let after_bulk = capture.counters().unwrap();
    assert!(
        after_bulk.packets_seen >= before_bulk.packets_seen + 32,
        "bulk should cross the classifier: {before_bulk:?} -> {after_bulk:?}"
    );
    assert_eq!(
        after_bulk.events_sent, before_bulk.events_sent,
        "bulk cost events"
    );
    assert_eq!(after_bulk.bytes_cut, before_bulk.bytes_cut);
    assert_eq!(after_bulk.events_dropped, 0);
    assert_eq!(capture.undecodable_events(), 0);

    // Every packet tlsmon saw, the classifier after it saw too (both were attached
    // before any traffic: IPv6 is off in these namespaces, so nothing else flows).
    let seen_by_both = poll::until("both counters to agree", Duration::from_secs(5), || {
        let first = capture.counters().unwrap().packets_seen;
        let next = second.counters().unwrap().packets_seen;
        (first == next).then_some(first)
    });
    assert!(seen_by_both > 40, "{seen_by_both}");
    // The second instance tracked the same flow independently (own maps).
    assert_eq!(second.counters().unwrap().flows_started, 1);
    second.detach_all().unwrap();

    capture.detach_all().unwrap();
    assert!(capture.attached().is_empty());
    assert_nothing_of_ours_attached(&link);
}
