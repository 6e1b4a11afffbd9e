//! Measures what tlsmon's classifier costs per packet on bulk traffic, with the
//! kernel's own accounting (`kernel.bpf_stats_enabled=1`, run_time_ns / run_cnt as
//! `bpftool prog show` reports them), through a veth pair between two namespaces:
//!
//! 1. plain TCP bulk (iperf3): untracked flows, data one way and ACKs the other;
//! 2. TLS bulk (OpenSSL) after the flow was marked done, as the daemon does once a
//!    handshake is decided;
//! 3. each code path alone, timed by BPF_PROG_TEST_RUN over many repeats (the
//!    kernel's average per run, without bpf_stats' own per-run overhead).
//!
//! Run as root: `cargo run -p tlsmon-tests --bin classifier-bench [SECONDS]`.
//! Needs iperf3, openssl, bpftool. Restores the sysctl and removes its namespaces.

use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    time::{Duration, Instant},
};

use tlsmon::{
    source::live::{Capture, CaptureOptions, ProgramStats},
    source::segment::{ConnectionKey, PacketDirection},
};
use tlsmon_tests::{
    frames::{self, ACK, PSH},
    netns::{stdout, wait_listening, ChildGuard, TestCert, VethLink},
};

const STATS_SYSCTL: &str = "kernel.bpf_stats_enabled";

/// Turns bpf_stats on and puts the old value back on drop.
struct StatsEnabled(String);

impl StatsEnabled {
    fn new() -> StatsEnabled {
        let old = stdout("sysctl", &["-n", STATS_SYSCTL]).trim().to_owned();
        stdout("sysctl", &["-qw", &format!("{STATS_SYSCTL}=1")]);
        StatsEnabled(old)
    }
}

impl Drop for StatsEnabled {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sysctl")
            .args(["-qw", &format!("{STATS_SYSCTL}={}", self.0)])
            .status();
    }
}

fn stats(capture: &Capture) -> Vec<ProgramStats> {
    capture.program_stats().expect("program stats")
}

/// Prints per-program runs and ns per run between two snapshots.
fn report(title: &str, before: &[ProgramStats], after: &[ProgramStats], extra: &str) {
    println!("{title}{extra}");
    for (b, a) in before.iter().zip(after) {
        let runs = a.run_count - b.run_count;
        let ns = (a.run_time - b.run_time).as_nanos() as u64;
        let per_run = if runs == 0 {
            0.0
        } else {
            ns as f64 / runs as f64
        };
        println!(
            "  {:<15} id {:<5} runs {:>9}  run_time {:>12} ns  {:>7.1} ns/run",
            a.name, a.id, runs, ns, per_run
        );
    }
}

fn report_noop(before: (u64, u64), after: (u64, u64)) {
    let runs = after.0 - before.0;
    let ns = after.1 - before.1;
    let per_run = if runs == 0 {
        0.0
    } else {
        ns as f64 / runs as f64
    };
    println!(
        "  {:<15} (both hooks) runs {:>9}  run_time {:>12} ns  {:>7.1} ns/run",
        "reference no-op", runs, ns, per_run
    );
}

