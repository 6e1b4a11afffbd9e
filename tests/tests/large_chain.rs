//! A server certificate chain over 64 KiB (issue 16 part 2), live and offline.
//!
//! OpenSSL's s_server sends its leaf, then three padding certificates of ~27 KB
//! each (1000 subjectAltNames; self-signed, which the client ignores once it has
//! verified the leaf against its CA): a Certificate message of ~83 KB in six
//! 16 KiB records. s_client makes one TLS 1.2 and one TLS 1.3 handshake through a
//! veth pair while `tlsmon run` (with its default byte budget) and tcpdump watch
//! the server's end. Both the daemon's records and `tlsmon analyze` of the
//! capture must say `established`, with the leaf's subject and issuer for TLS 1.2
//! (in TLS 1.3 the certificate is encrypted), and the daemon must have decided
//! both without the whole chain: the kernel skipped all of each chain but its
//! first 16 KiB (its record body allowance), cutting nothing. The kernel's events
//! (at most [`KERNEL_CHUNK_BYTES`] each) are printed for the record.
//!
//! Needs root (namespaces, BPF), openssl and tcpdump; without root the test is
//! skipped, unless `CI` is set: then it fails.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use tlsmon_tests::{
    binary::tlsmon_binary,
    differential::{analyze, parse_lines, Record, Scratch, KERNEL_CHUNK_BYTES},
    exposition::Scrape,
    http_get::get,
    netns::{Netns, VethLink},
    pki::Pki,
    process::{poll, run_bounded, run_checked, Background},
    root_or_skip,
    two_path_scenario::wait_listening,
};

const TLS_PORT: u16 = 4433;
const SERVER_NAME: &str = "chain.test";
const METRICS: &str = "127.0.0.1:9808";
/// Padding certificates after the leaf, and subjectAltNames in each.
const PADDING_CERTS: usize = 3;
const PADDING_NAMES: usize = 1000;

/// Writes three large self-signed certificates to `dir/large-chain.pem` and
/// returns the chain's size in DER bytes.
fn padding_chain(dir: &Path) -> Result<usize> {
    let mut pem = String::new();
    let mut der_bytes = 0;
    for i in 1..=PADDING_CERTS {
        let mut config =
            "[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n[v3]\nsubjectAltName=@alt\n[alt]\n"
                .to_owned();
        for n in 1..=PADDING_NAMES {
            config.push_str(&format!("DNS.{n}=padding-{i}-{n}.chain.test\n"));
        }
        let cnf = dir.join(format!("padding{i}.cnf"));
        std::fs::write(&cnf, config)?;
        let cert = dir.join(format!("padding{i}.pem"));
        run_checked(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                .args(["-subj", &format!("/CN=padding {i}"), "-config"])
                .arg(&cnf)
                .arg("-keyout")
                .arg(dir.join(format!("padding{i}.key")))
                .arg("-out")
                .arg(&cert),
        )?;
        let der = run_checked(
            Command::new("openssl")
                .args(["x509", "-outform", "der", "-in"])
                .arg(&cert),
        )?;
        der_bytes += der.stdout.len();
        pem.push_str(&std::fs::read_to_string(&cert)?);
    }
    std::fs::write(dir.join("large-chain.pem"), pem)?;
    Ok(der_bytes)
}

fn scrape(ns: &Netns) -> Result<Scrape> {
    let addr: SocketAddr = METRICS.parse()?;
    let response = ns.run_inside(move || get(addr, "/metrics"))?;
    ensure!(response.status == 200, "/metrics: {}", response.status);
    Ok(Scrape::parse(&response.body)?)
}

/// How long the daemon's counters must stay unchanged to count as settled (its
/// kernel counters are read once a second).
const QUIET: Duration = Duration::from_secs(2);

/// tcpdump writing each packet as it comes (`-U --immediate-mode`), so that the
/// capture can be read while it runs.
fn tcpdump(ns: &Netns, interface: &str, dir: &Path) -> Result<(Background, std::path::PathBuf)> {
    let pcap = dir.join("large-chain.pcap");
    let mut cmd = ns.command("tcpdump");
    cmd.args(["-i", interface, "-s", "0", "-U", "--immediate-mode", "-w"])
        .arg(&pcap)
        .arg("tcp");
    let mut process = Background::spawn("tcpdump", cmd, dir)?;
    poll(
        "tcpdump capturing",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            process.check_running()?;
            Ok(process.log().contains("listening on").then_some(()))
        },
    )?;
    Ok((process, pcap))
}

