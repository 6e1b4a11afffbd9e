use std::{net::IpAddr, time::Duration};

use super::*;
use crate::event::{Direction, FailureReason, HandshakeEvent, Outcome, Side};
use crate::pipeline::tls::names;
use crate::source::live::KernelCounters;

/// An established inbound TLS 1.3 handshake on `eth0`.
pub(crate) fn record() -> HandshakeEvent {
    HandshakeEvent {
        ts: Duration::new(1_700_000_000, 0),
        device: "eth0".into(),
        direction: Direction::Inbound,
        client_ip: IpAddr::from([192, 0, 2, 10]),
        peer_ip: None,
        peer_port: None,
        preamble: None,
        tunnel_target: None,
        client_port: 50_000,
        server_ip: IpAddr::from([192, 0, 2, 1]),
        server_port: 443,
        cgroup: None,
        service: None,
        outcome: Outcome::Established,
        failure_reason: None,
        alert: None,
        alert_sender: None,
        closed_by: None,
        detail: None,
        version: Some("TLSv1.3".into()),
        cipher: Some("TLS_AES_128_GCM_SHA256".into()),
        group: Some("X25519MLKEM768".into()),
        sni: Some("example.com".into()),
        alpn: Some("h2".into()),
        offered_versions: vec!["TLSv1.3".into(), "TLSv1.2".into()],
        offered_ciphers: vec![
            "TLS_AES_128_GCM_SHA256".into(),
            "TLS_AES_256_GCM_SHA384".into(),
        ],
        offered_groups: vec!["X25519MLKEM768".into(), "x25519".into()],
        offered_alpn: vec!["h2".into(), "http/1.1".into()],
        client_hello_bytes: Some(1_700),
        client_hello_segments: Some(2),
        hello_retry: false,
        resumed: false,
        ja3: Some("0123456789abcdef0123456789abcdef".into()),
        ja3s: None,
        ja4: Some("t13d0203h2_aaaaaaaaaaaa_bbbbbbbbbbbb".into()),
        duration_ms: Some(3.0),
        server_cert: None,
        forwarded: None,
        diagnosis: None,
        transport: crate::event::Transport::Tcp,
        quic_version: None,
        quic_retry: false,
    }
}

/// A failure on `eth1` before any ServerHello: the server sent a fatal alert.
pub(crate) fn alert_failure() -> HandshakeEvent {
    HandshakeEvent {
        device: "eth1".into(),
        outcome: Outcome::Failed,
        failure_reason: Some(FailureReason::Alert),
        alert: Some("handshake_failure".into()),
        alert_sender: Some(Side::Server),
        version: None,
        cipher: None,
        group: None,
        offered_versions: vec!["TLSv1.2".into()],
        offered_ciphers: vec!["TLS_RSA_WITH_RC4_128_SHA".into()],
        offered_groups: vec![],
        client_hello_segments: Some(1),
        client_hello_bytes: Some(200),
        duration_ms: Some(0.7),
        ..record()
    }
}

/// The sample lines (no comments) of metric `name`, in exposition order.
fn samples(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(str::to_owned)
        .collect()
}

fn text_of(metrics: &Metrics) -> String {
    metrics.encode_text().unwrap()
}

