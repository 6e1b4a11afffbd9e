//! Stream parser tests on handshakes recorded from real TLS stacks (OpenSSL 3.0 and
//! GnuTLS 3.7 on loopback): `testdata/record.sh` recorded each direction's bytes and
//! tshark's decoding of the same capture (`testdata/tshark_fields.txt`), which the
//! cross-check below compares field by field.

use std::collections::BTreeMap;

use super::fingerprint::{ja3_string, ja3s_string, ClientHelloFields};
use super::*;

const SCENARIOS: [&str; 11] = [
    "openssl_tls13",
    "openssl_tls12",
    "openssl_tls12_from_tls13_client",
    "openssl_hrr",
    "openssl_cipher_mismatch",
    "openssl_version_mismatch",
    "openssl_tls12_unknown_ca",
    "openssl_fragmented_hello",
    "gnutls_tls13",
    "openssl_tls13_resumed",
    "openssl_tls12_resumed",
];

fn testdata(file: &str) -> Vec<u8> {
    let path = format!(
        "{}/src/pipeline/tls/testdata/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn feed_in_chunks(data: &[u8], chunk: usize) -> Vec<ParsedMessage> {
    let mut parser = TlsStreamParser::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        parser.feed(piece, &mut out);
    }
    assert_eq!(parser.offset(), data.len() as u64);
    assert_eq!(parser.buffered_bytes(), 0, "bytes left over at the end");
    out
}

/// Parses one direction of a scenario, checking that every chunking (down to one byte
/// at a time) gives the same messages.
fn direction(scenario: &str, side: &str) -> Vec<ParsedMessage> {
    let data = testdata(&format!("{scenario}.{side}.bin"));
    let whole = feed_in_chunks(&data, data.len().max(1));
    for chunk in [1, 2, 3, 4, 5, 7, 100, 511, 1460] {
        assert_eq!(
            feed_in_chunks(&data, chunk),
            whole,
            "{scenario}.{side} chunk {chunk}"
        );
    }
    whole
}

/// A compact label per message, for asserting whole sequences.
fn label(m: &ParsedMessage) -> String {
    match &m.message {
        TlsMessage::ClientHello(_) => "ClientHello".into(),
        TlsMessage::ServerHello(h) if h.is_hello_retry_request => "HelloRetryRequest".into(),
        TlsMessage::ServerHello(_) => "ServerHello".into(),
        TlsMessage::Certificate(c) => format!("Certificate({})", c.is_some()),
        TlsMessage::ServerKeyExchange { group } => format!("ServerKeyExchange({group:?})"),
        TlsMessage::OtherHandshake { msg_type } => format!("Handshake({msg_type})"),
        TlsMessage::EncryptedHandshake { len } => format!("EncryptedHandshake({len})"),
        TlsMessage::Alert { level, description } => format!("Alert({level},{description})"),
        TlsMessage::EncryptedAlert { len } => format!("EncryptedAlert({len})"),
        TlsMessage::ChangeCipherSpec => "CCS".into(),
        TlsMessage::ApplicationData { len } => format!("AppData({len})"),
        TlsMessage::NotTls => "NotTls".into(),
        TlsMessage::Malformed { reason } => format!("Malformed({reason})"),
    }
}

fn labels(messages: &[ParsedMessage]) -> Vec<String> {
    messages.iter().map(label).collect()
}

fn client_hellos(messages: &[ParsedMessage]) -> Vec<&ClientHello> {
    messages
        .iter()
        .filter_map(|m| match &m.message {
            TlsMessage::ClientHello(h) => Some(h),
            _ => None,
        })
        .collect()
}

fn server_hellos(messages: &[ParsedMessage]) -> Vec<&ServerHello> {
    messages
        .iter()
        .filter_map(|m| match &m.message {
            TlsMessage::ServerHello(h) => Some(h),
            _ => None,
        })
        .collect()
}

