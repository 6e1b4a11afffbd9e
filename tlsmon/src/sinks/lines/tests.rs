use std::net::IpAddr;

use super::*;
use crate::{
    event::{Direction, Side},
    sinks::metrics::tests::{alert_failure, record},
};

#[test]
fn json_line_uses_the_public_field_names() {
    let line = json_line(&alert_failure());
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["ts"], "2023-11-14T22:13:20.000000Z");
    assert_eq!(v["device"], "eth1");
    assert_eq!(v["direction"], "inbound");
    assert_eq!(v["client_ip"], "192.0.2.10");
    assert_eq!(v["client_port"], 50000);
    assert_eq!(v["server_port"], 443);
    assert_eq!(v["outcome"], "failed");
    assert_eq!(v["failure_reason"], "alert");
    assert_eq!(v["alert"], "handshake_failure");
    assert_eq!(v["alert_sender"], "server");
    assert_eq!(v["version"], serde_json::Value::Null);
    assert_eq!(
        v["offered_ciphers"],
        serde_json::json!(["TLS_RSA_WITH_RC4_128_SHA"])
    );
    assert_eq!(v["client_hello_segments"], 1);
    assert_eq!(v["hello_retry"], false);
    assert_eq!(v["diagnosis"], serde_json::Value::Null);
    assert_eq!(v["transport"], "tcp");
    assert_eq!(v["quic_version"], serde_json::Value::Null);
    assert_eq!(v["quic_retry"], false);
    // Every field is always present, and these are the documented names.
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "alert",
            "alert_sender",
            "alpn",
            "cgroup",
            "cipher",
            "client_hello_bytes",
            "client_hello_segments",
            "client_ip",
            "client_port",
            "closed_by",
            "detail",
            "device",
            "diagnosis",
            "direction",
            "duration_ms",
            "failure_reason",
            "forwarded",
            "group",
            "hello_retry",
            "ja3",
            "ja3s",
            "ja4",
            "offered_alpn",
            "offered_ciphers",
            "offered_groups",
            "offered_versions",
            "outcome",
            "peer_ip",
            "peer_port",
            "preamble",
            "quic_retry",
            "quic_version",
            "resumed",
            "server_cert",
            "server_ip",
            "server_port",
            "service",
            "sni",
            "transport",
            "ts",
            "tunnel_target",
            "version",
        ]
    );
}

#[test]
fn text_line_for_established_and_failures() {
    assert_eq!(
        text_line(&record(), false),
        "22:13:20.000000 eth0 inbound 192.0.2.10:50000 -> 192.0.2.1:443 sni=example.com TLSv1.3 TLS_AES_128_GCM_SHA256 X25519MLKEM768 established 3.0ms"
    );
    assert_eq!(
        text_line(&alert_failure(), false),
        "22:13:20.000000 eth1 inbound 192.0.2.10:50000 -> 192.0.2.1:443 sni=example.com - - - FAILED alert handshake_failure from server 0.7ms"
    );
    assert_eq!(
        text_line(&alert_failure(), true),
        "22:13:20.000000 eth1 inbound 192.0.2.10:50000 -> 192.0.2.1:443 sni=example.com - - - \x1b[1m\x1b[31mFAILED alert handshake_failure from server\x1b[0m 0.7ms"
    );
    let reset = HandshakeEvent {
        outcome: Outcome::Failed,
        failure_reason: Some(FailureReason::Reset),
        closed_by: Some(Side::Server),
        client_ip: IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]),
        direction: Direction::Outbound,
        sni: None,
        duration_ms: None,
        ..alert_failure()
    };
    assert_eq!(
        text_line(&reset, false),
        "22:13:20.000000 eth1 outbound [2001:db8::1]:50000 -> 192.0.2.1:443 sni=- - - - FAILED reset by server"
    );
    let incomplete = HandshakeEvent {
        outcome: Outcome::Incomplete,
        ..record()
    };
    assert!(text_line(&incomplete, true).contains("\x1b[33mincomplete\x1b[0m"));
}

#[test]
fn text_line_escapes_control_characters_from_the_wire() {
    let hostile = HandshakeEvent {
        sni: Some("evil\x1b]0;pwned\x07\0\u{9b}\\.example".into()),
        device: "eth\x7f0".into(),
        ..record()
    };
    let line = text_line(&hostile, false);
    assert!(!line.chars().any(char::is_control), "{line:?}");
    assert_eq!(
        line,
        r"22:13:20.000000 eth\x7f0 inbound 192.0.2.10:50000 -> 192.0.2.1:443 sni=evil\x1b]0;pwned\x07\x00\x9b\\.example TLSv1.3 TLS_AES_128_GCM_SHA256 X25519MLKEM768 established 3.0ms"
    );
}

#[test]
fn summary_escapes_control_characters_from_the_wire() {
    let mut summary = TextSummary::default();
    summary.add(&HandshakeEvent {
        device: "cap\x1b[2J.pcap".into(),
        version: Some("TLS\0v9".into()),
        ..record()
    });
    let text = summary.render();
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(
        text.starts_with(
            r"device cap\x1b[2J.pcap: 1 handshakes, 1 established, 0 failed, 0 incomplete
  negotiated versions:
    TLS\x00v9  1
"
        ),
        "{text}"
    );
}

