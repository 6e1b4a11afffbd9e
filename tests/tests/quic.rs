//! QUIC handshakes offline: real quinn peers (tests/src/bin/quic-peer.rs) in a
//! network namespace of the test's own, recorded with tcpdump on its loopback;
//! `tlsmon analyze` must give exact records, and agree field by field with tshark,
//! which decrypts QUIC Initial packets itself (version, cipher, group, SNI, ALPN
//! offered). Hostile datagrams (truncated, lying lengths, a 21-byte connection ID,
//! packets that fail authentication) are counted, never a crash.
//!
//! Run under the network-test lock:
//! `flock /tmp/tlsmon-nettest.lock cargo test -p tlsmon-tests --test quic -- --test-threads=1`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tlsmon_tests::binary::tlsmon_binary;
use tlsmon_tests::hostile::{write_capture, SplitMix64};
use tlsmon_tests::netns::Netns;
use tlsmon_tests::pki::Pki;
use tlsmon_tests::process::{poll, run_bounded, Background};
use tlsmon_tests::{in_scratch_dir, tshark};

const QUIC_PEER: &str = env!("CARGO_BIN_EXE_quic-peer");
const SERVER_NAME: &str = "quic.test";

/// One recorded exchange: how the peers are started, and whether the client
/// must succeed.
struct Scenario {
    name: &'static str,
    port: u16,
    server: &'static [&'static str],
    client: &'static [&'static str],
    client_succeeds: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ok",
        port: 4433,
        server: &[],
        client: &[],
        client_succeeds: true,
    },
    Scenario {
        name: "alpn_refused",
        port: 4434,
        server: &[],
        client: &["--alpn", "h2"],
        client_succeeds: false,
    },
    Scenario {
        name: "client_cert_missing",
        port: 4435,
        server: &["--client-ca", "CA"],
        client: &[],
        client_succeeds: false,
    },
    Scenario {
        name: "retry",
        port: 4436,
        server: &["--retry"],
        client: &[],
        client_succeeds: true,
    },
    Scenario {
        name: "two_initials",
        port: 4437,
        server: &["--groups", "X25519MLKEM768"],
        client: &["--groups", "X25519MLKEM768"],
        client_succeeds: true,
    },
];

/// Records `scenario` inside `ns` into `dir/<name>.pcap`.
fn record(ns: &Netns, dir: &Path, pki: &Pki, scenario: &Scenario) -> Result<PathBuf> {
    let capture = dir.join(format!("{}.pcap", scenario.name));
    let port = scenario.port.to_string();
    let mut tcpdump = ns.command("tcpdump");
    // Immediate mode: packets reach the file as they come, not when a buffer
    // block fills or times out.
    tcpdump.args(["-i", "lo", "--immediate-mode", "-U", "-n", "-w"]);
    tcpdump.arg(&capture);
    tcpdump.args(["udp", "port", &port]);
    let mut tcpdump = Background::spawn(&format!("tcpdump-{}", scenario.name), tcpdump, dir)?;
    poll(
        "tcpdump to listen",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            tcpdump.check_running()?;
            Ok(tcpdump.log().contains("listening on").then_some(()))
        },
    )?;

    let ca = pki.ca.to_string_lossy().into_owned();
    let mut server = ns.command(QUIC_PEER);
    server
        .arg("server")
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    server
        .arg("--cert")
        .arg(&pki.cert)
        .arg("--key")
        .arg(&pki.key);
    server.args(
        scenario
            .server
            .iter()
            .map(|a| if *a == "CA" { ca.as_str() } else { a }),
    );
    let mut server = Background::spawn(&format!("server-{}", scenario.name), server, dir)?;
    poll(
        "the QUIC server to listen",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || {
            server.check_running()?;
            Ok(server.log().contains("listening on").then_some(()))
        },
    )?;

    let mut client = ns.command(QUIC_PEER);
    client
        .arg("client")
        .args(["--connect", &format!("127.0.0.1:{port}")]);
    client.args(["--sni", SERVER_NAME, "--ca", &ca]);
    client.args(scenario.client);
    let (status, output) = run_bounded(client, Duration::from_secs(30))?;
    ensure!(
        status.success() == scenario.client_succeeds,
        "{}: client exited {status}, expected success={}: {output}",
        scenario.name,
        scenario.client_succeeds
    );
    // The server serves one connection and exits; its exit says how it went.
    poll(
        "the QUIC server to finish",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || Ok((!server.log().is_empty() && server.check_running().is_err()).then_some(())),
    )?;
    // tcpdump writes every packet at once; the file is whole once it stops growing.
    let mut last = (0u64, 0u32);
    poll(
        "the capture to settle",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let size = std::fs::metadata(&capture).map_or(0, |m| m.len());
            last = if size == last.0 {
                (size, last.1 + 1)
            } else {
                (size, 0)
            };
            Ok((size > 24 && last.1 >= 3).then_some(()))
        },
    )?;
    tcpdump.stop()?;
    Ok(capture)
}

