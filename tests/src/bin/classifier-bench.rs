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
//! With `--pairs N` it first measures throughput: N alternating pairs of iperf3
//! runs without and with tlsmon attached (bpf_stats off, no reference no-op), and
//! reports each pair's loss and the median. Lines starting `RESULT ` repeat the
//! figures as `key=value` for `cargo xtask bench datapath`.
//!
//! Run as root: `cargo run -p tlsmon-tests --bin classifier-bench [SECONDS]
//! [--pairs N] [--pair-seconds S]`. Needs iperf3, openssl, bpftool. Restores the
//! sysctl and removes its namespaces.

use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    time::{Duration, Instant},
};

use clap::Parser;
use tlsmon::{
    source::live::{Capture, CaptureOptions, ProgramStats},
    source::segment::{ConnectionKey, PacketDirection},
};
use tlsmon_tests::{
    frames::{self, ACK, PSH},
    netns::{stdout, wait_listening, ChildGuard, TestCert, VethLink},
};

const STATS_SYSCTL: &str = "kernel.bpf_stats_enabled";

/// Sets bpf_stats on or off and puts the old value back on drop.
struct StatsEnabled(String);

impl StatsEnabled {
    fn set(on: bool) -> StatsEnabled {
        let old = stdout("sysctl", &["-n", STATS_SYSCTL]).trim().to_owned();
        stdout(
            "sysctl",
            &["-qw", &format!("{STATS_SYSCTL}={}", u8::from(on))],
        );
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

/// Prints per-program runs and ns per run between two snapshots, and a `RESULT`
/// line per program (`{key}_{program}_ns`).
fn report(key: &str, title: &str, before: &[ProgramStats], after: &[ProgramStats], extra: &str) {
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
        println!("RESULT {key}_{}_ns={per_run:.1}", a.name);
    }
}

/// Prints the reference no-op's runs and ns per run on each hook between two
/// snapshots, and `RESULT {key}_noop_{hook}_ns` lines.
fn report_noop(key: &str, before: &[(u64, u64)], after: &[(u64, u64)]) {
    for ((hook, b), a) in reference_names().iter().zip(before).zip(after) {
        let runs = a.0 - b.0;
        let ns = a.1 - b.1;
        let per_run = if runs == 0 {
            0.0
        } else {
            ns as f64 / runs as f64
        };
        println!(
            "  {:<15} runs {:>9}  run_time {:>12} ns  {:>7.1} ns/run",
            hook, runs, ns, per_run
        );
        let short = hook.rsplit('_').next().unwrap_or(hook);
        println!("RESULT {key}_noop_{short}_ns={per_run:.1}");
    }
}

/// Gbit/s the receiver counted, from iperf3's JSON report (0 when it has none).
fn received_gbps(json: &str) -> f64 {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["end"]["sum_received"]["bits_per_second"].as_f64())
        .map(|bps| bps / 1e9)
        .unwrap_or(0.0)
}

