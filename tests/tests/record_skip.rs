//! BPF_PROG_TEST_RUN tests of what the kernel copies of a tracked flow's payload
//! since it follows TLS records: record headers always (also split over
//! segments), small records whole, large record bodies only as far as the body
//! allowance reaches, and nothing before a resume point userspace set (also
//! inside a packet and across sequence wrap-around); skipped bytes counted.
//! Needs root.

use std::net::SocketAddr;

use tlsmon::{
    source::live::{Capture, CaptureOptions, ResumeMode, ResumeOutcome, ResumePoint},
    source::segment::{ConnectionKey, PacketDirection, Segment},
};
use tlsmon_common::{MAX_RECORDS_PER_PACKET, RECORD_BODY_ALLOWANCE};
use tlsmon_tests::frames::{self, Shape, ACK, PSH};

const TC_ACT_UNSPEC: i32 = -1;
const CLIENT: &str = "10.1.0.1:40000";
const SERVER: &str = "10.1.0.2:443";
/// The server's first payload byte: its SYN-ACK's ISN is 0.
const SERVER_FIRST: u32 = 1;
/// Segment size of the synthetic streams (BPF_PROG_TEST_RUN refuses frames
/// much larger than a page).
const MSS: usize = 1448;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn load() -> Capture {
    match Capture::load(CaptureOptions::default()) {
        Ok(c) => c,
        Err(e) => panic!("loading the classifier failed (these tests need root): {e}"),
    }
}

fn run(c: &mut Capture, frame: &[u8], direction: PacketDirection) {
    let verdict = c.test_run().run_on_frame(frame, direction).unwrap();
    assert_eq!(verdict, TC_ACT_UNSPEC);
}

fn drain(c: &mut Capture) -> Vec<Segment> {
    let mut out = Vec::new();
    c.drain_segments(&mut out);
    out
}

/// Opens a connection whose client's first payload (a 300-byte ClientHello) is
/// at `client_seq`, seen on ingress; the server's ISN is 0. Returns its key.
fn open_with_hello(c: &mut Capture, client_seq: u32) -> ConnectionKey {
    run(
        c,
        &frames::syn_ack(addr(SERVER), addr(CLIENT), 0, client_seq, Shape::default()),
        PacketDirection::Egress,
    );
    let hello = frames::client_hello(300);
    run(
        c,
        &frames::tcp(addr(CLIENT), addr(SERVER), client_seq, ACK | PSH, &hello),
        PacketDirection::Ingress,
    );
    let segs = drain(c);
    assert_eq!(segs.len(), 2, "the SYN, then the hello: {segs:?}");
    assert_eq!(segs[1].payload, hello);
    ConnectionKey::of(&segs[1])
}

/// A TLS record: header (type, version 3.3, length) and a body of `len` bytes
/// whose bytes say where they are (`fill` plus the offset).
fn record(content_type: u8, len: usize, fill: u8) -> Vec<u8> {
    let mut r = vec![content_type, 3, 3, (len >> 8) as u8, len as u8];
    r.extend((0..len).map(|i| fill.wrapping_add(i as u8)));
    r
}

/// Sends `stream` from the server in segments of `mss` bytes from `seq` on.
fn send_server(c: &mut Capture, stream: &[u8], seq: u32, mss: usize) {
    let mut at = 0;
    while at < stream.len() {
        let end = (at + mss).min(stream.len());
        let frame = frames::tcp(
            addr(SERVER),
            addr(CLIENT),
            seq.wrapping_add(at as u32),
            ACK,
            &stream[at..end],
        );
        run(c, &frame, PacketDirection::Egress);
        at = end;
    }
}

/// The copied bytes of `segs` as (offset from `base`, bytes) runs, adjacent
/// segments merged; checks every byte against `stream`.
fn copied_runs(segs: &[Segment], base: u32, stream: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for s in segs {
        assert_eq!(s.cut, 0, "nothing cut by a bound: {s:?}");
        let off = s.seq.wrapping_sub(base) as usize;
        assert_eq!(
            &s.payload[..],
            &stream[off..off + s.payload.len()],
            "bytes at offset {off}"
        );
        match runs.last_mut() {
            Some((start, len)) if *start + *len == off => *len += s.payload.len(),
            _ => runs.push((off, s.payload.len())),
        }
    }
    runs
}