/// One s_client handshake with `version` (`-tls1_2`, `-tls1_3`), verified.
fn handshake(link: &VethLink, pki: &Pki, version: &str) -> Result<()> {
    let mut cmd = link.client.command("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(format!("{}:{TLS_PORT}", link.server_ip))
        .args(["-servername", SERVER_NAME, "-verify_return_error", "-brief"])
        .arg("-CAfile")
        .arg(&pki.ca)
        .arg(version);
    let (status, output) = run_bounded(cmd, Duration::from_secs(20))?;
    ensure!(
        status.success() && output.contains("CONNECTION ESTABLISHED"),
        "s_client {version}: {status}: {output}"
    );
    Ok(())
}

/// Every record established, and the TLS 1.2 one with the leaf's names.
fn check_records(what: &str, records: &[Record]) -> Result<()> {
    ensure!(records.len() == 2, "{what}: {records:?}");
    for r in records {
        ensure!(
            r.text("outcome") == Some("established"),
            "{what}: {}",
            r.line()
        );
        let cert = &r.fields["server_cert"];
        if r.text("version") == Some("TLSv1.2") {
            ensure!(
                cert["subject"].as_str() == Some(&format!("CN={SERVER_NAME}"))
                    && cert["issuer"].as_str() == Some("CN=tlsmon test CA")
                    && cert["not_after"].is_string(),
                "{what}: leaf fields: {}",
                r.line()
            );
        } else {
            ensure!(
                r.text("version") == Some("TLSv1.3") && cert.is_null(),
                "{what}: {}",
                r.line()
            );
        }
    }
    Ok(())
}

#[test]
fn a_chain_over_64_kib_is_decided_live_and_offline_without_copying_it() -> Result<()> {
    if !root_or_skip("large_chain")? {
        return Ok(());
    }
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("large-chain")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let chain_bytes = padding_chain(&dir)?;
    ensure!(
        chain_bytes > 64 * 1024,
        "padding chain of {chain_bytes} bytes"
    );
    let link = VethLink::new(216);

    let (mut tcpdump, pcap) = tcpdump(&link.server, &link.server_if, &dir)?;
    let events = dir.join("events.jsonl");
    let mut cmd = link.server.command(&tlsmon.display().to_string());
    cmd.args(["run", "--listen", METRICS, "--interface", &link.server_if])
        .arg("--events-file")
        .arg(&events);
    let mut daemon = Background::spawn("tlsmon", cmd, &dir)?;
    poll(
        "tlsmon attached",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            Ok((scrape(&link.server)?
                .value("tlsmon_interface_attached", &[("device", &link.server_if)])
                == Some(1.0))
            .then_some(()))
        },
    )
    .with_context(|| daemon.log())?;

    let mut server_cmd = link.server.command("openssl");
    server_cmd
        // -WWW: the server does not read its stdin (which is closed here).
        .args([
            "s_server",
            "-accept",
            &TLS_PORT.to_string(),
            "-naccept",
            "2",
            "-WWW",
        ])
        .arg("-cert")
        .arg(&pki.cert)
        .arg("-key")
        .arg(&pki.key)
        .arg("-cert_chain")
        .arg(dir.join("large-chain.pem"));
    let mut server = Background::spawn("s_server", server_cmd, &dir)?;
    wait_listening(&link.server, TLS_PORT, &mut server)?;
    handshake(&link, &pki, "-tls1_2")?;
    handshake(&link, &pki, "-tls1_3")?;

    // Both decided, and the kernel's counters read since and no longer moving.
    let mut last = (0.0, 0.0);
    let mut quiet_since = Instant::now();
    let metrics = poll(
        "both handshakes decided",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            daemon.check_running()?;
            let s = scrape(&link.server)?;
            let now = (
                s.sum("tlsmon_handshakes_total", &[]),
                s.sum("tlsmon_capture_events_total", &[]),
            );
            if now != last {
                last = now;
                quiet_since = Instant::now();
                return Ok(None);
            }
            Ok((now.0 == 2.0 && now.1 > 0.0 && quiet_since.elapsed() >= QUIET).then_some(s))
        },
    )
    .with_context(|| daemon.log())?;
    daemon.stop()?;
    let live = parse_lines(&std::fs::read_to_string(&events)?)?;
    check_records("live", &live)?;

    let offline = poll(
        "the capture to hold both handshakes",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let records = analyze(&tlsmon, &pcap, &dir)?;
            Ok((records.len() >= 2).then_some(records))
        },
    )?;
    tcpdump.stop()?;
    check_records("analyze", &offline)?;
    // The kernel's events: two ClientHellos, two server flights, the clients'
    // second flights, FINs; each carries at most one chunk.
    let kernel_events = metrics.sum("tlsmon_capture_events_total", &[]);
    let copied_at_most = kernel_events as u64 * KERNEL_CHUNK_BYTES;
    let skipped = metrics.sum("tlsmon_capture_bytes_skipped_total", &[]) as u64;
    let cut = metrics.sum("tlsmon_capture_bytes_cut_total", &[]);
    eprintln!(
        "large chain: {kernel_events} kernel events (at most {copied_at_most} bytes), \
         {skipped} bytes skipped, {cut} cut, for two handshakes with a {chain_bytes}-byte \
         padding chain"
    );
    // Each handshake copies at most the kernel's record body allowance (16 KiB)
    // and small records of its server flight: the rest of the chain is skipped.
    let allowance_and_slack = 20_000;
    ensure!(
        skipped >= 2 * (chain_bytes as u64 - allowance_and_slack),
        "only {skipped} bytes skipped of two {chain_bytes}-byte chains"
    );
    ensure!(cut == 0.0, "{cut} bytes cut: a bound was hit");
    scratch.passed();
    Ok(())
}
