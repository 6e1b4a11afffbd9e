use std::net::SocketAddr;

use super::profiles::{ServerKey, ServerProfiles, MAX_NAME_BYTES, MAX_VALUES_PER_LIST};
use super::*;
use crate::event::{DiagnosisCode, FailureReason, HandshakeEvent, ServerCert, Side};
use crate::sinks::metrics::tests::{alert_failure, record};
use crate::source::segment::{ConnectionKey, Device};

fn decided(event: HandshakeEvent, clues: HandshakeClues) -> Decided {
    Decided {
        key: ConnectionKey {
            device: Device::new(&event.device),
            lo: SocketAddr::new(event.server_ip, event.server_port),
            hi: SocketAddr::new(event.client_ip, event.client_port),
        },
        client_seq: Some(1),
        cgroup_id: None,
        event,
        clues,
    }
}

/// Established on eth1 with the server 192.0.2.1:443 (example.com): TLS 1.2,
/// one suite, x25519.
fn success() -> HandshakeEvent {
    HandshakeEvent {
        device: "eth1".into(),
        version: Some("TLSv1.2".into()),
        cipher: Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()),
        group: Some("x25519".into()),
        ..record()
    }
}

/// Runs records through a live diagnoser; returns the diagnoses of the failures.
fn live(records: Vec<(HandshakeEvent, HandshakeClues)>) -> Vec<Diagnosis> {
    let mut d = Diagnoser::live();
    let mut out = Vec::new();
    for (event, clues) in records {
        d.take(decided(event, clues), &mut |x| out.push(x));
    }
    d.finish(&mut |x| out.push(x));
    out.into_iter().filter_map(|x| x.event.diagnosis).collect()
}

fn one(event: HandshakeEvent, clues: HandshakeClues) -> Diagnosis {
    let mut all = live(vec![(event, clues)]);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn replied() -> HandshakeClues {
    HandshakeClues {
        server_replied: true,
        certificate_requested: false,
    }
}

fn has(d: &Diagnosis, text: &str) -> bool {
    d.evidence.iter().any(|e| e.contains(text))
}

#[test]
fn established_and_incomplete_handshakes_get_no_diagnosis() {
    let mut d = Diagnoser::live();
    let mut out = Vec::new();
    d.take(decided(record(), replied()), &mut |x| out.push(x));
    let incomplete = HandshakeEvent {
        outcome: Outcome::Incomplete,
        ..record()
    };
    d.take(decided(incomplete, replied()), &mut |x| out.push(x));
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|x| x.event.diagnosis.is_none()));
}

#[test]
fn no_shared_cipher_names_the_suites_the_server_chose() {
    let failure = HandshakeEvent {
        offered_ciphers: vec!["TLS_RSA_WITH_3DES_EDE_CBC_SHA".into()],
        ..alert_failure()
    };
    let all = live(vec![
        (success(), replied()),
        (failure.clone(), HandshakeClues::default()),
    ]);
    let d = &all[0];
    assert_eq!(d.code, DiagnosisCode::NoSharedCipher);
    assert!(
        d.summary.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
        "{d:?}"
    );
    assert!(has(d, "TLS_RSA_WITH_3DES_EDE_CBC_SHA"), "{d:?}");
    assert!(
        has(d, "in 1 successful handshake seen before this one"),
        "{d:?}"
    );

    // Without an earlier success the same failure is still no_shared_cipher, from
    // the alert alone, and the evidence says that it is an inference.
    let d = one(failure, HandshakeClues::default());
    assert_eq!(d.code, DiagnosisCode::NoSharedCipher);
    assert!(
        has(&d, "no earlier successful handshake with this server"),
        "{d:?}"
    );
    assert!(has(&d, "inference"), "{d:?}");
}

#[test]
fn live_diagnoses_use_only_what_came_before() {
    // The success comes after the failure: live, the failure cannot know it.
    let all = live(vec![
        (alert_failure(), HandshakeClues::default()),
        (success(), replied()),
    ]);
    assert!(
        has(&all[0], "no earlier successful handshake"),
        "{:?}",
        all[0]
    );
}