#[test]
fn a_large_certificate_flight_copies_headers_small_records_and_the_allowance() {
    let mut c = load();
    open_with_hello(&mut c, 1000);
    let allowance = RECORD_BODY_ALLOWANCE as usize;
    // ServerHello (small), two 16,000-byte certificate records (the first fits
    // the allowance, the second gets what is left of it), ServerKeyExchange
    // (small, whole), then a large record after the allowance: header only.
    let sizes = [
        (22u8, 100usize),
        (22, 16_000),
        (22, 16_000),
        (22, 300),
        (23, 4_000),
    ];
    let mut stream = Vec::new();
    let mut starts = Vec::new();
    for (i, (t, len)) in sizes.iter().enumerate() {
        starts.push(stream.len());
        stream.extend(record(*t, *len, i as u8 * 40));
    }
    send_server(&mut c, &stream, SERVER_FIRST, MSS);
    let segs = drain(&mut c);
    let runs = copied_runs(&segs, SERVER_FIRST, &stream);
    let left_for_third = allowance - 16_000;
    assert_eq!(
        runs,
        vec![
            (0, starts[2] + 5 + left_for_third),
            (starts[3], 5 + 300 + 5),
        ],
        "ServerHello, first certificate record and the allowance's rest of the second; \
         the third whole; the last record's header"
    );
    let skipped = (16_000 - left_for_third) + 4_000;
    let k = c.counters().unwrap();
    assert_eq!(k.bytes_skipped, skipped as u64);
    assert_eq!((k.bytes_cut, k.record_following_stopped), (0, 0));
    // Only the events after a skip start a new run.
    let copied: usize = runs.iter().map(|(_, n)| n).sum();
    assert_eq!(copied + skipped, stream.len());
}

#[test]
fn a_record_header_split_over_two_segments_is_followed() {
    let mut c = load();
    open_with_hello(&mut c, 1000);
    // A 20,000-byte record past the allowance's reach is cut to its header only
    // when the allowance is spent: spend it with one large record first.
    let first = record(23, RECORD_BODY_ALLOWANCE as usize, 1);
    let second = record(23, 2_000, 2);
    let third = record(21, 2, 3);
    let mut stream = first.clone();
    stream.extend(&second);
    stream.extend(&third);
    // Segment edges: every MSS (BPF_PROG_TEST_RUN takes frames up to about a
    // page), and two bytes into the second record's header, one byte into the
    // third's.
    let cut_a = first.len() + 2;
    let cut_b = first.len() + second.len() + 1;
    let mut edges: Vec<usize> = (0..stream.len()).step_by(MSS).collect();
    edges.extend([cut_a, cut_b, stream.len()]);
    edges.sort_unstable();
    edges.dedup();
    for w in edges.windows(2) {
        let frame = frames::tcp(
            addr(SERVER),
            addr(CLIENT),
            SERVER_FIRST + w[0] as u32,
            ACK,
            &stream[w[0]..w[1]],
        );
        run(&mut c, &frame, PacketDirection::Egress);
    }
    let runs = copied_runs(&drain(&mut c), SERVER_FIRST, &stream);
    assert_eq!(
        runs,
        vec![
            (0, first.len() + 5),
            (first.len() + second.len(), third.len()),
        ],
        "the first record whole (the allowance), the second's split header, \
         the third (small, split header) whole"
    );
    let k = c.counters().unwrap();
    assert_eq!(k.bytes_skipped, 2_000);
    assert_eq!(k.record_following_stopped, 0);
}

#[test]
fn records_per_packet_are_bounded_and_the_rest_is_copied_whole() {
    let mut c = load();
    open_with_hello(&mut c, 1000);
    // More small records in one segment than the kernel walks: the rest of the
    // segment is copied whole and the direction stops following.
    let n = MAX_RECORDS_PER_PACKET as usize + 3;
    let mut stream = Vec::new();
    for i in 0..n {
        stream.extend(record(23, 20, i as u8));
    }
    send_server(&mut c, &stream, SERVER_FIRST, stream.len());
    let runs = copied_runs(&drain(&mut c), SERVER_FIRST, &stream);
    assert_eq!(runs, vec![(0, stream.len())]);
    let k = c.counters().unwrap();
    assert_eq!((k.bytes_skipped, k.record_following_stopped), (0, 1));
}

#[test]
fn bytes_that_are_no_tls_records_stop_following_and_are_copied_whole() {
    let mut c = load();
    open_with_hello(&mut c, 1000);
    let stream = b"HTTP/1.1 200 Connection established\r\n\r\n".to_vec();
    send_server(&mut c, &stream, SERVER_FIRST, MSS);
    let runs = copied_runs(&drain(&mut c), SERVER_FIRST, &stream);
    assert_eq!(runs, vec![(0, stream.len())]);
    assert_eq!(c.counters().unwrap().record_following_stopped, 1);
}

