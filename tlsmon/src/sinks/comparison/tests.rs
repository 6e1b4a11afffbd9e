use super::*;
use crate::event::{Diagnosis, DiagnosisCode};
use crate::sinks::metrics::tests::{alert_failure, record};

#[test]
fn text_report_escapes_devices_and_values_from_the_wire() {
    let mut comparison = Comparison::new();
    comparison.add(&HandshakeEvent {
        device: "eth\x1b[2J0".into(),
        ja4: Some("t13\0\x1b]0;x\x07".into()),
        ..record()
    });
    comparison.add(&alert_failure());
    let text = comparison.render_text(false);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    // The conclusions come first (escaped too), then a blank line and the table.
    assert!(text.starts_with(r"eth1: 1 of 1 handshakes failed (eth\x1b[2J0: 0 of 1)."));
    let header = text.split("\n\n").nth(1).unwrap().lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [r"eth\x1b[2J0", "eth1"]
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(r"* t13\x00\x1b]0;x\x07 ")
                && l.ends_with("1 (100.0%)         0 (  0.0%)")),
        "{text}"
    );
}

fn diagnosed(device: &str, code: DiagnosisCode, summary: &str) -> HandshakeEvent {
    HandshakeEvent {
        device: device.into(),
        diagnosis: Some(Diagnosis {
            code,
            summary: summary.into(),
            evidence: vec![],
        }),
        ..alert_failure()
    }
}

fn ok(device: &str) -> HandshakeEvent {
    HandshakeEvent {
        device: device.into(),
        ..record()
    }
}

#[test]
fn identical_devices_conclude_there_is_no_difference() {
    let mut comparison = Comparison::new();
    for device in ["eth0", "eth1"] {
        for _ in 0..3 {
            comparison.add(&ok(device));
        }
        comparison.add(&diagnosed(device, DiagnosisCode::NoSharedCipher, "x."));
    }
    let c = comparison.conclusions();
    assert!(c.same);
    assert!(c.differences.is_empty());
    assert_eq!(
        c.sentences,
        ["No difference that matters between eth0 and eth1: eth0: 1 of 4 failed; eth1: 1 of 4 failed, with the same diagnoses in the same shares."]
    );
    let text = comparison.render_text(false);
    assert!(text.starts_with("No difference that matters"), "{text}");
}

#[test]
fn planted_differences_are_named_with_their_cause() {
    let mut comparison = Comparison::new();
    for _ in 0..10 {
        comparison.add(&ok("eth0"));
        comparison.add(&ok("eth1"));
    }
    for _ in 0..3 {
        comparison.add(&diagnosed(
            "eth1",
            DiagnosisCode::NoSharedCipher,
            "The client offered none of the cipher suites this server has chosen (A).",
        ));
    }
    comparison.add(&diagnosed(
        "eth1",
        DiagnosisCode::NoSharedVersion,
        "The client offers at most TLSv1.1, and this server accepts only TLSv1.2.",
    ));
    let c = comparison.conclusions();
    assert!(!c.same);
    assert_eq!(
        c.sentences,
        [
            "eth1: 4 of 14 handshakes failed (eth0: 0 of 10).",
            "eth1: 3 × no_shared_cipher (eth0: 0 of 10): The client offered none of the cipher suites this server has chosen (A).",
            "eth1: 1 × no_shared_version (eth0: 0 of 10): The client offers at most TLSv1.1, and this server accepts only TLSv1.2.",
        ]
    );
    let json: serde_json::Value = serde_json::from_str(&comparison.render_json()).unwrap();
    assert_eq!(json["conclusions"]["same"], false);
    assert_eq!(
        json["devices"]["eth1"]["diagnoses"]["no_shared_cipher"]["count"],
        3
    );
    assert_eq!(json["aspects"][0]["aspect"], "outcome");
}

#[test]
fn the_most_common_sentence_stands_for_a_code_and_sentences_are_bounded() {
    let mut comparison = Comparison::new();
    comparison.add(&ok("eth0"));
    for i in 0..20 {
        comparison.add(&diagnosed("eth1", DiagnosisCode::Unknown, &format!("s{i}")));
    }
    for _ in 0..2 {
        comparison.add(&diagnosed("eth1", DiagnosisCode::Unknown, "common"));
    }
    let c = comparison.conclusions();
    let unknown = c.differences.iter().find(|d| d.what == "unknown").unwrap();
    assert_eq!(unknown.count, 22);
    // The first eight distinct sentences are counted: "common" came too late.
    assert_eq!(unknown.cause, "s0");
}

#[test]
fn grouped_by_service_the_columns_are_services_and_none() {
    let mut comparison = Comparison::grouped_by(GroupBy::Service);
    let service = |name: &str| Some(name.to_string());
    comparison.add(&HandshakeEvent {
        service: service("web-a.service"),
        ..record()
    });
    comparison.add(&HandshakeEvent {
        service: service("web-b.service"),
        ..alert_failure()
    });
    comparison.add(&HandshakeEvent {
        service: service("web-b.service"),
        ..alert_failure()
    });
    comparison.add(&record());
    assert_eq!(
        comparison.devices(),
        [NO_SERVICE, "web-a.service", "web-b.service"]
    );
    let text = comparison.render_text(false);
    // The conclusions come first, naming the service that fails.
    assert!(
        text.starts_with("web-b.service: 2 of 2 handshakes failed"),
        "{text}"
    );
    let header = ["(none)", "web-a.service", "web-b.service"];
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == header),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.starts_with("* failed ")
            && l.ends_with("0 (  0.0%)         0 (  0.0%)         2 (100.0%)")),
        "{text}"
    );
    assert!(text.contains("differs between services"), "{text}");
}