/// One iperf3 test of `seconds` between the namespaces; `reverse`: the server
/// sends (data on the server's egress hook) instead of receiving. Returns the
/// client's JSON report.
fn iperf(link: &VethLink, seconds: u64, reverse: bool) -> String {
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
    let seconds = seconds.to_string();
    let mut args = vec![
        "iperf3",
        "-c",
        &link.server_ip,
        "-p",
        "5201",
        "-t",
        &seconds,
        "-J",
    ];
    if reverse {
        args.push("-R");
    }
    link.client.exec(&args)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Throughput with and without tlsmon: `pairs` pairs of iperf3 runs, the order
/// alternating between pairs so that a drift of the machine's load hits both
/// sides alike; bpf_stats is off (its clock reads would be part of the cost).
/// Leaves tlsmon attached.
fn throughput_pairs(link: &VethLink, capture: &mut Capture, pairs: usize, seconds: u64) {
    let _stats_off = StatsEnabled::set(false);
    println!("throughput, {pairs} alternating pairs of {seconds} s iperf3 runs, bpf_stats off:");
    let mut losses = Vec::new();
    let (mut all_without, mut all_with) = (Vec::new(), Vec::new());
    for pair in 0..pairs {
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let (mut without, mut with) = (0.0, 0.0);
        for attached in order {
            if attached {
                capture.attach(&link.server_if).expect("attach");
            } else {
                capture.detach(&link.server_if).expect("detach");
            }
            let gbps = received_gbps(&iperf(link, seconds, false));
            if attached {
                with = gbps;
            } else {
                without = gbps;
            }
        }
        let loss = if without > 0.0 {
            (without - with) / without * 100.0
        } else {
            0.0
        };
        println!(
            "  pair {}: without {without:.2} Gbit/s, with {with:.2} Gbit/s, loss {loss:.2} %",
            pair + 1
        );
        losses.push(loss);
        all_without.push(without);
        all_with.push(with);
    }
    capture.attach(&link.server_if).expect("attach");
    let list = losses
        .iter()
        .map(|l| format!("{l:.2}"))
        .collect::<Vec<_>>()
        .join(" ");
    println!("RESULT throughput_pairs={pairs}");
    println!("RESULT throughput_pair_seconds={seconds}");
    println!("RESULT throughput_losses_pct={list}");
    println!(
        "RESULT throughput_without_median_gbps={:.2}",
        median(&mut all_without)
    );
    println!(
        "RESULT throughput_with_median_gbps={:.2}",
        median(&mut all_with)
    );
    println!(
        "RESULT throughput_loss_median_pct={:.2}",
        median(&mut losses)
    );
}

/// Bulk TCP through the veth with bpf_stats on: tlsmon's and the no-op's ns per
/// run on both hooks. `reverse`: the server sends, so the data passes egress.
fn iperf_bulk(link: &VethLink, capture: &Capture, seconds: u64, reverse: bool) {
    let before = stats(capture);
    let noop_before = noop_stats();
    let output = iperf(link, seconds, reverse);
    let after = stats(capture);
    let noop_after = noop_stats();
    let gbps = received_gbps(&output);
    let (key, title) = if reverse {
        (
            "bulk_egress",
            "plain TCP bulk, server -> client (iperf3 -R):",
        )
    } else {
        ("bulk_ingress", "plain TCP bulk, client -> server (iperf3):")
    };
    report(
        key,
        title,
        &before,
        &after,
        &format!(" {gbps:.2} Gbit/s received"),
    );
    report_noop(key, &noop_before, &noop_after);
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
        "tls_bulk",
        &format!("TLS bulk after release ({megabytes} MiB, OpenSSL):"),
        &before,
        &after,
        &format!(
            " {:.2} Gbit/s, events during bulk: {}",
            megabytes as f64 * 8.0 * 1024.0 * 1024.0 / elapsed.as_secs_f64() / 1e9,
            counters_after.events_sent - counters_before.events_sent
        ),
    );
    report_noop("tls_bulk", &noop_before, &noop_after);
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
    let time = |c: &mut Capture, frame: &[u8], what: &str, key: &str| {
        let t = c
            .test_run()
            .time_on_frame(frame, PacketDirection::Ingress, REPEAT)
            .expect("test run");
        println!("  {what:<58} {:>6} ns/run", t.as_nanos());
        println!("RESULT path_{key}_ns={}", t.as_nanos());
    };
    println!("per code path, BPF_PROG_TEST_RUN x {REPEAT}:");
    match noop_cost(&ack, REPEAT) {
        Ok(ns) => {
            println!(
                "  {:<58} {ns:>6} ns/run",
                "reference: a no-op classifier (2 instructions)"
            );
            println!("RESULT path_noop_ns={ns}");
        }
        Err(e) => println!("  reference no-op classifier unavailable: {e}"),
    }
    time(
        &mut c,
        &ack,
        "pure ACK (returns before any map access)",
        "pure_ack",
    );
    time(
        &mut c,
        &data,
        "1448-byte segment, untracked flow, not TLS",
        "untracked",
    );
    time(
        &mut c,
        &tls_data,
        "1448-byte TLS application data, untracked flow",
        "untracked_tls",
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
    time(
        &mut c,
        &data,
        "1448-byte segment of a flow released",
        "released",
    );
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
    // The kernel follows TLS records and would skip the repeats of a segment it
    // walked past; bytes that are no record make it copy the direction whole,
    // so that every run below copies the ClientHello again.
    copying
        .test_run()
        .run_on_frame(&hello, PacketDirection::Ingress)
        .unwrap();
    copying
        .test_run()
        .run_on_frame(
            &frames::tcp(client, server, 1 + 517, ACK, &bulk),
            PacketDirection::Ingress,
        )
        .unwrap();
    time(
        &mut copying,
        &hello,
        "517-byte ClientHello copied to the RingBuf (tracked)",
        "client_hello",
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
const BPF_F_BEFORE: u32 = 1 << 3;
const BPF_F_AFTER: u32 = 1 << 4;
/// The reference no-op's program names, one program per hook (so that bpf_stats
/// tells the hooks apart): ingress, then egress.
const NOOP_NAMES: [&str; 2] = ["tlsmon_noop_in", "tlsmon_noop_eg"];
/// The same for the header-touching reference (`--touch-first`).
const TOUCH_NAMES: [&str; 2] = ["tlsmon_touch_in", "tlsmon_touch_eg"];
/// Set by `--touch-first`: the reference reads a header byte and runs first.
static TOUCH_FIRST: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The attached reference programs' names (ingress, egress).
fn reference_names() -> [&'static str; 2] {
    if TOUCH_FIRST.load(std::sync::atomic::Ordering::Relaxed) {
        TOUCH_NAMES
    } else {
        NOOP_NAMES
    }
}

/// A classifier that reads one byte of the packet (where an untagged IPv4
/// packet's TCP flags are) and returns `TC_ACT_UNSPEC`: the floor of any
/// classifier that looks at headers, and, attached first, the one that pays
/// for bringing them into this CPU's cache.
const TOUCH_INSNS: [u64; 8] = [
    0x0000_0000_004c_1261, // r2 = *(u32 *)(r1 + 76)   skb->data
    0x0000_0000_0050_1361, // r3 = *(u32 *)(r1 + 80)   skb->data_end
    0x0000_0000_0000_24bf, // r4 = r2
    0x0000_0030_0000_0407, // r4 += 48
    0x0000_0000_0001_342d, // if r4 > r3 goto +1
    0x0000_0000_002f_2571, // r5 = *(u8 *)(r2 + 47)
    0xffff_ffff_0000_00b7, // r0 = -1
    0x0000_0000_0000_0095, // exit
];
/// The two-instruction no-op: `r0 = -1; exit`.
const NOOP_INSNS: [u64; 2] = [0xffff_ffff_0000_00b7, 0x0000_0000_0000_0095];

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

/// A two-instruction classifier (`r0 = -1; exit`) named `name` (at most 15
/// bytes): the floor every classifier pays here. Loaded with the raw bpf(2)
/// syscall because aya loads programs only from ELF objects. Returns its fd.
fn load_noop(name: &str) -> std::io::Result<i32> {
    load_program(name, &NOOP_INSNS)
}

/// Loads `insns` as a classifier named `name`; returns its fd.
fn load_program(name: &str, insns: &[u64]) -> std::io::Result<i32> {
    let license = b"GPL\0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_SCHED_CLS.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..48 + name.len()].copy_from_slice(name.as_bytes());
    bpf(BPF_PROG_LOAD, &mut attr).map(|fd| fd as i32)
}

/// Average ns per run of the no-op classifier on `frame` (BPF_PROG_TEST_RUN).
fn noop_cost(frame: &[u8], repeat: u32) -> std::io::Result<u64> {
    let fd = load_noop(NOOP_NAMES[0])?;
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

/// A reference attached with TCX to each hook of `dev`, so that bpf_stats
/// measures the floor on the same traffic: the no-op after tlsmon by default,
/// before it with `--noop-first` (it reads no packet byte either way), or with
/// `--touch-first` the header-touching program before tlsmon (it, not tlsmon,
/// then brings the headers into the cache). Dropping the fds detaches.
struct NoopAttached {
    fds: Vec<i32>,
}

impl NoopAttached {
    fn new(dev: &str, first: bool) -> std::io::Result<NoopAttached> {
        let touch = TOUCH_FIRST.load(std::sync::atomic::Ordering::Relaxed);
        let first = first || touch;
        let name = std::ffi::CString::new(dev).unwrap();
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        let mut fds = Vec::new();
        let flags = if first { BPF_F_BEFORE } else { BPF_F_AFTER };
        for (hook, prog_name) in [BPF_TCX_INGRESS, BPF_TCX_EGRESS]
            .into_iter()
            .zip(reference_names())
        {
            let insns: &[u64] = if touch { &TOUCH_INSNS } else { &NOOP_INSNS };
            let prog = load_program(prog_name, insns)?;
            fds.push(prog);
            let mut attr = [0u8; 64];
            attr[0..4].copy_from_slice(&(prog as u32).to_ne_bytes());
            attr[4..8].copy_from_slice(&ifindex.to_ne_bytes());
            attr[8..12].copy_from_slice(&hook.to_ne_bytes());
            attr[12..16].copy_from_slice(&flags.to_ne_bytes());
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

/// run_cnt and run_time_ns of each reference program (ingress, egress).
fn noop_stats() -> Vec<(u64, u64)> {
    reference_names()
        .iter()
        .map(|name| noop_stats_of(name))
        .collect()
}

/// run_cnt and run_time_ns of the program `name`, from `bpftool prog show name`.
fn noop_stats_of(name: &str) -> (u64, u64) {
    let json = stdout("bpftool", &["prog", "show", "name", name, "-j"]);
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

/// What the benchmark measures, and how long.
#[derive(Parser)]
struct Args {
    /// Seconds of each bulk run with bpf_stats on.
    #[arg(default_value_t = 5)]
    seconds: u64,
    /// Throughput pairs (without / with tlsmon) to run first; 0 skips them.
    #[arg(long, default_value_t = 0)]
    pairs: usize,
    /// Seconds of each iperf3 run of a throughput pair.
    #[arg(long, default_value_t = 5)]
    pair_seconds: u64,
    /// Attach the reference no-op before tlsmon instead of after it.
    #[arg(long)]
    noop_first: bool,
    /// Use a reference that reads one header byte, attached before tlsmon:
    /// shows what bringing the headers into the cache costs on its own.
    #[arg(long)]
    touch_first: bool,
}

fn main() {
    let args = Args::parse();
    TOUCH_FIRST.store(args.touch_first, std::sync::atomic::Ordering::Relaxed);
    let link = VethLink::new(200);
    link.server.enter_current_thread();
    let mut capture = Capture::load(CaptureOptions::default()).expect("load (run as root)");
    capture.attach(&link.server_if).expect("attach");
    for s in stats(&capture) {
        println!(
            "{} id {} verified instructions {:?} (bpftool prog show id {})",
            s.name, s.id, s.verified_instructions, s.id
        );
        if let Some(n) = s.verified_instructions {
            println!("RESULT verified_{}={n}", s.name);
        }
    }
    if args.pairs > 0 {
        throughput_pairs(&link, &mut capture, args.pairs, args.pair_seconds);
    }
    let _noop =
        NoopAttached::new(&link.server_if, args.noop_first).expect("attaching the reference no-op");
    let _stats = StatsEnabled::set(true);
    iperf_bulk(&link, &capture, args.seconds, false);
    iperf_bulk(&link, &capture, args.seconds, true);
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
