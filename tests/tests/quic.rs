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
            view.server_cipher = ciphers.split(',').last().map(str::to_string);
            view.server_group = groups.split(',').last().and_then(|g| g.parse().ok());
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
