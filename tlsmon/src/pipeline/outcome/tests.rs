use super::*;
use crate::event::{FailureReason, Side};
use crate::pipeline::tls::{ClientHello, ServerHello, TlsMessage};
use tls_parser::TlsVersion;

const TLS12: u16 = 0x0303;

fn ms(n: u64) -> Timestamp {
    Duration::from_millis(n)
}

fn tracker() -> HandshakeTracker {
    HandshakeTracker::new(&ClientHello::default(), ms(0))
}

fn server_hello(version: u16) -> TlsMessage {
    TlsMessage::ServerHello(ServerHello {
        selected_version: version,
        cipher_suite: 0x1301,
        key_share_group: (version == TlsVersion::Tls13.0).then_some(0x001d),
        ..ServerHello::default()
    })
}

fn hrr() -> TlsMessage {
    TlsMessage::ServerHello(ServerHello {
        selected_version: TlsVersion::Tls13.0,
        is_hello_retry_request: true,
        key_share_group: Some(0x0017),
        ..ServerHello::default()
    })
}

fn app(len: usize) -> TlsMessage {
    TlsMessage::ApplicationData { len }
}

/// Feeds (side, message) pairs at 1 ms steps; returns the first verdict.
fn feed(t: &mut HandshakeTracker, steps: Vec<(Side, TlsMessage)>) -> Option<Verdict> {
    for (i, (side, message)) in steps.into_iter().enumerate() {
        if let Some(v) = t.on_message(side, message, ms(i as u64 + 1)) {
            return Some(v);
        }
    }
    None
}