#[test]
fn capture_files_diagnose_with_the_whole_file() {
    let mut d = Diagnoser::whole_capture();
    let mut out = Vec::new();
    d.take(
        decided(alert_failure(), HandshakeClues::default()),
        &mut |x| out.push(x),
    );
    assert!(out.is_empty(), "failures wait for the end of the file");
    d.take(decided(success(), replied()), &mut |x| out.push(x));
    d.finish(&mut |x| out.push(x));
    assert_eq!(out.len(), 2);
    let diagnosis = out[1].event.diagnosis.clone().unwrap();
    assert_eq!(diagnosis.code, DiagnosisCode::NoSharedCipher);
    assert!(
        has(&diagnosis, "in 1 successful handshake in this capture"),
        "{diagnosis:?}"
    );
}

#[test]
fn waiting_failures_are_bounded_and_the_overflow_is_counted() {
    let mut d = Diagnoser::whole_capture();
    let mut out = Vec::new();
    for _ in 0..MAX_DEFERRED + 3 {
        d.take(
            decided(alert_failure(), HandshakeClues::default()),
            &mut |x| out.push(x),
        );
    }
    assert_eq!(out.len(), 3);
    assert_eq!(d.stats().diagnosed_early, 3);
    assert!(has(
        out[0].event.diagnosis.as_ref().unwrap(),
        "no successful handshake with this server"
    ));
    d.finish(&mut |x| out.push(x));
    assert_eq!(out.len(), MAX_DEFERRED + 3);
}

#[test]
fn no_shared_version_from_the_alert_and_from_the_profile() {
    let tls11 = HandshakeEvent {
        alert: Some("protocol_version".into()),
        offered_versions: vec!["TLSv1.1".into()],
        ..alert_failure()
    };
    let all = live(vec![
        (success(), replied()),
        (tls11.clone(), HandshakeClues::default()),
    ]);
    assert_eq!(all[0].code, DiagnosisCode::NoSharedVersion);
    assert!(all[0].summary.contains("at most TLSv1.1"), "{:?}", all[0]);
    assert!(all[0].summary.contains("TLSv1.2"), "{:?}", all[0]);

    // handshake_failure, shared suite, but the client's versions are too low.
    let old = HandshakeEvent {
        offered_versions: vec!["TLSv1.0".into()],
        offered_ciphers: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
        ..alert_failure()
    };
    let all = live(vec![(success(), replied()), (old, Default::default())]);
    assert_eq!(all[0].code, DiagnosisCode::NoSharedVersion, "{:?}", all[0]);
}

#[test]
fn no_shared_group_when_suites_and_versions_fit() {
    let failure = HandshakeEvent {
        offered_versions: vec!["TLSv1.2".into()],
        offered_ciphers: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
        offered_groups: vec!["secp521r1".into()],
        ..alert_failure()
    };
    let all = live(vec![(success(), replied()), (failure, Default::default())]);
    assert_eq!(all[0].code, DiagnosisCode::NoSharedGroup, "{:?}", all[0]);
    assert!(all[0].summary.contains("x25519"));
}

#[test]
fn a_refusal_the_profile_cannot_explain_is_unknown_and_says_why() {
    let failure = HandshakeEvent {
        offered_versions: vec!["TLSv1.2".into()],
        offered_ciphers: vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()],
        offered_groups: vec!["x25519".into()],
        ..alert_failure()
    };
    let all = live(vec![(success(), replied()), (failure, Default::default())]);
    assert_eq!(all[0].code, DiagnosisCode::Unknown, "{:?}", all[0]);
    assert!(all[0].summary.contains("the cause is elsewhere"));
}