#[test]
fn every_capture_parses_cleanly_and_records_tile_the_stream() {
    for scenario in SCENARIOS {
        for side in ["client", "server"] {
            let messages = direction(scenario, side);
            assert!(!messages.is_empty(), "{scenario}.{side}");
            let mut covered = 0;
            for m in &messages {
                assert!(
                    !matches!(m.message, TlsMessage::NotTls | TlsMessage::Malformed { .. }),
                    "{scenario}.{side}: {m:?}"
                );
                assert_eq!(m.start, covered, "{scenario}.{side}: gap before {m:?}");
                covered = m.end;
            }
            let len = testdata(&format!("{scenario}.{side}.bin")).len() as u64;
            assert_eq!(covered, len, "{scenario}.{side}");
        }
    }
}

/// tshark 4.0's JA3/JA3S, SNI, cipher, selected version and alerts for every capture,
/// against ours.
#[test]
fn hellos_and_alerts_match_tshark_field_by_field() {
    let expected = String::from_utf8(testdata("tshark_fields.txt")).unwrap();
    let mut by_scenario: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for line in expected.lines() {
        let (scenario, rest) = line.split_once('|').unwrap();
        by_scenario
            .entry(scenario)
            .or_default()
            .push(rest.to_string());
    }
    assert_eq!(by_scenario.len(), SCENARIOS.len());
    for scenario in SCENARIOS {
        let client = direction(scenario, "client");
        let server = direction(scenario, "server");
        let mut ours = Vec::new();
        for h in client_hellos(&client) {
            let fields = ClientHelloFields {
                legacy_version: h.legacy_version,
                supported_versions: &h.supported_versions,
                cipher_suites: &h.cipher_suites,
                extensions: &h.extensions,
                supported_groups: &h.supported_groups,
                ec_point_formats: &h.ec_point_formats,
                signature_algorithms: &h.signature_algorithms,
                first_alpn: None,
            };
            let sni = h.sni.clone().unwrap_or_default();
            ours.push(format!(
                "client_hello|{}|{}|{sni}",
                ja3_string(&fields),
                h.ja3
            ));
        }
        for h in server_hellos(&server) {
            let version = if h.extensions.contains(&43) {
                format!("0x{:04x}", h.selected_version)
            } else {
                String::new()
            };
            ours.push(format!(
                "server_hello|{}|{}|0x{:04x}|{version}",
                ja3s_string(h.legacy_version, h.cipher_suite, &h.extensions),
                h.ja3s,
                h.cipher_suite
            ));
        }
        let mut alerts: Vec<String> = client
            .iter()
            .chain(&server)
            .filter_map(|m| match m.message {
                TlsMessage::Alert { level, description } => {
                    Some(format!("alert|{level}|{description}"))
                }
                _ => None,
            })
            .collect();
        alerts.sort();
        ours.extend(alerts);
        assert_eq!(ours, by_scenario[scenario], "{scenario}");
    }
}

/// Our JA4 of every captured ClientHello against `testdata/ja4_reference.py`, a
/// separate Python implementation of FoxIO's specification.
#[test]
fn ja4_matches_the_reference_implementation() {
    let expected = String::from_utf8(testdata("ja4_reference.txt")).unwrap();
    let mut ours = Vec::new();
    for scenario in SCENARIOS {
        for h in client_hellos(&direction(scenario, "client")) {
            ours.push(format!("{scenario}|{}", h.ja4));
        }
    }
    ours.sort();
    let mut reference: Vec<&str> = expected.lines().collect();
    reference.sort();
    assert_eq!(ours, reference);
}