#[test]
fn established_handshake_counts_exactly() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    m.observe(&record());
    m.observe(&record());
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_handshakes_total"),
        [
            r#"tlsmon_handshakes_total{cipher="TLS_AES_128_GCM_SHA256",device="eth0",direction="inbound",outcome="established",transport="tcp",version="TLSv1.3"} 2"#
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_handshake_failures_total"),
        Vec::<String>::new()
    );
    assert_eq!(samples(&text, "tlsmon_alerts_total"), Vec::<String>::new());
    assert_eq!(
        samples(&text, "tlsmon_client_hello_offered_versions_total"),
        [
            r#"tlsmon_client_hello_offered_versions_total{device="eth0",version="TLSv1.2"} 2"#,
            r#"tlsmon_client_hello_offered_versions_total{device="eth0",version="TLSv1.3"} 2"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_client_hello_offered_groups_total"),
        [
            r#"tlsmon_client_hello_offered_groups_total{device="eth0",group="X25519MLKEM768"} 2"#,
            r#"tlsmon_client_hello_offered_groups_total{device="eth0",group="x25519"} 2"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_handshake_groups_total"),
        [
            r#"tlsmon_handshake_groups_total{device="eth0",group="X25519MLKEM768",outcome="established"} 2"#
        ]
    );
    // 3 ms lands in the 5 ms bucket, not in 2.5 ms.
    let duration = samples(&text, "tlsmon_handshake_duration_seconds_bucket");
    assert!(duration.contains(
        &r#"tlsmon_handshake_duration_seconds_bucket{device="eth0",outcome="established",le="0.0025"} 0"#.to_owned()
    ));
    assert!(duration.contains(
        &r#"tlsmon_handshake_duration_seconds_bucket{device="eth0",outcome="established",le="0.005"} 2"#.to_owned()
    ));
    assert_eq!(
        samples(&text, "tlsmon_handshake_duration_seconds_sum"),
        [r#"tlsmon_handshake_duration_seconds_sum{device="eth0",outcome="established"} 0.006"#]
    );
    assert_eq!(
        samples(&text, "tlsmon_client_hello_size_bytes_bucket")
            .iter()
            .filter(|l| l.contains("le=\"1500\"") || l.contains("le=\"2048\""))
            .collect::<Vec<_>>(),
        [
            r#"tlsmon_client_hello_size_bytes_bucket{device="eth0",le="1500"} 0"#,
            r#"tlsmon_client_hello_size_bytes_bucket{device="eth0",le="2048"} 2"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_client_hello_segments_count"),
        [r#"tlsmon_client_hello_segments_count{device="eth0"} 2"#]
    );
    // Open-ended breakdowns are off by default, but the local service's.
    let breakdowns: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE tlsmon_handshakes_by_"))
        .collect();
    assert_eq!(breakdowns, ["service_total counter"]);
}

#[test]
fn alert_failure_counts_reason_alert_and_sender() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    m.observe(&alert_failure());
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_handshakes_total"),
        [
            r#"tlsmon_handshakes_total{cipher="",device="eth1",direction="inbound",outcome="failed",transport="tcp",version=""} 1"#
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_handshake_failures_total"),
        [
            r#"tlsmon_handshake_failures_total{alert="handshake_failure",alert_sender="server",closed_by="",device="eth1",direction="inbound",reason="alert",stage="before_server_hello",transport="tcp"} 1"#
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_alerts_total"),
        [
            r#"tlsmon_alerts_total{alert="handshake_failure",device="eth1",direction="inbound",sender="server"} 1"#
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_handshake_groups_total"),
        Vec::<String>::new()
    );
}

#[test]
fn reset_failure_records_who_reset_and_stage() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    m.observe(&HandshakeEvent {
        outcome: Outcome::Failed,
        failure_reason: Some(FailureReason::Reset),
        closed_by: Some(Side::Server),
        version: None,
        cipher: None,
        group: None,
        ..record()
    });
    m.observe(&HandshakeEvent {
        outcome: Outcome::Failed,
        failure_reason: Some(FailureReason::Alert),
        alert: Some("bad_certificate".into()),
        alert_sender: Some(Side::Client),
        direction: Direction::Outbound,
        ..record()
    });
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_handshake_failures_total"),
        [
            r#"tlsmon_handshake_failures_total{alert="",alert_sender="",closed_by="server",device="eth0",direction="inbound",reason="reset",stage="before_server_hello",transport="tcp"} 1"#,
            r#"tlsmon_handshake_failures_total{alert="bad_certificate",alert_sender="client",closed_by="",device="eth0",direction="outbound",reason="alert",stage="after_server_hello",transport="tcp"} 1"#,
        ]
    );
}

/// Names of `count` code points no registry names, from `start` on, as the
/// handshake parser would report them: hex.
fn unknown_names(name: fn(u16) -> String, start: u16, count: usize) -> Vec<String> {
    (start..=u16::MAX)
        .map(name)
        .filter(|n| n.starts_with("0x"))
        .take(count)
        .collect()
}

#[test]
fn unknown_offers_fold_into_one_value_and_grease_is_not_an_offer() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    let with_grease = |mut names: Vec<String>, registered: &str| {
        names.push(names::GREASE.into());
        names.push(registered.into());
        // A duplicate in the same ClientHello counts once.
        names.push(registered.into());
        names
    };
    let hostile = HandshakeEvent {
        offered_ciphers: with_grease(
            unknown_names(names::cipher_name, 0x2000, 400),
            "TLS_AES_128_GCM_SHA256",
        ),
        offered_versions: with_grease(unknown_names(names::version_name, 0x7f00, 40), "TLSv1.3"),
        offered_groups: with_grease(unknown_names(names::group_name, 0x3000, 100), "x25519"),
        outcome: Outcome::Incomplete,
        version: None,
        cipher: None,
        group: None,
        ..record()
    };
    assert_eq!(hostile.offered_ciphers.len(), 403);
    m.observe(&hostile);
    m.observe(&hostile);
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_client_hello_offered_ciphers_total"),
        [
            r#"tlsmon_client_hello_offered_ciphers_total{cipher="TLS_AES_128_GCM_SHA256",device="eth0"} 2"#,
            r#"tlsmon_client_hello_offered_ciphers_total{cipher="unknown",device="eth0"} 2"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_client_hello_offered_versions_total"),
        [
            r#"tlsmon_client_hello_offered_versions_total{device="eth0",version="TLSv1.3"} 2"#,
            r#"tlsmon_client_hello_offered_versions_total{device="eth0",version="unknown"} 2"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_client_hello_offered_groups_total"),
        [
            r#"tlsmon_client_hello_offered_groups_total{device="eth0",group="unknown"} 2"#,
            r#"tlsmon_client_hello_offered_groups_total{device="eth0",group="x25519"} 2"#,
        ]
    );
    // Registry labels have no cap, so nothing folded.
    assert_eq!(
        samples(&text, "tlsmon_label_values_folded_total"),
        [
            r#"tlsmon_label_values_folded_total{label="device"} 0"#,
            r#"tlsmon_label_values_folded_total{label="service"} 0"#,
        ]
    );
}

#[test]
fn every_registered_cipher_gets_its_own_series() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    let registered: Vec<String> = (0..=u16::MAX)
        .map(names::cipher_name)
        .filter(|n| names::is_cipher_name(n))
        .collect();
    assert_eq!(registered.len(), tls_parser::CIPHERS.len());
    let mut offered = unknown_names(names::cipher_name, 0, 1000);
    offered.extend(registered.iter().cloned());
    m.observe(&HandshakeEvent {
        offered_ciphers: offered,
        ..record()
    });
    let text = text_of(&m);
    let series = samples(&text, "tlsmon_client_hello_offered_ciphers_total");
    assert_eq!(series.len(), registered.len() + 1);
    for name in registered.iter().map(String::as_str).chain(["unknown"]) {
        let line = format!(
            r#"tlsmon_client_hello_offered_ciphers_total{{cipher="{name}",device="eth0"}} 1"#
        );
        assert!(series.contains(&line), "{line}");
    }
}

#[test]
fn hostile_offers_cannot_change_how_a_genuine_handshake_is_labelled() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    // 1,000 unanswered ClientHellos, each offering 64 ciphers, 8 versions and 16
    // groups nobody registered, all different: 64,000 distinct unknown suites.
    for i in 0..1000u16 {
        m.observe(&HandshakeEvent {
            offered_ciphers: unknown_names(names::cipher_name, i * 64, 64),
            offered_versions: unknown_names(names::version_name, i * 8, 8),
            offered_groups: unknown_names(names::group_name, i * 16, 16),
            outcome: Outcome::Incomplete,
            version: None,
            cipher: None,
            group: None,
            ..record()
        });
    }
    // A server that "chose" code points nobody registered.
    m.observe(&HandshakeEvent {
        version: Some("0x7f1d".into()),
        cipher: Some("0xabcd".into()),
        group: Some(names::GREASE.into()),
        offered_ciphers: vec![],
        offered_versions: vec![],
        offered_groups: vec![],
        ..record()
    });
    m.observe(&record());
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_handshakes_total"),
        [
            r#"tlsmon_handshakes_total{cipher="",device="eth0",direction="inbound",outcome="incomplete",transport="tcp",version=""} 1000"#,
            r#"tlsmon_handshakes_total{cipher="TLS_AES_128_GCM_SHA256",device="eth0",direction="inbound",outcome="established",transport="tcp",version="TLSv1.3"} 1"#,
            r#"tlsmon_handshakes_total{cipher="unknown",device="eth0",direction="inbound",outcome="established",transport="tcp",version="unknown"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_handshake_groups_total"),
        [
            r#"tlsmon_handshake_groups_total{device="eth0",group="X25519MLKEM768",outcome="established"} 1"#,
            r#"tlsmon_handshake_groups_total{device="eth0",group="unknown",outcome="established"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_client_hello_offered_ciphers_total"),
        [
            r#"tlsmon_client_hello_offered_ciphers_total{cipher="TLS_AES_128_GCM_SHA256",device="eth0"} 1"#,
            r#"tlsmon_client_hello_offered_ciphers_total{cipher="TLS_AES_256_GCM_SHA384",device="eth0"} 1"#,
            r#"tlsmon_client_hello_offered_ciphers_total{cipher="unknown",device="eth0"} 1000"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_client_hello_offered_versions_total"),
        [
            r#"tlsmon_client_hello_offered_versions_total{device="eth0",version="TLSv1.2"} 1"#,
            r#"tlsmon_client_hello_offered_versions_total{device="eth0",version="TLSv1.3"} 1"#,
            r#"tlsmon_client_hello_offered_versions_total{device="eth0",version="unknown"} 1000"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_label_values_folded_total"),
        [
            r#"tlsmon_label_values_folded_total{label="device"} 0"#,
            r#"tlsmon_label_values_folded_total{label="service"} 0"#,
        ]
    );
}

#[test]
fn unknown_alerts_are_unknown_and_registered_ones_kept() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    for alert in ["0x63", "0xfe", "handshake_failure"] {
        m.observe(&HandshakeEvent {
            alert: Some(alert.into()),
            ..alert_failure()
        });
    }
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_alerts_total"),
        [
            r#"tlsmon_alerts_total{alert="handshake_failure",device="eth1",direction="inbound",sender="server"} 1"#,
            r#"tlsmon_alerts_total{alert="unknown",device="eth1",direction="inbound",sender="server"} 2"#,
        ]
    );
}

#[test]
fn control_characters_in_label_values_are_escaped() {
    let options = LabelOptions {
        sni: true,
        ..LabelOptions::default()
    };
    let m = Metrics::new(&options).unwrap();
    m.observe(&HandshakeEvent {
        sni: Some("evil\x1b[2J\0\u{9b}\\.example".into()),
        device: "veth\x7f".into(),
        ..record()
    });
    let text = text_of(&m);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n'));
    // Ours first (ESC as \x1b, a backslash doubled), then the exposition format's
    // (every backslash doubled again).
    assert_eq!(
        samples(&text, "tlsmon_handshakes_by_sni_total"),
        [
            r#"tlsmon_handshakes_by_sni_total{device="veth\\x7f",outcome="established",sni="evil\\x1b[2J\\x00\\x9b\\\\.example"} 1"#
        ]
    );
}

#[test]
fn optional_breakdowns_are_capped_at_top_k() {
    let options = LabelOptions {
        sni: true,
        ja3: false,
        ja4: true,
        client_ip: true,
        service: false,
        top_k: 1,
    };
    let m = Metrics::new(&options).unwrap();
    m.observe(&record());
    m.observe(&HandshakeEvent {
        sni: Some("other-host.example".into()),
        client_ip: IpAddr::from([198, 51, 100, 7]),
        ..alert_failure()
    });
    m.observe(&HandshakeEvent {
        sni: None,
        ..record()
    });
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_handshakes_by_sni_total"),
        [
            r#"tlsmon_handshakes_by_sni_total{device="eth0",outcome="established",sni=""} 1"#,
            r#"tlsmon_handshakes_by_sni_total{device="eth0",outcome="established",sni="example.com"} 1"#,
            r#"tlsmon_handshakes_by_sni_total{device="eth1",outcome="failed",sni="other"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_handshakes_by_client_ip_total"),
        [
            r#"tlsmon_handshakes_by_client_ip_total{client_ip="192.0.2.10",device="eth0",outcome="established"} 2"#,
            r#"tlsmon_handshakes_by_client_ip_total{client_ip="other",device="eth1",outcome="failed"} 1"#,
        ]
    );
    // All three records carry the same JA4: one admitted value, two devices.
    assert_eq!(
        samples(&text, "tlsmon_handshakes_by_ja4_total"),
        [
            r#"tlsmon_handshakes_by_ja4_total{device="eth0",ja4="t13d0203h2_aaaaaaaaaaaa_bbbbbbbbbbbb",outcome="established"} 2"#,
            r#"tlsmon_handshakes_by_ja4_total{device="eth1",ja4="t13d0203h2_aaaaaaaaaaaa_bbbbbbbbbbbb",outcome="failed"} 1"#,
        ]
    );
    assert!(!text.contains("tlsmon_handshakes_by_ja3_total"));
    // Every capped label in use has a fold count, 0 or not; ja3 is off.
    assert_eq!(
        samples(&text, "tlsmon_label_values_folded_total"),
        [
            r#"tlsmon_label_values_folded_total{label="client_ip"} 1"#,
            r#"tlsmon_label_values_folded_total{label="device"} 0"#,
            r#"tlsmon_label_values_folded_total{label="ja4"} 0"#,
            r#"tlsmon_label_values_folded_total{label="sni"} 1"#,
        ]
    );
}

#[test]
fn kernel_counters_follow_absolute_values_and_restart() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    let mut snapshot = KernelCounters {
        packets_seen: 1000,
        flows_started: 10,
        events_sent: 40,
        events_dropped: 0,
        bytes_cut: 7,
        client_hellos_unverified: 3,
        ..KernelCounters::default()
    };
    m.health().set_kernel_counters(&snapshot);
    m.health().set_kernel_counters(&snapshot);
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_capture_packets_seen_total"),
        ["tlsmon_capture_packets_seen_total 1000"]
    );
    assert_eq!(
        samples(&text, "tlsmon_capture_bytes_cut_total"),
        ["tlsmon_capture_bytes_cut_total 7"]
    );
    assert_eq!(
        samples(&text, "tlsmon_capture_client_hellos_unverified_total"),
        ["tlsmon_capture_client_hellos_unverified_total 3"]
    );
    assert!(text.contains("# TYPE tlsmon_capture_events_total counter\n"));
    snapshot.events_sent = 45;
    m.health().set_kernel_counters(&snapshot);
    assert_eq!(
        samples(&text_of(&m), "tlsmon_capture_events_total"),
        ["tlsmon_capture_events_total 45"]
    );
    // The kernel program was reloaded: counters restart from the new value.
    snapshot.events_sent = 3;
    m.health().set_kernel_counters(&snapshot);
    assert_eq!(
        samples(&text_of(&m), "tlsmon_capture_events_total"),
        ["tlsmon_capture_events_total 3"]
    );
}