#[test]
fn unknown_sni_from_the_alert_and_from_other_names() {
    let d = one(
        HandshakeEvent {
            alert: Some("unrecognized_name".into()),
            sni: Some("typo.example".into()),
            ..alert_failure()
        },
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::UnknownSni);
    assert!(d.summary.contains("typo.example"));

    // A server that only ever succeeded with example.com refuses other.example.
    let all = live(vec![
        (success(), replied()),
        (
            HandshakeEvent {
                sni: Some("other.example".into()),
                ..alert_failure()
            },
            Default::default(),
        ),
    ]);
    assert_eq!(all[0].code, DiagnosisCode::UnknownSni, "{:?}", all[0]);
    assert!(has(&all[0], "other names: example.com"), "{:?}", all[0]);
    assert!(has(&all[0], "inferred"), "{:?}", all[0]);
}

#[test]
fn inappropriate_fallback() {
    let d = one(
        HandshakeEvent {
            alert: Some("inappropriate_fallback".into()),
            offered_ciphers: vec![
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_FALLBACK_SCSV".into(),
            ],
            offered_versions: vec!["TLSv1.1".into()],
            ..alert_failure()
        },
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::InappropriateFallback);
    assert!(has(&d, "TLS_FALLBACK_SCSV"));
}

#[test]
fn client_rejected_certificate_names_the_leaf_and_its_expiry() {
    let rejected = HandshakeEvent {
        alert: Some("certificate_expired".into()),
        alert_sender: Some(Side::Client),
        version: Some("TLSv1.2".into()),
        server_cert: Some(ServerCert {
            subject: "CN=example.com".into(),
            issuer: "CN=Example CA".into(),
            not_after: "2020-01-01T00:00:00Z".into(),
        }),
        ..alert_failure()
    };
    let d = one(rejected, replied());
    assert_eq!(d.code, DiagnosisCode::ClientRejectedCertificate);
    assert!(has(&d, "subject CN=example.com"), "{d:?}");
    assert!(has(&d, "valid until 2020-01-01T00:00:00Z"), "{d:?}");
    assert!(has(&d, "had expired"), "{d:?}");

    // TLS 1.3: the client's encrypted alert where its Finished was due.
    let d = one(
        HandshakeEvent {
            failure_reason: Some(FailureReason::EncryptedAlert),
            alert: None,
            alert_sender: Some(Side::Client),
            version: Some("TLSv1.3".into()),
            ..alert_failure()
        },
        replied(),
    );
    assert_eq!(d.code, DiagnosisCode::ClientRejectedCertificate);
    assert!(has(&d, "inferred"));
}

#[test]
fn client_certificate_required_plain_and_inferred() {
    let d = one(
        HandshakeEvent {
            alert: Some("certificate_required".into()),
            version: Some("TLSv1.3".into()),
            ..alert_failure()
        },
        replied(),
    );
    assert_eq!(d.code, DiagnosisCode::ClientCertificateRequired);

    // TLS 1.2: the server asked (CertificateRequest) and then said handshake_failure.
    let asked = HandshakeClues {
        server_replied: true,
        certificate_requested: true,
    };
    let tls12 = HandshakeEvent {
        version: Some("TLSv1.2".into()),
        ..alert_failure()
    };
    let d = one(tls12.clone(), asked);
    assert_eq!(d.code, DiagnosisCode::ClientCertificateRequired);
    assert!(has(&d, "CertificateRequest"));

    // TLS 1.3 encrypted alert after the client's Finished: only when this server is
    // known to ask for certificates; otherwise unknown, saying what is missing.
    let tls13 = HandshakeEvent {
        failure_reason: Some(FailureReason::EncryptedAlert),
        alert: None,
        alert_sender: Some(Side::Server),
        version: Some("TLSv1.3".into()),
        ..alert_failure()
    };
    assert_eq!(one(tls13.clone(), replied()).code, DiagnosisCode::Unknown);
    let all = live(vec![(tls12, asked), (tls13, replied())]);
    assert_eq!(all[1].code, DiagnosisCode::ClientCertificateRequired);
    assert!(has(&all[1], "asked for client certificates"));
}