#[test]
fn openssl_tls13_full_handshake() {
    let client = direction("openssl_tls13", "client");
    let server = direction("openssl_tls13", "server");
    assert_eq!(
        labels(&client),
        [
            "ClientHello",
            "CCS",
            "AppData(69)",
            "AppData(23)",
            "AppData(19)"
        ]
    );
    assert_eq!(&labels(&server)[..3], ["ServerHello", "CCS", "AppData(32)"]);
    let ch = client_hellos(&client)[0];
    assert_eq!(ch.sni.as_deref(), Some("tlsmon.test"));
    assert_eq!(ch.alpn, ["h2", "http/1.1"]);
    assert_eq!(ch.supported_versions, [0x0304]);
    assert_eq!(ch.cipher_suites, [0x1302, 0x1303, 0x1301, 0x00ff]);
    assert_eq!(ch.key_share_groups, [29]);
    assert_eq!(ch.supported_groups[..3], [29, 23, 30]);
    assert_eq!(ch.message_len, 258);
    assert_eq!(ch.ja4, "t13d0411h2_16476d049b0b_78f1d400d464");
    let sh = server_hellos(&server)[0];
    assert_eq!(sh.selected_version, 0x0304);
    assert_eq!(sh.cipher_suite, 0x1302);
    assert_eq!(sh.key_share_group, Some(29));
    assert!(!sh.is_hello_retry_request && !sh.psk_selected);
    // TLS 1.3 echoes the client's legacy session id (middlebox compatibility).
    assert_eq!(sh.session_id.len(), 32);
}

#[test]
fn openssl_tls12_certificate_key_exchange_and_encrypted_finished() {
    let client = direction("openssl_tls12", "client");
    let server = direction("openssl_tls12", "server");
    assert_eq!(
        labels(&client),
        [
            "ClientHello",
            "Handshake(16)",
            "CCS",
            "EncryptedHandshake(40)",
            "AppData(30)",
            "EncryptedAlert(26)"
        ]
    );
    assert_eq!(
        labels(&server),
        [
            "ServerHello",
            "Certificate(true)",
            "ServerKeyExchange(Some(23))",
            "Handshake(14)",
            "Handshake(4)",
            "CCS",
            "EncryptedHandshake(40)",
            "AppData(30)",
            "EncryptedAlert(26)"
        ]
    );
    // The Certificate came in two records (512 + 327 bytes, -max_send_frag 512).
    assert_eq!((server[1].start, server[1].end), (70, 919));
    // Values `openssl x509 -nameopt RFC2253 -enddate` prints for the same certificate.
    assert_eq!(
        server[1].message,
        TlsMessage::Certificate(Some(ServerCert {
            subject: "CN=tlsmon.test,O=tlsmon test".into(),
            issuer: "CN=tlsmon.test,O=tlsmon test".into(),
            not_after: "2036-11-23T23:09:23Z".into(),
        }))
    );
    let sh = server_hellos(&server)[0];
    assert_eq!((sh.selected_version, sh.cipher_suite), (0x0303, 0xc02f));
    assert_eq!(sh.key_share_group, None);
}

#[test]
fn tls13_capable_client_on_tls12_has_an_encrypted_finished_after_ccs() {
    let client = direction("openssl_tls12_from_tls13_client", "client");
    assert_eq!(
        labels(&client),
        [
            "ClientHello",
            "Handshake(16)",
            "CCS",
            "EncryptedHandshake(40)",
            "AppData(30)",
            "EncryptedAlert(26)"
        ]
    );
    let ch = client_hellos(&client)[0];
    assert!(ch.supported_versions.contains(&0x0304));
    let server = direction("openssl_tls12_from_tls13_client", "server");
    let sh = server_hellos(&server)[0];
    assert_eq!(sh.selected_version, 0x0303);
}

#[test]
fn openssl_hello_retry_request() {
    let client = direction("openssl_hrr", "client");
    let server = direction("openssl_hrr", "server");
    assert_eq!(
        labels(&client)[..4],
        ["ClientHello", "CCS", "ClientHello", "AppData(69)"]
    );
    assert_eq!(
        labels(&server)[..4],
        ["HelloRetryRequest", "CCS", "ServerHello", "AppData(23)"]
    );
    let hellos = client_hellos(&client);
    assert_eq!(hellos[0].key_share_groups, [23]);
    assert_eq!(hellos[1].key_share_groups, [29]);
    let replies = server_hellos(&server);
    assert!(replies[0].is_hello_retry_request);
    assert_eq!(replies[0].key_share_group, Some(29));
    assert_eq!(replies[0].selected_version, 0x0304);
    assert!(!replies[1].is_hello_retry_request);
    assert_eq!(replies[1].key_share_group, Some(29));
}