/// `tlsmon analyze --format json` of one capture: the records, and the summary
/// printed on stderr.
fn analyze(capture: &Path) -> Result<(Vec<Value>, String)> {
    let out = Command::new(tlsmon_binary()?)
        .args(["analyze", "--format", "json"])
        .arg(capture)
        .output()
        .context("running tlsmon analyze")?;
    ensure!(out.status.success(), "analyze failed: {out:?}");
    let records = String::from_utf8(out.stdout)?
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(serde_json::from_str)
        .collect::<Result<Vec<Value>, _>>()?;
    Ok((records, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// What tshark decrypted of one capture's handshake.
#[derive(Debug, Default)]
struct TsharkView {
    version: Option<String>,
    client_cipher: Option<String>,
    server_cipher: Option<String>,
    sni: Option<String>,
    alpn_offered: Vec<String>,
    server_group: Option<u16>,
    alert: Option<u8>,
}

fn tshark_view(capture: &Path) -> Result<TsharkView> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args(["-Y", "quic", "-T", "fields", "-E", "separator=|"])
        .args([
            "-e",
            "quic.version",
            "-e",
            "tls.handshake.type",
            "-e",
            "tls.handshake.ciphersuite",
            "-e",
            "tls.handshake.extensions_server_name",
            "-e",
            "tls.handshake.extensions_alpn_str",
            "-e",
            "tls.handshake.extensions_key_share_group",
            "-e",
            "quic.cc.error_code.tls_alert",
        ])
        .output()
        .context("running tshark")?;
    ensure!(out.status.success(), "tshark failed: {out:?}");
    let mut view = TsharkView::default();
    for line in String::from_utf8(out.stdout)?.lines() {
        let f: Vec<&str> = line.split('|').collect();
        let [version, types, ciphers, sni, alpn, groups, alert] = f[..] else {
            bail!("unexpected tshark line {line:?}");
        };
        if view.version.is_none() && !version.is_empty() {
            view.version = version.split(',').next().map(str::to_string);
        }
        let types: Vec<&str> = types.split(',').collect();
        if types.contains(&"1") && view.client_cipher.is_none() {
            view.client_cipher = ciphers.split(',').next().map(str::to_string);
            view.sni = Some(sni.to_string()).filter(|s| !s.is_empty());
            view.alpn_offered = alpn
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect();
        }
        if types.contains(&"2") {
            view.server_cipher = ciphers.split(',').next_back().map(str::to_string);
            view.server_group = groups.split(',').next_back().and_then(|g| g.parse().ok());
        }
        if !alert.is_empty() && view.alert.is_none() {
            view.alert = alert.split(',').next().and_then(|a| a.parse().ok());
        }
    }
    Ok(view)
}

fn s<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record[field].as_str()
}

/// The IANA code point of the names these scenarios negotiate.
fn code_of(name: &str) -> Option<&'static str> {
    match name {
        "TLS_AES_128_GCM_SHA256" => Some("0x1301"),
        "x25519" => Some("29"),
        "X25519MLKEM768" => Some("4588"),
        _ => None,
    }
}

