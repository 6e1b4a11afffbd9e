//! Kernel diagnostics through aya-log (issue 11): the kernel program reports its
//! rare events, and the daemon forwards them into its log at debug level under
//! `tlsmon::kernel`, only when its log filter asks for them.
//!
//! A real OpenSSL handshake whose server flight (a certificate with a long
//! subjectAltName list) exceeds the smallest byte budget makes the kernel cut the
//! flow; a raw IPv6 frame with five extension headers (the parser follows four)
//! stops the parse at its bound. With `--log-level info,tlsmon::kernel=debug`
//! both reports reach the daemon's log; with the default level the same events
//! happen (the cut is counted) and nothing is logged, because the program was
//! loaded with the reports off.
//!
//! Needs root (namespaces, BPF), openssl and python3 (to send the raw frame).

use std::{net::SocketAddr, process::Command, time::Duration};
use tlsmon_tests::is_root;

use anyhow::{ensure, Context, Result};
use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::get,
    netns::{TestCert, VethLink},
    process::{poll, run_checked, Background},
};

const LISTEN: &str = "127.0.0.1:9812";
const CUT_REPORT: &str = "flow cut:";
const PARSE_REPORT: &str = "packet not parsed: more than 4 IPv6 extension headers";

/// A certificate of about 3 KB (60 long subjectAltName entries): the server's
/// first flight then exceeds the smallest byte budget (2 KiB).
fn big_certificate(dir: &std::path::Path) -> Result<TestCert> {
    let names: Vec<String> = (0..60)
        .map(|i| format!("DNS:host-{i:02}.a-rather-long-subdomain.tlsmon.test"))
        .collect();
    run_checked(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=tlsmon.test", "-addext"])
            .arg(format!("subjectAltName={}", names.join(",")))
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")),
    )?;
    Ok(TestCert {
        dir: dir.to_path_buf(),
    })
}

/// An Ethernet frame with an IPv6 packet whose TCP header sits behind five
/// destination-options headers.
fn ipv6_frame_with_five_extension_headers() -> Vec<u8> {
    let mut f = Vec::new();
    f.extend([0xff; 6]); // broadcast: accepted by the other end
    f.extend([2, 0, 0, 0, 0, 1]);
    f.extend([0x86, 0xdd]);
    let ext_len = 5 * 8;
    let payload_len = (ext_len + 20) as u16;
    f.extend([0x60, 0, 0, 0]);
    f.extend(payload_len.to_be_bytes());
    f.push(60); // destination options
    f.push(64);
    f.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    for i in 0..5 {
        let next = if i == 4 { 6 } else { 60 };
        // Next header, length 0 (8 bytes), a PadN option filling the rest.
        f.extend([next, 0, 1, 4, 0, 0, 0, 0]);
    }
    // TCP: ports 40000 -> 443, ACK|PSH, data offset 5, no payload bytes.
    f.extend([0x9c, 0x40, 0x01, 0xbb]);
    f.extend([0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xfa, 0xf0, 0, 0, 0, 0]);
    f
}

/// Sends `frame` out of `dev` in the client namespace with an AF_PACKET socket.
fn send_raw(link: &VethLink, frame: &[u8]) -> Result<()> {
    let hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
    run_checked(
        link.client
            .command("python3")
            .arg("-c")
            .arg(
                "import socket, sys\n\
                 s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
                 s.bind((sys.argv[1], 0))\n\
                 s.send(bytes.fromhex(sys.argv[2]))\n",
            )
            .arg(&link.client_if)
            .arg(hex),
    )?;
    Ok(())
}

fn bytes_cut(link: &VethLink) -> Result<f64> {
    let addr: SocketAddr = LISTEN.parse()?;
    let resp = link.server.run_inside(move || get(addr, "/metrics"))?;
    ensure!(resp.status == 200, "/metrics answered {}", resp.status);
    Ok(Scrape::parse(&resp.body)?.sum("tlsmon_capture_bytes_cut_total", &[]))
}

/// Runs the daemon with `log_level` (None: the default), makes the two events,
/// and returns its log once the cut was counted and it has stopped.
fn events_with(
    link: &VethLink,
    cert: &TestCert,
    dir: &std::path::Path,
    log_level: Option<&str>,
) -> Result<String> {
    let tlsmon = tlsmon_binary()?;
    let mut cmd = link.server.command(&tlsmon.display().to_string());
    cmd.args(["run", "--interface", &link.server_if, "--listen", LISTEN])
        .args(["--byte-budget", "2048"]);
    if let Some(level) = log_level {
        cmd.args(["--log-level", level]);
    }
    let name = format!("tlsmon-{}", log_level.map_or("default", |_| "diagnostics"));
    let mut daemon = Background::spawn(&name, cmd, dir)?;
    poll(
        "tlsmon attached",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            Ok((tcx_programs_of_ours(&link.server, &link.server_if) == (1, 1)).then_some(()))
        },
    )?;
    let _server = link.openssl_server(cert, 1, &["-tls1_2"]);
    let status = link.openssl_handshake(&["-tls1_2"]);
    ensure!(status.success(), "s_client: {status}");
    send_raw(link, &ipv6_frame_with_five_extension_headers())?;
    poll(
        "the kernel cut the server's flight",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            Ok((bytes_cut(link)? > 0.0).then_some(()))
        },
    )
    .with_context(|| daemon.log())?;
    if log_level.is_some() {
        poll(
            "both reports in the daemon's log",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || {
                daemon.check_running()?;
                let log = daemon.log();
                Ok((log.contains(CUT_REPORT) && log.contains(PARSE_REPORT)).then_some(()))
            },
        )
        .with_context(|| daemon.log())?;
    }
    let status = daemon.stop()?;
    ensure!(status.success(), "tlsmon exit: {status}\n{}", daemon.log());
    Ok(daemon.log())
}

#[test]
fn kernel_reports_reach_the_log_only_when_the_filter_asks() -> Result<()> {
    if !is_root() {
        eprintln!("SKIPPED kernel_log: needs root (namespaces, BPF)");
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("tlsmon-kernel-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let link = VethLink::new(96);
    let cert = big_certificate(&dir)?;

    let on = events_with(&link, &cert, &dir, Some("info,tlsmon::kernel=debug"))?;
    // Forwarded under the daemon's kernel target, at debug level.
    let report = on
        .lines()
        .find(|l| l.contains(CUT_REPORT))
        .context("no cut report")?;
    assert!(
        report.contains("DEBUG") && report.contains("tlsmon::kernel"),
        "{report}"
    );
    for line in on.lines().filter(|l| l.contains("tlsmon::kernel")) {
        eprintln!("forwarded: {line}");
    }

    let off = events_with(&link, &cert, &dir, None)?;
    assert!(
        !off.contains(CUT_REPORT) && !off.contains(PARSE_REPORT) && !off.contains("tlsmon::kernel"),
        "reports logged although not asked for:\n{off}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