#[test]
fn a_resume_point_skips_what_comes_before_it_also_inside_a_packet() {
    let mut c = load();
    let key = open_with_hello(&mut c, 1000);
    // Told before the bytes pass: copy all from 3001 on (inside the second
    // 2,000-byte segment).
    let resume = SERVER_FIRST + 3_000;
    let outcome = c
        .resume_flow(
            &key,
            1000,
            addr(SERVER),
            ResumePoint {
                seq: resume,
                mode: ResumeMode::CopyAll,
            },
        )
        .unwrap();
    assert_eq!(outcome, ResumeOutcome::InTime);
    let stream: Vec<u8> = (0..6_000u32).map(|i| (i % 251) as u8).collect();
    send_server(&mut c, &stream, SERVER_FIRST, 2_000);
    let segs = drain(&mut c);
    assert!(segs.iter().all(|s| s.seq.wrapping_sub(resume) < 1 << 31));
    let runs = copied_runs(&segs, SERVER_FIRST, &stream);
    assert_eq!(
        runs,
        vec![(3_000, 3_000)],
        "nothing before the point, all after"
    );
    let k = c.counters().unwrap();
    assert_eq!(k.bytes_skipped, 3_000);
    assert_eq!(k.bytes_cut, 0);
    // Another connection's key, or a stale client_seq, changes nothing.
    let stale = c
        .resume_flow(
            &key,
            999,
            addr(SERVER),
            ResumePoint {
                seq: 1,
                mode: ResumeMode::SkipTo,
            },
        )
        .unwrap();
    assert_eq!(stale, ResumeOutcome::NotApplied);
}

#[test]
fn a_resume_point_holds_across_sequence_wrap_around() {
    let mut c = load();
    let client_seq = 0xffff_f000u32;
    let key = open_with_hello(&mut c, client_seq);
    let next = client_seq.wrapping_add(300);
    // The point lies after the wrap, inside the segment that spans it (3,796
    // bytes in; segments of 1,400).
    let resume = 0x10u32;
    let outcome = c
        .resume_flow(
            &key,
            client_seq,
            addr(CLIENT),
            ResumePoint {
                seq: resume,
                mode: ResumeMode::CopyAll,
            },
        )
        .unwrap();
    assert_eq!(outcome, ResumeOutcome::InTime);
    let stream: Vec<u8> = (0..8_000u32).map(|i| (i % 253) as u8).collect();
    let mut at = 0usize;
    while at < stream.len() {
        let end = (at + 1_400).min(stream.len());
        let frame = frames::tcp(
            addr(CLIENT),
            addr(SERVER),
            next.wrapping_add(at as u32),
            ACK,
            &stream[at..end],
        );
        run(&mut c, &frame, PacketDirection::Ingress);
        at = end;
    }
    let segs = drain(&mut c);
    let runs = copied_runs(&segs, next, &stream);
    let before = resume.wrapping_sub(next) as usize;
    assert_eq!(before, 0xed4 + 0x10);
    assert_eq!(runs, vec![(before, stream.len() - before)]);
    assert_eq!(segs[0].seq, resume);
    assert_eq!(c.counters().unwrap().bytes_skipped, before as u64);
}

#[test]
fn records_named_by_userspace_are_followed_and_late_points_are_reported() {
    let mut c = load();
    let key = open_with_hello(&mut c, 1000);
    // A preamble-like reply the kernel copies whole (not records) ...
    let reply = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    send_server(&mut c, &reply, SERVER_FIRST, MSS);
    assert_eq!(drain(&mut c).len(), 1);
    let records_at = SERVER_FIRST + reply.len() as u32;
    // ... naming a record start behind bytes it did not walk: not applied.
    let late = c
        .resume_flow(
            &key,
            1000,
            addr(SERVER),
            ResumePoint {
                seq: SERVER_FIRST,
                mode: ResumeMode::Records,
            },
        )
        .unwrap();
    assert_eq!(late, ResumeOutcome::NotApplied);
    // Naming the next byte: records followed from there (allowance spent by a
    // large first record, then a large record cut to its header).
    let named = c
        .resume_flow(
            &key,
            1000,
            addr(SERVER),
            ResumePoint {
                seq: records_at,
                mode: ResumeMode::Records,
            },
        )
        .unwrap();
    assert_eq!(named, ResumeOutcome::InTime);
    let mut stream = record(22, RECORD_BODY_ALLOWANCE as usize, 5);
    let first_len = stream.len();
    stream.extend(record(22, 5_000, 6));
    send_server(&mut c, &stream, records_at, MSS);
    let runs = copied_runs(&drain(&mut c), records_at, &stream);
    assert_eq!(runs, vec![(0, first_len + 5)]);
    let k = c.counters().unwrap();
    assert_eq!(k.bytes_skipped, 5_000);
    // A point behind the kernel's position on a followed direction is late but
    // taken for what is still to come.
    let again = c
        .resume_flow(
            &key,
            1000,
            addr(SERVER),
            ResumePoint {
                seq: records_at,
                mode: ResumeMode::CopyAll,
            },
        )
        .unwrap();
    assert_eq!(again, ResumeOutcome::Late);
}