#[test]
fn server_rejecting_the_clients_certificate() {
    let d = one(
        HandshakeEvent {
            alert: Some("unknown_ca".into()),
            version: Some("TLSv1.2".into()),
            ..alert_failure()
        },
        replied(),
    );
    assert_eq!(d.code, DiagnosisCode::ServerRejectedClientCertificate);
}

fn close(reason: FailureReason, by: Side, bytes: u32, segments: u32) -> HandshakeEvent {
    HandshakeEvent {
        failure_reason: Some(reason),
        alert: None,
        alert_sender: None,
        closed_by: Some(by),
        client_hello_bytes: Some(bytes),
        client_hello_segments: Some(segments),
        ..alert_failure()
    }
}

#[test]
fn reset_and_silent_close_after_the_client_hello() {
    let d = one(
        close(FailureReason::Reset, Side::Server, 300, 1),
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::ResetAfterClientHello);
    assert!(!has(&d, "segment"), "{d:?}");
    let d = one(
        close(FailureReason::Closed, Side::Server, 300, 1),
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::SilentCloseAfterClientHello);

    // A two-segment, post-quantum-sized ClientHello: said, with the group.
    let mut large = close(FailureReason::Closed, Side::Server, 1_800, 2);
    large.offered_groups = vec!["X25519MLKEM768".into(), "x25519".into()];
    let d = one(large, Default::default());
    assert_eq!(d.code, DiagnosisCode::SilentCloseAfterClientHello);
    assert!(d.summary.contains("1800 bytes in 2 segments"), "{d:?}");
    assert!(has(&d, "post-quantum"), "{d:?}");

    // The client leaving, or a close after the server's reply: not these codes.
    let d = one(
        close(FailureReason::Closed, Side::Client, 300, 1),
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::Unknown);
    let d = one(close(FailureReason::Reset, Side::Server, 300, 1), replied());
    assert_eq!(d.code, DiagnosisCode::Unknown);
}

#[test]
fn server_timeout_only_when_the_server_never_answered() {
    let silent = HandshakeEvent {
        failure_reason: Some(FailureReason::Timeout),
        alert: None,
        alert_sender: None,
        detail: Some("no reply from the server within 10 s".into()),
        ..alert_failure()
    };
    let d = one(silent.clone(), Default::default());
    assert_eq!(d.code, DiagnosisCode::ServerTimeout);
    assert_eq!(one(silent, replied()).code, DiagnosisCode::Unknown);
}

#[test]
fn not_tls_and_protocol_errors_carry_their_detail() {
    let d = one(
        HandshakeEvent {
            failure_reason: Some(FailureReason::NotTls),
            alert: None,
            alert_sender: None,
            detail: Some("server sent bytes that are not TLS".into()),
            ..alert_failure()
        },
        replied(),
    );
    assert_eq!(d.code, DiagnosisCode::NotTls);
    assert!(d.summary.contains("server sent bytes that are not TLS"));
    let d = one(
        HandshakeEvent {
            failure_reason: Some(FailureReason::ProtocolError),
            alert: None,
            alert_sender: None,
            detail: Some("client: ClientHello does not parse".into()),
            ..alert_failure()
        },
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::ProtocolError);
    assert_eq!(d.evidence, ["client: ClientHello does not parse"]);
    let d = one(
        HandshakeEvent {
            alert: Some("decode_error".into()),
            ..alert_failure()
        },
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::ProtocolError);
}

#[test]
fn other_alerts_are_unknown_with_their_name() {
    let d = one(
        HandshakeEvent {
            alert: Some("no_application_protocol".into()),
            ..alert_failure()
        },
        Default::default(),
    );
    assert_eq!(d.code, DiagnosisCode::Unknown);
    assert!(d.summary.contains("no_application_protocol"));
}