/// Checks what every record shares, then the scenario's own facts.
fn check_record(scenario: &Scenario, record: &Value, summary: &str) -> Result<()> {
    let name = scenario.name;
    ensure!(s(record, "transport") == Some("quic"), "{name}: {record}");
    ensure!(s(record, "quic_version") == Some("v1"), "{name}: {record}");
    ensure!(s(record, "sni") == Some(SERVER_NAME), "{name}: {record}");
    ensure!(
        record["offered_ciphers"] == serde_json::json!(["TLS_AES_128_GCM_SHA256"]),
        "{name}: {record}"
    );
    ensure!(
        record["offered_versions"] == serde_json::json!(["TLSv1.3"]),
        "{name}: {record}"
    );
    ensure!(
        s(record, "ja4").is_some_and(|j| j.starts_with("q13d0111")),
        "{name}: JA4 of a QUIC ClientHello starts with q: {record}"
    );
    ensure!(record["server_port"] == scenario.port, "{name}: {record}");
    ensure!(
        summary.contains("1 connections, 0 unanswered, 0 evicted, 0 failed authentication, 0 truncated, 0 lying lengths, 0 connection IDs over 20 bytes, 0 malformed frames"),
        "{name}: summary {summary}"
    );
    let established = |group: &str, retry: bool, segments: u64| -> Result<()> {
        ensure!(
            s(record, "outcome") == Some("established"),
            "{name}: {record}"
        );
        ensure!(s(record, "version") == Some("TLSv1.3"), "{name}: {record}");
        ensure!(
            s(record, "cipher") == Some("TLS_AES_128_GCM_SHA256"),
            "{name}: {record}"
        );
        ensure!(s(record, "group") == Some(group), "{name}: {record}");
        ensure!(record["quic_retry"] == retry, "{name}: {record}");
        ensure!(
            record["client_hello_segments"] == segments,
            "{name}: {record}"
        );
        ensure!(
            record["offered_alpn"] == serde_json::json!(["h3"]),
            "{name}: {record}"
        );
        Ok(())
    };
    match name {
        "ok" => established("x25519", false, 1),
        // The server's refusal travels in Handshake and 1-RTT packets, which only
        // the endpoints can read: both sides reached 1-RTT keys, so tlsmon sees
        // an established handshake (README, "QUIC").
        "client_cert_missing" => established("x25519", false, 1),
        "retry" => established("x25519", true, 1),
        "two_initials" => {
            established("X25519MLKEM768", false, 2)?;
            let bytes = record["client_hello_bytes"].as_u64().unwrap_or(0);
            ensure!(
                bytes > 1200,
                "{name}: ClientHello of {bytes} bytes fits one packet"
            );
            Ok(())
        }
        "alpn_refused" => {
            ensure!(s(record, "outcome") == Some("failed"), "{name}: {record}");
            ensure!(
                s(record, "failure_reason") == Some("alert"),
                "{name}: {record}"
            );
            ensure!(
                s(record, "alert") == Some("no_application_protocol"),
                "{name}: {record}"
            );
            ensure!(
                s(record, "alert_sender") == Some("server"),
                "{name}: {record}"
            );
            ensure!(s(record, "closed_by") == Some("server"), "{name}: {record}");
            ensure!(record["version"].is_null(), "{name}: {record}");
            ensure!(
                record["offered_alpn"] == serde_json::json!(["h2"]),
                "{name}: {record}"
            );
            Ok(())
        }
        other => bail!("no expectations for {other}"),
    }
}