#[test]
fn events_file_appends_whole_lines() {
    let dir = std::env::temp_dir().join(format!("tlsmon-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.jsonl");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, "{\"earlier\":1}\n").unwrap();
    let mut events = EventsFile::open(&path).unwrap();
    events.write(&record()).unwrap();
    events.write(&alert_failure()).unwrap();
    let content = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0], "{\"earlier\":1}");
    assert_eq!(lines[1], json_line(&record()));
    assert_eq!(lines[2], json_line(&alert_failure()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn events_file_open_error_names_the_path() {
    let err = EventsFile::open("/nonexistent-dir/tlsmon/events.jsonl").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot open events file /nonexistent-dir/tlsmon/events.jsonl: No such file or directory (os error 2)"
    );
}

#[test]
fn summary_counts_per_device() {
    let records = vec![
        record(),
        record(),
        alert_failure(),
        HandshakeEvent {
            outcome: Outcome::Failed,
            failure_reason: Some(FailureReason::Reset),
            closed_by: Some(Side::Server),
            ..alert_failure()
        },
    ];
    let summary_text = |records: &[HandshakeEvent]| {
        let mut summary = TextSummary::default();
        records.iter().for_each(|r| summary.add(r));
        summary.render()
    };
    assert_eq!(
        summary_text(&records),
        "\
device eth0: 2 handshakes, 2 established, 0 failed, 0 incomplete
  negotiated versions:
    TLSv1.3  2
  negotiated cipher suites:
    TLS_AES_128_GCM_SHA256  2
  negotiated groups:
    X25519MLKEM768  2
  ClientHellos offering version:
    TLSv1.2  2
    TLSv1.3  2
  ClientHellos offering group:
    X25519MLKEM768  2
    x25519          2
device eth1: 2 handshakes, 0 established, 2 failed, 0 incomplete
  failures:
    alert handshake_failure from server  1
    reset by server                      1
  negotiated versions:
    (none)  2
  negotiated cipher suites:
    (none)  2
  negotiated groups:
    (none)  2
  ClientHellos offering version:
    TLSv1.2  2
"
    );
    assert_eq!(summary_text(&[]), "no TLS handshakes found\n");
}

#[test]
fn a_diagnosis_is_an_object_in_json_and_a_sentence_in_the_text_line() {
    use crate::event::{Diagnosis, DiagnosisCode};
    let failed = HandshakeEvent {
        diagnosis: Some(Diagnosis {
            code: DiagnosisCode::NoSharedCipher,
            summary: "The client offered none of the suites of \x1b[2J.".into(),
            evidence: vec!["one".into(), "two".into()],
        }),
        ..alert_failure()
    };
    let v: serde_json::Value = serde_json::from_str(&json_line(&failed)).unwrap();
    assert_eq!(
        v["diagnosis"],
        serde_json::json!({
            "code": "no_shared_cipher",
            "summary": "The client offered none of the suites of \x1b[2J.",
            "evidence": ["one", "two"],
        })
    );
    let line = text_line(&failed, false);
    assert!(
        line.ends_with(" => The client offered none of the suites of \\x1b[2J."),
        "{line}"
    );
    assert!(!text_line(&record(), false).contains("=>"));
}

#[test]
fn the_local_service_shows_in_text_and_json_and_is_escaped() {
    let mut local = record();
    local.cgroup = Some("/system.slice/nginx.service".into());
    local.service = Some("nginx.service".into());
    assert_eq!(
        text_line(&local, false),
        "22:13:20.000000 eth0 inbound 192.0.2.10:50000 -> 192.0.2.1:443 service=nginx.service sni=example.com TLSv1.3 TLS_AES_128_GCM_SHA256 X25519MLKEM768 established 3.0ms"
    );
    let v: serde_json::Value = serde_json::from_str(&json_line(&local)).unwrap();
    assert_eq!(v["cgroup"], "/system.slice/nginx.service");
    assert_eq!(v["service"], "nginx.service");
    // Without a local socket both are null.
    let v: serde_json::Value = serde_json::from_str(&json_line(&record())).unwrap();
    assert_eq!(
        (&v["cgroup"], &v["service"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    // A cgroup directory name may hold anything but '/'.
    local.service = Some("evil\x1b[2J.service".into());
    assert!(text_line(&local, false).contains("service=evil\\x1b[2J.service "));
}

#[test]
fn a_quic_text_line_says_quic_and_its_version() {
    let mut quic = record();
    quic.transport = crate::event::Transport::Quic;
    quic.quic_version = Some("v1".into());
    assert_eq!(
        text_line(&quic, false),
        "22:13:20.000000 eth0 inbound 192.0.2.10:50000 -> 192.0.2.1:443 quic/v1 sni=example.com TLSv1.3 TLS_AES_128_GCM_SHA256 X25519MLKEM768 established 3.0ms"
    );
}
