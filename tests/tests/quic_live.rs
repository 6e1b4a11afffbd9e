//! QUIC handshakes live: quinn peers (tests/src/bin/quic-peer.rs) in two
//! network namespaces joined by a veth, `tlsmon run --events-file` attached to
//! the server's end. Each scenario must give exactly one record with the right
//! outcome, and `/metrics` the exact QUIC counts for that device.
//!
//! Run under the network-test lock:
//! `flock /tmp/tlsmon-nettest.lock cargo test -p tlsmon-tests --test quic_live -- --test-threads=1`

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::Value;
use tlsmon_tests::attached::tcx_programs_of_ours;
use tlsmon_tests::binary::tlsmon_binary;
use tlsmon_tests::http_get::get;
use tlsmon_tests::in_scratch_dir;
use tlsmon_tests::netns::{ChildGuard, VethLink};
use tlsmon_tests::pki::Pki;
use tlsmon_tests::process::{poll, run_bounded, Background};

const QUIC_PEER: &str = env!("CARGO_BIN_EXE_quic-peer");
const SERVER_NAME: &str = "quic.test";
const METRICS: &str = "127.0.0.1:9813";

/// One exchange: the peers' flags, whether the client succeeds, and the
/// record's expected outcome, group and failure alert.
struct Scenario {
    name: &'static str,
    port: u16,
    server: &'static [&'static str],
    client: &'static [&'static str],
    client_succeeds: bool,
    group: Option<&'static str>,
    alert: Option<&'static str>,
    retry: bool,
    client_hello_packets: u64,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "ok",
        port: 4433,
        server: &[],
        client: &[],
        client_succeeds: true,
        group: Some("x25519"),
        alert: None,
        retry: false,
        client_hello_packets: 1,
    },
    Scenario {
        name: "alpn_refused",
        port: 4434,
        server: &[],
        client: &["--alpn", "h2"],
        client_succeeds: false,
        group: None,
        alert: Some("no_application_protocol"),
        retry: false,
        client_hello_packets: 1,
    },
    Scenario {
        // The server's refusal travels in Handshake and 1-RTT packets, which only
        // the endpoints read: both sides reach 1-RTT keys (README, "QUIC").
        name: "client_cert_missing",
        port: 4435,
        server: &["--client-ca", "CA"],
        client: &[],
        client_succeeds: false,
        group: Some("x25519"),
        alert: None,
        retry: false,
        client_hello_packets: 1,
    },
    Scenario {
        name: "retry",
        port: 4436,
        server: &["--retry"],
        client: &[],
        client_succeeds: true,
        group: Some("x25519"),
        alert: None,
        retry: true,
        client_hello_packets: 1,
    },
    Scenario {
        name: "two_initials",
        port: 4437,
        server: &["--groups", "X25519MLKEM768"],
        client: &["--groups", "X25519MLKEM768"],
        client_succeeds: true,
        group: Some("X25519MLKEM768"),
        alert: None,
        retry: false,
        client_hello_packets: 2,
    },
];

fn lines_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Runs `scenario`'s server and client across the link.
fn exchange(link: &VethLink, dir: &Path, pki: &Pki, scenario: &Scenario) -> Result<()> {
    let ca = pki.ca.to_string_lossy().into_owned();
    let listen = format!("{}:{}", link.server_ip, scenario.port);
    let mut server = link.server.command(QUIC_PEER);
    server.arg("server").args(["--listen", &listen]);
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
    let mut client = link.client.command(QUIC_PEER);
    client.arg("client").args(["--connect", &listen]);
    client.args(["--sni", SERVER_NAME, "--ca", &ca]);
    client.args(scenario.client);
    let (status, output) = run_bounded(client, Duration::from_secs(30))?;
    ensure!(
        status.success() == scenario.client_succeeds,
        "{}: client exited {status}, expected success={}: {output}",
        scenario.name,
        scenario.client_succeeds
    );
    poll(
        "the QUIC server to finish",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || Ok((!server.log().is_empty() && server.check_running().is_err()).then_some(())),
    )?;
    Ok(())
}

fn text<'a>(record: &'a Value, field: &str) -> Option<&'a str> {
    record[field].as_str()
}