/// tlsmon and tshark read the same capture alike.
fn check_against_tshark(scenario: &Scenario, record: &Value, view: &TsharkView) -> Result<()> {
    let name = scenario.name;
    ensure!(
        view.version.as_deref() == Some("0x00000001"),
        "{name}: tshark {view:?}"
    );
    ensure!(
        view.sni.as_deref() == s(record, "sni"),
        "{name}: tshark {view:?} vs {record}"
    );
    let offered: Vec<Value> = view
        .alpn_offered
        .iter()
        .map(|a| Value::from(a.as_str()))
        .collect();
    ensure!(
        record["offered_alpn"] == Value::from(offered),
        "{name}: tshark {view:?} vs {record}"
    );
    let first_offered = record["offered_ciphers"][0].as_str().and_then(code_of);
    ensure!(
        view.client_cipher.as_deref() == first_offered,
        "{name}: tshark {view:?} vs {record}"
    );
    ensure!(
        view.server_cipher.as_deref() == s(record, "cipher").and_then(code_of),
        "{name}: tshark {view:?} vs {record}"
    );
    ensure!(
        view.server_group.map(|g| g.to_string()).as_deref() == s(record, "group").and_then(code_of),
        "{name}: tshark {view:?} vs {record}"
    );
    if let Some(alert) = view.alert {
        // 120 is no_application_protocol.
        ensure!(
            alert == 120 && s(record, "alert") == Some("no_application_protocol"),
            "{name}: tshark {view:?} vs {record}"
        );
    }
    Ok(())
}

#[test]
fn quinn_handshakes_are_read_from_captures_and_agree_with_tshark() -> Result<()> {
    in_scratch_dir("quic", |dir| {
        let pki = Pki::generate(dir, SERVER_NAME)?;
        let ns = Netns::new("tlsq");
        let have_tshark = tshark::available();
        if !have_tshark {
            println!(
                "tshark comparison skipped: tshark is not installed (Debian package `tshark`)"
            );
        }
        for scenario in SCENARIOS {
            let capture = record(&ns, dir, &pki, scenario)?;
            if scenario.name == "ok" {
                hostile_variants_are_counted(dir, &capture)?;
            }
            let (records, summary) = analyze(&capture)?;
            ensure!(
                records.len() == 1,
                "{}: {records:?}\n{summary}",
                scenario.name
            );
            check_record(scenario, &records[0], &summary)?;
            if have_tshark {
                check_against_tshark(scenario, &records[0], &tshark_view(&capture)?)?;
            }
        }
        Ok(())
    })
}

/// A number the analyze summary's `quic:` line gives for `label`.
fn quic_count(summary: &str, label: &str) -> Result<u64> {
    let line = summary
        .lines()
        .find(|l| l.starts_with("quic: "))
        .with_context(|| format!("no quic line in {summary}"))?;
    for part in line.trim_start_matches("quic: ").split(", ") {
        if let Some(n) = part.strip_suffix(label) {
            return Ok(n.trim().parse()?);
        }
    }
    bail!("no {label:?} in {line}")
}

/// The UDP datagrams of an Ethernet capture: (from the server, src, dst, payload).
fn datagrams_of(
    capture: &Path,
) -> Result<Vec<(std::net::SocketAddrV4, std::net::SocketAddrV4, Vec<u8>)>> {
    let file = std::fs::File::open(capture)?;
    let mut reader = pcap_file::pcap::PcapReader::new(file)?;
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let sliced = etherparse::SlicedPacket::from_ethernet(&packet.data)?;
        let (Some(etherparse::NetSlice::Ipv4(ip)), Some(etherparse::TransportSlice::Udp(udp))) =
            (&sliced.net, &sliced.transport)
        else {
            continue;
        };
        let src = std::net::SocketAddrV4::new(ip.header().source_addr(), udp.source_port());
        let dst =
            std::net::SocketAddrV4::new(ip.header().destination_addr(), udp.destination_port());
        out.push((src, dst, udp.payload().to_vec()));
    }
    Ok(out)
}