#[test]
fn openssl_failures_end_in_plaintext_alerts() {
    let server = direction("openssl_cipher_mismatch", "server");
    assert_eq!(labels(&server), ["Alert(2,40)"]);
    let ch = client_hellos(&direction("openssl_cipher_mismatch", "client"))[0].clone();
    assert_eq!(ch.cipher_suites, [0x002f, 0x00ff]);

    let server = direction("openssl_version_mismatch", "server");
    assert_eq!(labels(&server), ["Alert(2,70)"]);
    let ch = client_hellos(&direction("openssl_version_mismatch", "client"))[0].clone();
    assert!(ch.supported_versions.is_empty());
    assert_eq!(ch.ja4, "t12d280700_d943125447b4_e7e480e5a997");

    let client = direction("openssl_tls12_unknown_ca", "client");
    assert_eq!(labels(&client), ["ClientHello", "Alert(2,48)"]);
    let server = direction("openssl_tls12_unknown_ca", "server");
    assert_eq!(
        labels(&server),
        [
            "ServerHello",
            "Certificate(true)",
            "ServerKeyExchange(Some(29))",
            "Handshake(14)"
        ]
    );
}

#[test]
fn client_hello_fragmented_over_two_records() {
    let client = direction("openssl_fragmented_hello", "client");
    // Records of 512 and 277 bytes carry one 789-byte ClientHello.
    assert_eq!((client[0].start, client[0].end), (0, 799));
    let ch = client_hellos(&client)[0];
    assert_eq!(ch.message_len, 789);
    assert_eq!(ch.alpn.len(), 61);
    assert_eq!(ch.alpn[0], "proto-01");
    assert_eq!(ch.alpn[60], "h2");
}

#[test]
fn gnutls_client_hello() {
    let client = direction("gnutls_tls13", "client");
    let ch = client_hellos(&client)[0];
    assert_eq!(ch.supported_versions, [0x0304, 0x0303, 0x0302, 0x0301]);
    assert_eq!(ch.key_share_groups, [23, 29]);
    assert_eq!(
        ch.extensions,
        [5, 10, 11, 13, 16, 22, 23, 35, 51, 43, 65281, 0, 45, 28]
    );
    assert_eq!(ch.alpn, ["h2"]);
    assert_eq!(ch.ja4, "t13d2914h2_723694b0fccc_2cc26d266019");
    let sh = server_hellos(&direction("gnutls_tls13", "server"))[0].clone();
    assert_eq!(sh.key_share_group, Some(23));
}

#[test]
fn resumption_signals() {
    let ch = client_hellos(&direction("openssl_tls13_resumed", "client"))[0].clone();
    assert!(ch.psk_offered);
    assert_eq!(ch.extensions.last(), Some(&41));
    let sh = server_hellos(&direction("openssl_tls13_resumed", "server"))[0].clone();
    assert!(sh.psk_selected);

    let client = direction("openssl_tls12_resumed", "client");
    let ch = client_hellos(&client)[0];
    assert!(ch.session_ticket_offered);
    assert_eq!(ch.session_id_len, 32);
    let server = direction("openssl_tls12_resumed", "server");
    // Abbreviated handshake: no Certificate, the server's CCS comes first.
    assert_eq!(
        labels(&server),
        [
            "ServerHello",
            "CCS",
            "EncryptedHandshake(40)",
            "AppData(30)",
            "EncryptedAlert(26)"
        ]
    );
    assert_eq!(server_hellos(&server)[0].session_id.len(), 32);
}