fn failure(v: Verdict) -> Failure {
    match v {
        Verdict::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn full_tls12_server_flight() -> Vec<(Side, TlsMessage)> {
    vec![
        (Side::Server, server_hello(TLS12)),
        (Side::Server, TlsMessage::Certificate(None)),
        (
            Side::Server,
            TlsMessage::ServerKeyExchange {
                group: Some(0x0017),
            },
        ),
        (Side::Server, TlsMessage::OtherHandshake { msg_type: 14 }),
    ]
}

#[test]
fn tls12_full_handshake_is_established_after_both_finished() {
    let mut t = tracker();
    let mut steps = full_tls12_server_flight();
    steps.extend([
        (Side::Client, TlsMessage::OtherHandshake { msg_type: 16 }),
        (Side::Client, TlsMessage::ChangeCipherSpec),
        (Side::Client, TlsMessage::EncryptedHandshake { len: 40 }),
        (Side::Server, TlsMessage::ChangeCipherSpec),
    ]);
    assert_eq!(feed(&mut t, steps), None);
    let v = t.on_message(
        Side::Server,
        TlsMessage::EncryptedHandshake { len: 40 },
        ms(20),
    );
    assert_eq!(v, Some(Verdict::Established { at: ms(20) }));
    assert!(!t.resumed());
    assert_eq!(t.negotiated_group(), Some(0x0017));
}

#[test]
fn tls12_abbreviated_handshake_is_resumed() {
    let mut t = tracker();
    let v = feed(
        &mut t,
        vec![
            (Side::Server, server_hello(TLS12)),
            (Side::Server, TlsMessage::ChangeCipherSpec),
            (Side::Server, TlsMessage::EncryptedHandshake { len: 40 }),
            (Side::Client, TlsMessage::ChangeCipherSpec),
            (Side::Client, TlsMessage::EncryptedHandshake { len: 40 }),
        ],
    );
    assert!(matches!(v, Some(Verdict::Established { .. })));
    assert!(t.resumed());
}

#[test]
fn fatal_plaintext_alert_fails_with_its_sender() {
    let mut t = tracker();
    let v = feed(
        &mut t,
        vec![(
            Side::Server,
            TlsMessage::Alert {
                level: 2,
                description: 40,
            },
        )],
    );
    let f = failure(v.unwrap());
    assert_eq!(f.reason, FailureReason::Alert);
    assert_eq!(f.alert, Some(40));
    assert_eq!(f.alert_sender, Some(Side::Server));
}

#[test]
fn warning_unrecognized_name_lets_the_handshake_continue() {
    let mut t = tracker();
    let mut steps = vec![(
        Side::Server,
        TlsMessage::Alert {
            level: 1,
            description: 112,
        },
    )];
    steps.extend(full_tls12_server_flight());
    assert_eq!(feed(&mut t, steps), None);
    // ...but if the client then closes, the warning is the best explanation.
    let f = failure(t.on_close(Side::Client, Close::Fin, ms(30)));
    assert_eq!(
        (f.reason, f.alert, f.alert_sender),
        (FailureReason::Alert, Some(112), Some(Side::Server))
    );
    assert_eq!(f.closed_by, Some(Side::Client));
}

#[test]
fn reset_before_any_reply_names_the_server() {
    let mut t = tracker();
    let f = failure(t.on_close(Side::Server, Close::Rst, ms(5)));
    assert_eq!(f.reason, FailureReason::Reset);
    assert_eq!(f.closed_by, Some(Side::Server));
    assert!(f.detail.unwrap().contains("before any reply"));
}

#[test]
fn tls13_established_once_server_confirms_after_client_finished() {
    let mut t = tracker();
    let steps = vec![
        (Side::Server, server_hello(TlsVersion::Tls13.0)),
        (Side::Server, TlsMessage::ChangeCipherSpec),
        (Side::Server, app(2000)),
        (Side::Client, TlsMessage::ChangeCipherSpec),
        (Side::Client, app(53)),
    ];
    assert_eq!(feed(&mut t, steps), None);
    let v = t.on_message(Side::Server, app(250), ms(10));
    assert_eq!(v, Some(Verdict::Established { at: ms(10) }));
}

#[test]
fn tls13_client_short_record_then_close_is_client_encrypted_alert() {
    let mut t = tracker();
    let steps = vec![
        (Side::Server, server_hello(TlsVersion::Tls13.0)),
        (Side::Server, app(2000)),
        (Side::Client, TlsMessage::ChangeCipherSpec),
        (Side::Client, app(19)),
    ];
    assert_eq!(feed(&mut t, steps), None);
    let f = failure(t.on_close(Side::Client, Close::Fin, ms(9)));
    assert_eq!(f.reason, FailureReason::EncryptedAlert);
    assert_eq!(f.alert_sender, Some(Side::Client));
    assert_eq!(f.alert, None);
}

#[test]
fn tls13_server_rejecting_after_client_finished_is_server_encrypted_alert() {
    let mut t = tracker();
    let steps = vec![
        (Side::Server, server_hello(TlsVersion::Tls13.0)),
        (Side::Server, app(2000)),
        (Side::Client, app(60)),
        (Side::Server, app(19)),
    ];
    assert_eq!(feed(&mut t, steps), None);
    // No confirmation while the short reply stands.
    assert_eq!(t.on_idle(ms(5000), Duration::from_secs(10)), None);
    let f = failure(t.on_close(Side::Server, Close::Fin, ms(5001)));
    assert_eq!(f.reason, FailureReason::EncryptedAlert);
    assert_eq!(f.alert_sender, Some(Side::Server));
}

#[test]
fn tls13_unconfirmed_finish_is_established_after_the_window_or_at_end() {
    let mut t = tracker();
    let steps = vec![
        (Side::Server, server_hello(TlsVersion::Tls13.0)),
        (Side::Server, app(2000)),
        (Side::Client, app(60)),
    ];
    assert_eq!(feed(&mut t, steps), None);
    assert_eq!(t.on_idle(ms(500), Duration::from_secs(10)), None);
    assert_eq!(
        t.on_idle(ms(1003), Duration::from_secs(10)),
        Some(Verdict::Established { at: ms(3) })
    );
    assert_eq!(
        t.on_end("capture ended"),
        Verdict::Established { at: ms(3) }
    );
    // A client that finished and then left on its own was satisfied.
    assert_eq!(
        t.on_close(Side::Client, Close::Fin, ms(4)),
        Verdict::Established { at: ms(3) }
    );
}

#[test]
fn hello_retry_is_flagged_and_final_group_wins() {
    let mut t = tracker();
    let steps = vec![
        (Side::Server, hrr()),
        (
            Side::Client,
            TlsMessage::ClientHello(ClientHello::default()),
        ),
        (Side::Server, server_hello(TlsVersion::Tls13.0)),
    ];
    assert_eq!(feed(&mut t, steps), None);
    assert!(t.hello_retry());
    assert_eq!(t.negotiated_group(), Some(0x001d));
}

#[test]
fn silence_times_out_and_says_the_server_never_answered() {
    let mut t = tracker();
    let timeout = Duration::from_secs(10);
    assert_eq!(t.on_idle(ms(9_999), timeout), None);
    let f = failure(t.on_idle(ms(10_000), timeout).unwrap());
    assert_eq!(f.reason, FailureReason::Timeout);
    assert!(f.detail.unwrap().contains("no reply"));
    assert_eq!(
        t.on_end("capture ended"),
        Verdict::Incomplete {
            detail: "capture ended".into()
        }
    );
}

#[test]
fn malformed_and_not_tls_from_the_server_are_failures() {
    let mut t = tracker();
    let f = failure(feed(&mut t, vec![(Side::Server, TlsMessage::NotTls)]).unwrap());
    assert_eq!(f.reason, FailureReason::NotTls);
    let mut t = tracker();
    let f = failure(
        feed(
            &mut t,
            vec![(
                Side::Server,
                TlsMessage::Malformed {
                    reason: "bad length".into(),
                },
            )],
        )
        .unwrap(),
    );
    assert_eq!(f.reason, FailureReason::ProtocolError);
    assert_eq!(f.detail.as_deref(), Some("server: bad length"));
}

#[test]
fn tls13_client_refusal_is_found_whoever_closes_first() {
    let mut t = tracker();
    let steps = vec![
        (Side::Server, server_hello(TlsVersion::Tls13.0)),
        (Side::Server, app(2000)),
        (Side::Client, app(19)),
    ];
    assert_eq!(feed(&mut t, steps), None);
    let f = failure(t.on_close(Side::Server, Close::Fin, ms(9)));
    assert_eq!(
        (f.reason, f.alert_sender, f.closed_by),
        (
            FailureReason::EncryptedAlert,
            Some(Side::Client),
            Some(Side::Server)
        )
    );
}

/// A ServerHello of a pre-standard TLS 1.3 version (drafts 22 and later, and the
/// experiment versions, have the final layout: supported_versions carries them).
fn draft_server_hello(version: u16) -> TlsMessage {
    TlsMessage::ServerHello(ServerHello {
        legacy_version: TLS12,
        selected_version: version,
        cipher_suite: 0x1301,
        key_share_group: Some(0x001d),
        ..ServerHello::default()
    })
}

#[test]
fn tls13_drafts_and_experiments_are_decided_as_tls13() {
    for version in [0x7f16, 0x7f17, 0x7f1c, 0x7e01, 0x7e02] {
        // Established the TLS 1.3 way: the client's Finished inside type 23, then
        // the server's ticket.
        let mut t = tracker();
        let steps = vec![
            (Side::Server, draft_server_hello(version)),
            (Side::Server, TlsMessage::ChangeCipherSpec),
            (Side::Server, app(2000)),
            (Side::Client, TlsMessage::ChangeCipherSpec),
            (Side::Client, app(53)),
        ];
        assert_eq!(feed(&mut t, steps), None, "{version:#06x}");
        let v = t.on_message(Side::Server, app(250), ms(10));
        assert_eq!(
            v,
            Some(Verdict::Established { at: ms(10) }),
            "{version:#06x}"
        );
        assert_eq!(t.negotiated_version(), Some(version), "as on the wire");
        assert_eq!(t.negotiated_group(), Some(0x001d), "{version:#06x}");

        // The client's short encrypted record where its Finished was due, then a
        // close: the TLS 1.3 encrypted alert, not a plain close.
        let mut t = tracker();
        let steps = vec![
            (Side::Server, draft_server_hello(version)),
            (Side::Server, app(2000)),
            (Side::Client, app(19)),
        ];
        assert_eq!(feed(&mut t, steps), None);
        let f = failure(t.on_close(Side::Server, Close::Fin, ms(9)));
        assert_eq!(f.reason, FailureReason::EncryptedAlert, "{version:#06x}");
        assert_eq!(f.alert_sender, Some(Side::Client));
    }
    // Draft 21 and before reach the tracker only once their ServerHello parses; a
    // version outside the TLS 1.3 family stays TLS 1.2-like: a lone short record
    // and a close is just a close.
    let mut t = tracker();
    let steps = vec![
        (Side::Server, draft_server_hello(0x7f1d)),
        (Side::Server, app(2000)),
        (Side::Client, app(19)),
    ];
    assert_eq!(feed(&mut t, steps), None);
    let f = failure(t.on_close(Side::Server, Close::Fin, ms(9)));
    assert_eq!(f.reason, FailureReason::Closed);
}

#[test]
fn a_tls12_certificate_request_is_remembered() {
    let mut t = tracker();
    let mut steps = full_tls12_server_flight();
    steps.push((Side::Server, TlsMessage::OtherHandshake { msg_type: 13 }));
    assert_eq!(feed(&mut t, steps), None);
    assert!(t.certificate_requested());
    assert!(t.server_replied());
    let mut plain = tracker();
    assert_eq!(feed(&mut plain, full_tls12_server_flight()), None);
    assert!(!plain.certificate_requested());
    assert!(!tracker().server_replied());
}