fn udp_frame(
    src: std::net::SocketAddrV4,
    dst: std::net::SocketAddrV4,
    payload: &[u8],
) -> Result<Vec<u8>> {
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src.ip().octets(), dst.ip().octets(), 64)
        .udp(src.port(), dst.port());
    let mut frame = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut frame, payload)?;
    Ok(frame)
}

/// Crafted variants of the recorded `ok` exchange: every one is counted, none
/// makes a handshake, none crashes the reader.
fn hostile_variants_are_counted(dir: &Path, ok: &Path) -> Result<()> {
    let genuine = datagrams_of(ok)?;
    ensure!(
        genuine.len() > 4,
        "the ok capture holds {} datagrams",
        genuine.len()
    );
    let server_port = genuine[0].1.port();
    type Mutation = fn(bool, &mut Vec<u8>);
    let variants: [(&str, Mutation); 3] = [
        // Every server long-header packet forged: a byte of the first packet's
        // ciphertext changed (the last byte of a datagram may belong to a
        // coalesced Handshake packet, which tlsmon cannot open anyway).
        ("forged_server", |from_server, d| {
            if from_server && d.first().is_some_and(|b| b & 0x80 != 0) && d.len() > 60 {
                d[60] ^= 0x55;
            }
        }),
        // Every datagram cut to 40 bytes: the Length fields now lie.
        ("truncated", |_, d| d.truncate(40)),
        // A 21-byte destination connection ID in every long header.
        ("long_cid", |_, d| {
            if d.first().is_some_and(|b| b & 0x80 != 0) && d.len() > 5 {
                d[5] = 21;
            }
        }),
    ];
    for (name, mutate) in variants {
        let mut frames = Vec::new();
        for (src, dst, payload) in &genuine {
            let mut payload = payload.clone();
            mutate(src.port() == server_port, &mut payload);
            frames.push(udp_frame(*src, *dst, &payload)?);
        }
        let path = dir.join(format!("hostile-{name}.pcap"));
        write_capture(&path, &frames, Duration::from_secs(1_700_000_000))?;
        let (records, summary) = analyze(&path)?;
        ensure!(records.is_empty(), "{name}: {records:?}");
        let check = |label: &str, want: &dyn Fn(u64) -> bool| -> Result<()> {
            let n = quic_count(&summary, label)?;
            ensure!(want(n), "{name}: {n} {label}: {summary}");
            Ok(())
        };
        match name {
            "forged_server" => {
                check("connections", &|n| n == 1)?;
                check("unanswered", &|n| n == 1)?;
                check("failed authentication", &|n| n >= 1)?;
            }
            "truncated" => {
                check("connections", &|n| n == 0)?;
                check("lying lengths", &|n| n >= 1)?;
            }
            _ => {
                check("connections", &|n| n == 0)?;
                check("connection IDs over 20 bytes", &|n| n >= 1)?;
            }
        }
    }

    // Random datagrams to a QUIC port, half of them with a v1 long header.
    let mut rng = SplitMix64::new(9);
    let mut frames = Vec::new();
    let src = std::net::SocketAddrV4::new([10, 9, 9, 1].into(), 50_000);
    let dst = std::net::SocketAddrV4::new([10, 9, 9, 2].into(), 443);
    for i in 0..2_000 {
        let len = rng.between(1, 1_400);
        let mut payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if i % 2 == 0 && len > 6 {
            payload[0] = 0xc0 | (payload[0] & 0x0f);
            payload[1..5].copy_from_slice(&1u32.to_be_bytes());
        }
        frames.push(udp_frame(src, dst, &payload)?);
    }
    let path = dir.join("hostile-random.pcap");
    write_capture(&path, &frames, Duration::from_secs(1_700_000_000))?;
    let (records, summary) = analyze(&path)?;
    ensure!(records.is_empty(), "random: {records:?}");
    ensure!(
        quic_count(&summary, "connections")? == 0,
        "random: {summary}"
    );
    Ok(())
}