fn check_record(scenario: &Scenario, record: &Value, device: &str) -> Result<()> {
    let name = scenario.name;
    ensure!(
        text(record, "transport") == Some("quic"),
        "{name}: {record}"
    );
    ensure!(
        text(record, "quic_version") == Some("v1"),
        "{name}: {record}"
    );
    ensure!(text(record, "device") == Some(device), "{name}: {record}");
    ensure!(text(record, "sni") == Some(SERVER_NAME), "{name}: {record}");
    ensure!(record["server_port"] == scenario.port, "{name}: {record}");
    ensure!(record["quic_retry"] == scenario.retry, "{name}: {record}");
    ensure!(
        record["client_hello_segments"] == scenario.client_hello_packets,
        "{name}: {record}"
    );
    match scenario.alert {
        None => {
            ensure!(
                text(record, "outcome") == Some("established"),
                "{name}: {record}"
            );
            ensure!(
                text(record, "version") == Some("TLSv1.3"),
                "{name}: {record}"
            );
            ensure!(
                text(record, "cipher") == Some("TLS_AES_128_GCM_SHA256"),
                "{name}: {record}"
            );
            ensure!(text(record, "group") == scenario.group, "{name}: {record}");
            ensure!(
                record["offered_alpn"] == serde_json::json!(["h3"]),
                "{name}: {record}"
            );
        }
        Some(alert) => {
            ensure!(
                text(record, "outcome") == Some("failed"),
                "{name}: {record}"
            );
            ensure!(text(record, "alert") == Some(alert), "{name}: {record}");
            ensure!(
                text(record, "alert_sender") == Some("server"),
                "{name}: {record}"
            );
        }
    }
    Ok(())
}

#[test]
fn quinn_handshakes_are_recorded_live_with_exact_records_and_metrics() -> Result<()> {
    in_scratch_dir("quic-live", |dir| {
        let pki = Pki::generate(dir, SERVER_NAME)?;
        let link = VethLink::new(98);
        let events = dir.join("events.jsonl");
        let binary = tlsmon_binary()?;
        let _daemon = ChildGuard(
            link.server
                .command(&binary.to_string_lossy())
                .args(["run", "--interface", &link.server_if])
                .args(["--listen", METRICS])
                .arg("--events-file")
                .arg(&events)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("tlsmon.log"))?)
                .spawn()?,
        );
        poll(
            "the daemon to attach",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || Ok((tcx_programs_of_ours(&link.server, &link.server_if) == (1, 1)).then_some(())),
        )?;
        for (i, scenario) in SCENARIOS.iter().enumerate() {
            exchange(&link, dir, &pki, scenario)?;
            let records = poll(
                &format!("the record of {}", scenario.name),
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    let lines = lines_of(&events);
                    Ok((lines.len() > i).then_some(lines))
                },
            )?;
            ensure!(
                records.len() == i + 1,
                "{}: one record per exchange: {records:?}",
                scenario.name
            );
            check_record(scenario, &records[i], &link.server_if)?;
        }
        let addr: SocketAddr = METRICS.parse()?;
        let metrics = link.server.run_inside(move || get(addr, "/metrics"))?;
        let device = &link.server_if;
        for (outcome, cipher, version, n) in [
            ("established", "TLS_AES_128_GCM_SHA256", "TLSv1.3", 4),
            ("failed", "", "", 1),
        ] {
            let line = format!(
                r#"tlsmon_handshakes_total{{cipher="{cipher}",device="{device}",direction="inbound",outcome="{outcome}",transport="quic",version="{version}"}} {n}"#
            );
            ensure!(
                metrics.body.lines().any(|l| l == line),
                "missing {line}:\n{}",
                metrics.body
            );
        }
        ensure!(
            !metrics.body.contains("transport=\"tcp\""),
            "no TCP handshake was made:\n{}",
            metrics.body
        );
        Ok(())
    })
}

#[test]
fn watch_shows_a_quic_handshake_as_a_quic_line() -> Result<()> {
    in_scratch_dir("quic-watch", |dir| {
        let pki = Pki::generate(dir, SERVER_NAME)?;
        let link = VethLink::new(99);
        let binary = tlsmon_binary()?;
        let mut watch = link.server.command(&binary.to_string_lossy());
        watch.args(["watch", "--interface", &link.server_if]);
        let mut watch = Background::spawn("watch", watch, dir)?;
        poll(
            "watch to attach",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                watch.check_running()?;
                Ok((tcx_programs_of_ours(&link.server, &link.server_if) == (1, 1)).then_some(()))
            },
        )?;
        exchange(&link, dir, &pki, &SCENARIOS[0])?;
        let line = poll(
            "watch to print the QUIC handshake",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                watch.check_running()?;
                Ok(watch
                    .log()
                    .lines()
                    .find(|l| l.contains("sni="))
                    .map(str::to_owned))
            },
        )?;
        let server = format!("{}:{}", link.server_ip, SCENARIOS[0].port);
        let expected = format!("{} inbound {}:", link.server_if, link.client_ip);
        ensure!(line.contains(&expected), "{line}");
        // A service name may sit between the address and the SNI.
        ensure!(line.contains(&format!("-> {server} quic/v1 ")), "{line}");
        ensure!(
            line.contains(&format!(
                "sni={SERVER_NAME} TLSv1.3 TLS_AES_128_GCM_SHA256 x25519 established"
            )),
            "{line}"
        );
        let status = watch.stop()?;
        ensure!(status.success(), "watch ended {status}");
        Ok(())
    })
}