#[test]
fn profiles_are_bounded_and_count_evictions() {
    let mut profiles = ServerProfiles::with_capacity(2);
    for port in [1, 2, 3] {
        let e = HandshakeEvent {
            server_port: port,
            ..success()
        };
        profiles.learn(&e, true, false);
    }
    assert_eq!(profiles.len(), 2);
    assert_eq!(profiles.evicted(), 1);
    let first = HandshakeEvent {
        server_port: 1,
        ..success()
    };
    assert!(
        profiles.view(&first).exact.is_none(),
        "the oldest went first"
    );

    // Lists keep at most MAX_VALUES_PER_LIST values and count the rest.
    let mut profiles = ServerProfiles::default();
    for i in 0..MAX_VALUES_PER_LIST + 5 {
        let e = HandshakeEvent {
            cipher: Some(format!("suite{i}")),
            ..success()
        };
        profiles.learn(&e, true, false);
    }
    let view = profiles.view(&success());
    let p = view.exact.unwrap();
    assert_eq!(p.ciphers.values().len(), MAX_VALUES_PER_LIST);
    assert_eq!(p.ciphers.overflowed, 5);
    assert_eq!(p.successes, (MAX_VALUES_PER_LIST + 5) as u64);
}

#[test]
fn every_code_has_its_label() {
    let labels: Vec<&str> = DiagnosisCode::ALL.iter().map(|c| c.as_str()).collect();
    let mut unique = labels.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), labels.len());
    for code in DiagnosisCode::ALL {
        let json = serde_json::to_string(&code).unwrap();
        assert_eq!(json, format!("\"{}\"", code.as_str()));
    }
}

#[test]
fn a_client_below_the_servers_versions_is_no_shared_version_even_without_shared_suites() {
    // OpenSSL answers a TLS 1.1-only client with handshake_failure, and such a client
    // offers no TLS 1.2 suite: the version is the cause, and said so.
    let tls11 = HandshakeEvent {
        offered_versions: vec!["TLSv1.1".into()],
        offered_ciphers: vec!["TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA".into()],
        ..alert_failure()
    };
    let all = live(vec![(success(), replied()), (tls11, Default::default())]);
    assert_eq!(all[0].code, DiagnosisCode::NoSharedVersion, "{:?}", all[0]);
    assert!(all[0].summary.contains("at most TLSv1.1"), "{:?}", all[0]);
    assert!(all[0].summary.contains("(TLSv1.2)"), "{:?}", all[0]);
}

#[test]
fn waiting_failures_are_bounded_in_bytes_too() {
    // ClientHellos offering thousands of suites: the byte bound cuts first.
    let huge = HandshakeEvent {
        offered_ciphers: (0..4_000).map(|i| format!("0x{i:04x}")).collect(),
        ..alert_failure()
    };
    let per_record = held_bytes(&huge);
    assert!(per_record > 100_000, "{per_record}");
    let mut d = Diagnoser::whole_capture();
    let mut out = Vec::new();
    let records = MAX_DEFERRED_BYTES / per_record + 5;
    for _ in 0..records {
        d.take(decided(huge.clone(), HandshakeClues::default()), &mut |x| {
            out.push(x)
        });
    }
    // As many as fit in the budget wait; the five beyond it went out early.
    assert_eq!(out.len(), 5, "held: {}", records - out.len());
    assert_eq!(d.stats().diagnosed_early, 5);
    d.finish(&mut |x| out.push(x));
    assert_eq!(out.len(), records);
}

#[test]
fn a_long_name_is_cut_in_the_profile_key() {
    let long = "a".repeat(10_000);
    let key = ServerKey::of(&HandshakeEvent {
        sni: Some(long.clone()),
        ..success()
    });
    assert_eq!(key.sni.as_deref().map(str::len), Some(MAX_NAME_BYTES));
    // A multi-byte character across the cut is left out whole.
    let key = ServerKey::of(&HandshakeEvent {
        sni: Some(format!("{}é", "a".repeat(MAX_NAME_BYTES - 1))),
        ..success()
    });
    assert_eq!(key.sni.as_deref().map(str::len), Some(MAX_NAME_BYTES - 1));
}
