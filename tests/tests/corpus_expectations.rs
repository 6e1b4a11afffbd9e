//! tlsmon's records of every corpus capture, compared field by field with the facts
//! known from how the capture was recorded (tests/corpus/expected/*.json).

use std::collections::BTreeSet;

use serde_json::Value;
use tlsmon_tests::corpus;

#[test]
fn every_capture_has_expectations_and_every_expectation_a_capture() {
    let expected: BTreeSet<_> = corpus::expectations()
        .unwrap()
        .into_iter()
        .map(|e| e.capture)
        .collect();
    let captures: BTreeSet<_> = corpus::capture_files().unwrap().into_iter().collect();
    assert_eq!(expected, captures);
    // The scenarios of issue 3 and a few more; a lost file must not go unnoticed.
    assert!(captures.len() >= 30, "only {} captures", captures.len());
}

#[test]
fn tlsmon_reports_what_each_capture_is_known_to_hold() {
    let expectations = corpus::expectations().unwrap();
    let mut compared = 0usize;
    let mut mismatches = Vec::new();
    for exp in &expectations {
        let records = corpus::tlsmon_records(&exp.capture).unwrap();
        if records.len() != exp.handshakes.len() {
            mismatches.push(format!(
                "{}: {} records, expected {}",
                exp.scenario,
                records.len(),
                exp.handshakes.len()
            ));
        }
        for want in &exp.handshakes {
            let (ip, port) = (&want["client_ip"], &want["client_port"]);
            let Some(got) = corpus::record_of(&records, ip, port) else {
                mismatches.push(format!(
                    "{}: no record for client {ip}:{port}",
                    exp.scenario
                ));
                continue;
            };
            for (field, want_value) in want {
                compared += 1;
                match got.get(field) {
                    Some(got_value) if got_value == want_value => {}
                    Some(got_value) => mismatches.push(format!(
                        "{} {ip}:{port} {field}: tlsmon {got_value}, expected {want_value}",
                        exp.scenario
                    )),
                    None => mismatches.push(format!(
                        "{} {ip}:{port} {field}: not in tlsmon's record",
                        exp.scenario
                    )),
                }
            }
        }
    }
    assert!(compared > 500, "only {compared} facts compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} facts differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    println!("{compared} facts of {} captures agree", expectations.len());
}

#[test]
fn expectations_name_no_unknown_field() {
    // A typo in expected/*.json would otherwise compare against a field tlsmon never
    // writes and fail for the wrong reason; catch it by itself.
    let known: BTreeSet<&str> = [
        "client_ip",
        "client_port",
        "server_ip",
        "server_port",
        "outcome",
        "failure_reason",
        "alert",
        "alert_sender",
        "closed_by",
        "version",
        "cipher",
        "group",
        "sni",
        "alpn",
        "offered_versions",
        "offered_ciphers",
        "offered_groups",
        "offered_alpn",
        "client_hello_bytes",
        "client_hello_segments",
        "hello_retry",
        "resumed",
        "ja3",
        "ja3s",
        "server_cert",
    ]
    .into_iter()
    .collect();
    for exp in corpus::expectations().unwrap() {
        for hs in &exp.handshakes {
            for field in hs.keys() {
                assert!(
                    known.contains(field.as_str()),
                    "{}: field {field}",
                    exp.scenario
                );
            }
            assert!(matches!(hs["client_port"], Value::Number(_)));
        }
    }
}