#[test]
fn daemon_side_health_metrics() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    m.health().set_flows_tracked(12);
    m.health().add_reassembly_evictions(2);
    m.health().add_reassembly_evictions(1);
    m.health().add_parse_errors("handshake", 1);
    m.health().add_parse_errors("handshake", 1);
    m.health().add_parse_errors("record", 1);
    m.health().add_events_file_error();
    m.set_attached("eth0", true);
    m.set_attached("eth1", true);
    m.set_attached("eth1", false);
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_flows_tracked"),
        ["tlsmon_flows_tracked 12"]
    );
    assert_eq!(
        samples(&text, "tlsmon_reassembly_evictions_total"),
        ["tlsmon_reassembly_evictions_total 3"]
    );
    assert_eq!(
        samples(&text, "tlsmon_parse_errors_total"),
        [
            r#"tlsmon_parse_errors_total{stage="handshake"} 2"#,
            r#"tlsmon_parse_errors_total{stage="record"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_events_file_write_errors_total"),
        ["tlsmon_events_file_write_errors_total 1"]
    );
    assert_eq!(
        samples(&text, "tlsmon_interface_attached"),
        [
            r#"tlsmon_interface_attached{device="eth0"} 1"#,
            r#"tlsmon_interface_attached{device="eth1"} 0"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_build_info"),
        [format!(
            r#"tlsmon_build_info{{version="{}"}} 1"#,
            env!("CARGO_PKG_VERSION")
        )]
    );
}

#[test]
fn every_family_follows_the_naming_rules_and_has_help() {
    let options = LabelOptions {
        sni: true,
        ja3: true,
        ja4: true,
        client_ip: true,
        service: true,
        top_k: 10,
    };
    let m = Metrics::new(&options).unwrap();
    m.observe(&record());
    m.observe(&alert_failure());
    m.set_attached("eth0", true);
    m.health().add_parse_errors("record", 1);
    let text = text_of(&m);
    let mut families = 0;
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let mut parts = line["# TYPE ".len()..].split(' ');
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        families += 1;
        assert!(name.starts_with("tlsmon_"), "{name}");
        assert_eq!(
            kind == "counter",
            name.ends_with("_total"),
            "{name} is a {kind}"
        );
        let help = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
            .unwrap_or_else(|| panic!("{name} has no HELP"));
        assert!(help.len() > 30, "{name}: HELP too short: {help}");
    }
    // 11 handshake families (diagnoses included), the folded counter, 5
    // breakdowns (by service included), build_info, 27 capture-health families
    // (server profile evictions, cgroup lookups, preambles and QUIC included) and the
    // forwarding linker's unlinked counter (a vector without series, such as the
    // preamble handshakes here, is not rendered).
    assert_eq!(families, 46);
}