fn iperf_bulk(link: &VethLink, capture: &Capture, seconds: u64) {
    let _server = ChildGuard(
        link.server
            .command("iperf3")
            .args(["-s", "-1", "-p", "5201"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iperf3 (apt-get install iperf3)"),
    );
    wait_listening(&link.server, 5201);
    let before = stats(capture);
    let noop_before = noop_stats();
    let output = link.client.exec(&[
        "iperf3",
        "-c",
        &link.server_ip,
        "-p",
        "5201",
        "-t",
        &seconds.to_string(),
        "-J",
    ]);
    let after = stats(capture);
    let noop_after = noop_stats();
    let gbps = output
        .lines()
        .skip_while(|l| !l.contains("\"sum_received\""))
        .find_map(|l| {
            let v = l.trim().strip_prefix("\"bits_per_second\":")?;
            v.trim().trim_end_matches(',').parse::<f64>().ok()
        })
        .map(|bps| bps / 1e9)
        .unwrap_or(0.0);
    report(
        "plain TCP bulk, client -> server (iperf3):",
        &before,
        &after,
        &format!(" {gbps:.2} Gbit/s received"),
    );
    report_noop(noop_before, noop_after);
}

fn tls_bulk_after_done(link: &VethLink, capture: &mut Capture, megabytes: usize) {
    let cert = TestCert::new();
    let _server = link.openssl_server(&cert, 1, &[]);
    let mut client = ChildGuard(
        link.client
            .command("openssl")
            .args(["s_client", "-connect", &format!("{}:4433", link.server_ip)])
            .args(["-nocommands", "-no_ign_eof", "-brief"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = client.0.stderr.take().unwrap();
    let (tx, established) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("CONNECTION ESTABLISHED") {
                let _ = tx.send(());
            }
        }
    });
    established
        .recv_timeout(Duration::from_secs(20))
        .expect("handshake");
    let mut segments = Vec::new();
    capture.drain_segments(&mut segments);
    let hello = segments
        .iter()
        .find(|s| s.payload.first() == Some(&22))
        .expect("the handshake was captured");
    assert!(capture
        .release_flow(&ConnectionKey::of(hello), hello.seq)
        .unwrap());
    let counters_before = capture.counters().unwrap();
    let before = stats(capture);
    let noop_before = noop_stats();
    let started = Instant::now();
    let mut stdin = client.0.stdin.take().unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..megabytes {
        stdin.write_all(&chunk).unwrap();
    }
    drop(stdin);
    assert!(client.wait_exit(Duration::from_secs(120)));
    let elapsed = started.elapsed();
    let after = stats(capture);
    let noop_after = noop_stats();
    let counters_after = capture.counters().unwrap();
    report(
        &format!("TLS bulk after release ({megabytes} MiB, OpenSSL):"),
        &before,
        &after,
        &format!(
            " {:.2} Gbit/s, events during bulk: {}",
            megabytes as f64 * 8.0 * 1024.0 * 1024.0 / elapsed.as_secs_f64() / 1e9,
            counters_after.events_sent - counters_before.events_sent
        ),
    );
    report_noop(noop_before, noop_after);
}

/// Average ns per run of each code path, from BPF_PROG_TEST_RUN.
fn per_path_costs() {
    const REPEAT: u32 = 5_000;
    let client = "10.9.0.1:40000".parse().unwrap();
    let server = "10.9.0.2:443".parse().unwrap();
    let bulk: Vec<u8> = (0..1448u32).map(|i| (i * 7 + 1) as u8).collect();
    let mut app_data = vec![23, 3, 3, 0x05, 0xa3];
    app_data.resize(1448, 0x55);
    let ack = frames::tcp(server, client, 1, ACK, &[]);
    let data = frames::tcp(client, server, 1, ACK, &bulk);
    let tls_data = frames::tcp(client, server, 1, ACK | PSH, &app_data);
    let hello = frames::tcp(client, server, 1, ACK | PSH, &frames::client_hello(517));

    let mut c = Capture::load(CaptureOptions::default()).expect("load (run as root)");
    let time = |c: &mut Capture, frame: &[u8], what: &str| {
        let t = c
            .test_run()
            .time_on_frame(frame, PacketDirection::Ingress, REPEAT)
            .expect("test run");
        println!("  {what:<58} {:>6} ns/run", t.as_nanos());
    };
    println!("per code path, BPF_PROG_TEST_RUN x {REPEAT}:");
    match noop_cost(&ack, REPEAT) {
        Ok(ns) => println!(
            "  {:<58} {ns:>6} ns/run",
            "reference: a no-op classifier (2 instructions)"
        ),
        Err(e) => println!("  reference no-op classifier unavailable: {e}"),
    }
    time(&mut c, &ack, "pure ACK (returns before any map access)");
    time(&mut c, &data, "1448-byte segment, untracked flow, not TLS");
    time(
        &mut c,
        &tls_data,
        "1448-byte TLS application data, untracked flow",
    );
    // Open the connection, start the flow, then release it as the daemon would.
    let syn_ack = frames::syn_ack(server, client, 0, 1, frames::Shape::default());
    c.test_run()
        .run_on_frame(&syn_ack, PacketDirection::Egress)
        .unwrap();
    c.test_run()
        .run_on_frame(&hello, PacketDirection::Ingress)
        .unwrap();
    let mut segments = Vec::new();
    c.drain_segments(&mut segments);
    let key = ConnectionKey::of(&segments[0]);
    assert!(c.release_flow(&key, 1).unwrap());
    time(&mut c, &data, "1448-byte segment of a flow released");
    // A flow being copied: an unlimited budget, so every run sends an event.
    let mut copying = Capture::load(CaptureOptions {
        byte_budget: u32::MAX,
        ..CaptureOptions::default()
    })
    .expect("load");
    copying
        .test_run()
        .run_on_frame(&syn_ack, PacketDirection::Egress)
        .unwrap();
    time(
        &mut copying,
        &hello,
        "517-byte ClientHello copied to the RingBuf (tracked)",
    );
}

/// Average ns per run of the UDP and QUIC paths, from BPF_PROG_TEST_RUN.
fn quic_path_costs() {
    const REPEAT: u32 = 5_000;
    let client = "10.9.1.1:40000".parse().unwrap();
    let server = "10.9.1.2:443".parse().unwrap();
    let mut dns = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    dns.resize(64, 0x61);
    let dns = frames::udp(client, "10.9.1.2:53".parse().unwrap(), &dns);
    let unknown_version = frames::udp(client, server, &frames::quic_long(0xc3, 0x0a0a_0a0a, 1200));
    let short = frames::udp(client, server, &frames::quic_short(1200));
    let mut c = Capture::load(CaptureOptions::default()).expect("load (run as root)");
    let time = |c: &mut Capture, frame: &[u8], what: &str| {
        let t = c
            .test_run()
            .time_on_frame(frame, PacketDirection::Ingress, REPEAT)
            .expect("test run");
        println!("  {what:<58} {:>6} ns/run", t.as_nanos());
    };
    println!("UDP and QUIC paths, BPF_PROG_TEST_RUN x {REPEAT}:");
    time(
        &mut c,
        &dns,
        "64-byte plain UDP (DNS-like: first bit clear)",
    );
    time(
        &mut c,
        &unknown_version,
        "1200-byte UDP, long header of another version",
    );
    time(
        &mut c,
        &short,
        "1200-byte QUIC short header, no QUIC connection",
    );
    // A tracked connection whose client already reached 1-RTT: its later short
    // headers find it and return.
    let initial = frames::quic_initial(1200);
    c.test_run()
        .run_on_frame(
            &frames::udp(client, server, &initial),
            PacketDirection::Ingress,
        )
        .unwrap();
    c.test_run()
        .run_on_frame(
            &frames::udp(server, client, &initial),
            PacketDirection::Egress,
        )
        .unwrap();
    c.test_run()
        .run_on_frame(&short, PacketDirection::Ingress)
        .unwrap();
    time(
        &mut c,
        &short,
        "1200-byte QUIC short header, connection sighted",
    );
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const BPF_F_AFTER: u32 = 1 << 4;

fn bpf(cmd: libc::c_long, attr: &mut [u8]) -> std::io::Result<i64> {
    // SAFETY: bpf(2) with an attr buffer of the documented layout, zero-padded;
    // every pointer in it stays valid for the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A two-instruction classifier (`r0 = -1; exit`) named tlsmon_noop: the floor
/// every classifier pays here. Loaded with the raw bpf(2) syscall because aya
/// loads programs only from ELF objects. Returns its fd.
fn load_noop() -> std::io::Result<i32> {
    let insns: [u64; 2] = [0xffff_ffff_0000_00b7, 0x0000_0000_0000_0095];
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..59].copy_from_slice(b"tlsmon_noop");
    bpf(BPF_PROG_LOAD, &mut attr).map(|fd| fd as i32)
}

/// Average ns per run of the no-op classifier on `frame` (BPF_PROG_TEST_RUN).
fn noop_cost(frame: &[u8], repeat: u32) -> std::io::Result<u64> {
    let fd = load_noop()?;
    let mut test = [0u8; 80];
    test[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    test[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    test[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
    test[32..36].copy_from_slice(&repeat.to_ne_bytes());
    let result = bpf(BPF_PROG_TEST_RUN, &mut test)
        .map(|_| u32::from_ne_bytes([test[36], test[37], test[38], test[39]]) as u64);
    // SAFETY: closing the program fd we own.
    unsafe { libc::close(fd) };
    result
}

/// The no-op attached with TCX to both hooks of `dev` (after tlsmon), so that
/// bpf_stats measures the floor on the same traffic. Dropping the fds detaches.
struct NoopAttached {
    fds: Vec<i32>,
}

impl NoopAttached {
    fn new(dev: &str) -> std::io::Result<NoopAttached> {
        let name = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let prog = load_noop()?;
        let mut fds = vec![prog];
        for hook in [BPF_TCX_INGRESS, BPF_TCX_EGRESS] {
            let mut attr = [0u8; 64];
            attr[0..4].copy_from_slice(&(prog as u32).to_ne_bytes());
            attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
            attr[8..12].copy_from_slice(&hook.to_ne_bytes());
            attr[12..16].copy_from_slice(&BPF_F_AFTER.to_ne_bytes());
            fds.push(bpf(BPF_LINK_CREATE, &mut attr)? as i32);
        }
        Ok(NoopAttached { fds })
    }
}

impl Drop for NoopAttached {
    fn drop(&mut self) {
        for fd in self.fds.drain(..).rev() {
            // SAFETY: closing fds we own (links first, then the program).
            unsafe { libc::close(fd) };
        }
    }
}

/// run_cnt and run_time_ns of the no-op, from `bpftool prog show name`.
fn noop_stats() -> (u64, u64) {
    let json = stdout("bpftool", &["prog", "show", "name", "tlsmon_noop", "-j"]);
    let field = |name: &str| {
        json.split(&format!("\"{name}\":"))
            .nth(1)
            .and_then(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .find(|s| !s.is_empty())
            })
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("run_cnt"), field("run_time_ns"))
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let link = VethLink::new(200);
    link.server.enter_current_thread();
    let mut capture = Capture::load(CaptureOptions::default()).expect("load (run as root)");
    capture.attach(&link.server_if).expect("attach");
    let _noop = NoopAttached::new(&link.server_if).expect("attaching the reference no-op");
    let _stats = StatsEnabled::new();
    for s in stats(&capture) {
        println!(
            "{} id {} verified instructions {:?} (bpftool prog show id {})",
            s.name, s.id, s.verified_instructions, s.id
        );
    }
    iperf_bulk(&link, &capture, seconds);
    tls_bulk_after_done(&link, &mut capture, 256);
    per_path_costs();
    quic_path_costs();
    let ids: Vec<String> = stats(&capture).iter().map(|s| s.id.to_string()).collect();
    for id in ids {
        print!("{}", stdout("bpftool", &["prog", "show", "id", &id]));
        if let Ok(path) = std::env::var("TLSMON_BENCH_DUMP") {
            let xlated = stdout("bpftool", &["prog", "dump", "xlated", "id", &id]);
            std::fs::write(format!("{path}.{id}"), xlated).unwrap();
        }
    }
}