#[test]
fn a_forwarded_handshake_counts_once_and_one_that_never_left_is_counted() {
    use crate::event::Forwarded;
    use crate::pipeline::forwarding::ForwardingStats;
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    let forwarded = |changes: &[&str]| Forwarded {
        in_device: "eth0".into(),
        out_device: Some("eth1".into()),
        changes: changes.iter().map(|c| c.to_string()).collect(),
    };
    // Both events of a pair carry it; only the one that left counts.
    m.observe(&HandshakeEvent {
        device: "eth0".into(),
        direction: Direction::Inbound,
        forwarded: Some(forwarded(&[])),
        ..record()
    });
    for changes in [
        &[][..],
        &["cipher suite TLS_AES_256_GCM_SHA384 removed"][..],
    ] {
        m.observe(&HandshakeEvent {
            device: "eth1".into(),
            direction: Direction::Outbound,
            forwarded: Some(forwarded(changes)),
            ..record()
        });
    }
    m.observe(&HandshakeEvent {
        device: "eth0".into(),
        direction: Direction::Inbound,
        forwarded: Some(Forwarded {
            in_device: "eth0".into(),
            out_device: None,
            changes: Vec::new(),
        }),
        ..record()
    });
    m.set_forwarding_stats(&ForwardingStats {
        random_reused: 2,
        ..ForwardingStats::default()
    });
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_forwarded_handshakes_total"),
        [
            r#"tlsmon_forwarded_handshakes_total{changed="false",in_device="eth0",out_device="eth1"} 1"#,
            r#"tlsmon_forwarded_handshakes_total{changed="true",in_device="eth0",out_device="eth1"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_handshakes_not_forwarded_total"),
        [r#"tlsmon_handshakes_not_forwarded_total{device="eth0"} 1"#]
    );
    assert!(samples(&text, "tlsmon_forwarding_unlinked_total")
        .contains(&r#"tlsmon_forwarding_unlinked_total{cause="random_reused"} 2"#.to_string()));
}

#[test]
fn diagnoses_are_counted_by_code_for_failures_only() {
    use crate::event::{Diagnosis, DiagnosisCode};
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    let diagnosed = |code| HandshakeEvent {
        diagnosis: Some(Diagnosis {
            code,
            summary: String::new(),
            evidence: Vec::new(),
        }),
        ..alert_failure()
    };
    m.observe(&record());
    m.observe(&diagnosed(DiagnosisCode::NoSharedCipher));
    m.observe(&diagnosed(DiagnosisCode::NoSharedCipher));
    m.observe(&diagnosed(DiagnosisCode::ResetAfterClientHello));
    // A failure read back from an old events file carries none: `unknown`.
    m.observe(&alert_failure());
    assert_eq!(
        samples(&text_of(&m), "tlsmon_handshake_diagnoses_total"),
        [
            r#"tlsmon_handshake_diagnoses_total{device="eth1",diagnosis="no_shared_cipher",direction="inbound"} 2"#,
            r#"tlsmon_handshake_diagnoses_total{device="eth1",diagnosis="reset_after_client_hello",direction="inbound"} 1"#,
            r#"tlsmon_handshake_diagnoses_total{device="eth1",diagnosis="unknown",direction="inbound"} 1"#,
        ]
    );
}

#[test]
fn server_profile_evictions_follow_the_diagnosis_stage_total() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    assert_eq!(
        samples(&text_of(&m), "tlsmon_server_profiles_evicted_total"),
        ["tlsmon_server_profiles_evicted_total 0"]
    );
    m.health().set_server_profiles_evicted(3);
    m.health().set_server_profiles_evicted(5);
    assert_eq!(
        samples(&text_of(&m), "tlsmon_server_profiles_evicted_total"),
        ["tlsmon_server_profiles_evicted_total 5"]
    );
}

#[test]
fn handshakes_by_service_are_on_by_default_capped_and_empty_without_a_socket() {
    let options = LabelOptions {
        top_k: 2,
        ..LabelOptions::default()
    };
    let m = Metrics::new(&options).unwrap();
    let with_service = |service: Option<&str>| HandshakeEvent {
        cgroup: service.map(|s| format!("/system.slice/{s}")),
        service: service.map(str::to_string),
        ..record()
    };
    m.observe(&with_service(Some("web-a.service")));
    m.observe(&HandshakeEvent {
        service: Some("web-b.service".into()),
        ..alert_failure()
    });
    m.observe(&with_service(Some("web-a.service")));
    // Forwarded: no socket, the empty value, which takes no slot of the cap.
    m.observe(&with_service(None));
    // A third service is past top_k.
    m.observe(&with_service(Some("late.service")));
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_handshakes_by_service_total"),
        [
            r#"tlsmon_handshakes_by_service_total{device="eth0",outcome="established",service="",version="TLSv1.3"} 1"#,
            r#"tlsmon_handshakes_by_service_total{device="eth0",outcome="established",service="other",version="TLSv1.3"} 1"#,
            r#"tlsmon_handshakes_by_service_total{device="eth0",outcome="established",service="web-a.service",version="TLSv1.3"} 2"#,
            r#"tlsmon_handshakes_by_service_total{device="eth1",outcome="failed",service="web-b.service",version=""} 1"#,
        ]
    );
    assert!(samples(&text, "tlsmon_label_values_folded_total")
        .contains(&r#"tlsmon_label_values_folded_total{label="service"} 1"#.to_string()));
    let off = Metrics::new(&LabelOptions {
        service: false,
        ..LabelOptions::default()
    })
    .unwrap();
    off.observe(&with_service(Some("web-a.service")));
    assert!(!text_of(&off).contains("tlsmon_handshakes_by_service_total"));
}

#[test]
fn cgroup_lookups_are_exported_by_result_from_zero() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    assert_eq!(
        samples(&text_of(&m), "tlsmon_cgroup_lookups_total"),
        [
            r#"tlsmon_cgroup_lookups_total{result="cached"} 0"#,
            r#"tlsmon_cgroup_lookups_total{result="found"} 0"#,
            r#"tlsmon_cgroup_lookups_total{result="unresolved"} 0"#,
            r#"tlsmon_cgroup_lookups_total{result="vanished"} 0"#,
        ]
    );
    m.health()
        .set_attribution(&crate::attribution::ResolverStats {
            cache_hits: 7,
            walks: 4,
            found: 3,
            vanished: 1,
            unresolved: 0,
            evicted: 2,
        });
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_cgroup_lookups_total"),
        [
            r#"tlsmon_cgroup_lookups_total{result="cached"} 7"#,
            r#"tlsmon_cgroup_lookups_total{result="found"} 3"#,
            r#"tlsmon_cgroup_lookups_total{result="unresolved"} 0"#,
            r#"tlsmon_cgroup_lookups_total{result="vanished"} 1"#,
        ]
    );
    assert_eq!(
        samples(&text, "tlsmon_cgroup_cache_evictions_total"),
        ["tlsmon_cgroup_cache_evictions_total 2"]
    );
}

#[test]
fn handshakes_behind_a_preamble_are_counted_by_kind_and_like_any_other() {
    use crate::event::PreambleKind;
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    m.observe(&record());
    let behind_proxy = HandshakeEvent {
        preamble: Some(PreambleKind::ProxyV2),
        ..record()
    };
    m.observe(&behind_proxy);
    m.observe(&behind_proxy);
    m.observe(&HandshakeEvent {
        preamble: Some(PreambleKind::HttpConnect),
        ..alert_failure()
    });
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_preamble_handshakes_total"),
        [
            r#"tlsmon_preamble_handshakes_total{device="eth0",outcome="established",preamble="proxy_v2"} 2"#,
            r#"tlsmon_preamble_handshakes_total{device="eth1",outcome="failed",preamble="http_connect"} 1"#,
        ]
    );
    // tlsmon_handshakes_total gains no label and counts them like any other.
    let all: f64 = samples(&text, "tlsmon_handshakes_total")
        .iter()
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(all, 4.0);
    assert!(!text.contains("tlsmon_handshakes_total{preamble"));
}

#[test]
fn quic_handshakes_carry_their_transport_label() {
    let m = Metrics::new(&LabelOptions::default()).unwrap();
    m.observe(&record());
    m.observe(&HandshakeEvent {
        transport: crate::event::Transport::Quic,
        quic_version: Some("v1".into()),
        ..record()
    });
    let text = text_of(&m);
    assert_eq!(
        samples(&text, "tlsmon_handshakes_total"),
        vec![
            r#"tlsmon_handshakes_total{cipher="TLS_AES_128_GCM_SHA256",device="eth0",direction="inbound",outcome="established",transport="quic",version="TLSv1.3"} 1"#,
            r#"tlsmon_handshakes_total{cipher="TLS_AES_128_GCM_SHA256",device="eth0",direction="inbound",outcome="established",transport="tcp",version="TLSv1.3"} 1"#,
        ]
    );
}
