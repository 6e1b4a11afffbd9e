//! tlsmon and tshark read every corpus capture; version, cipher suite, SNI, plaintext
//! alerts, JA3 and JA3S must agree field by field. Skipped (with the reason printed)
//! only where tshark is not installed.

use serde_json::Value;
use tlsmon_tests::{corpus, tshark};

fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

#[test]
fn tlsmon_agrees_with_tshark_on_every_capture() {
    if !tshark::available() {
        println!("skipped: tshark is not installed (Debian package `tshark`)");
        return;
    }
    let names = tshark::Names::load().unwrap();
    let mut compared = 0usize;
    let mut mismatches = Vec::new();
    let captures = corpus::capture_files().unwrap();
    for capture in &captures {
        let file = capture.file_name().unwrap().to_string_lossy().into_owned();
        let records = corpus::tlsmon_records(capture).unwrap();
        for conn in tshark::connections(capture, &names).unwrap() {
            let ip = Value::from(conn.client_ip.clone());
            let port = Value::from(conn.client_port);
            let Some(record) = corpus::record_of(&records, &ip, &port) else {
                mismatches.push(format!("{file}: no tlsmon record for {ip}:{port}"));
                continue;
            };
            let first_alert = conn.alerts.iter().find(|(_, name)| name != "close_notify");
            let checks = [
                ("sni", conn.sni.as_deref()),
                ("ja3", conn.ja3.as_deref()),
                ("version", conn.version.as_deref()),
                ("cipher", conn.cipher.as_deref()),
                ("ja3s", conn.ja3s.as_deref()),
                ("alert", first_alert.map(|(_, name)| name.as_str())),
                ("alert_sender", first_alert.map(|(side, _)| side.as_str())),
            ];
            for (field, tshark_value) in checks {
                // An encrypted alert has a sender tshark cannot see: compare the sender
                // only where tshark saw a plaintext alert.
                if field == "alert_sender" && tshark_value.is_none() {
                    continue;
                }
                compared += 1;
                let tlsmon_value = text(record.get(field));
                if tlsmon_value != tshark_value {
                    mismatches.push(format!(
                        "{file} {ip}:{port} {field}: tlsmon {tlsmon_value:?}, tshark {tshark_value:?}"
                    ));
                }
            }
        }
    }
    assert!(compared > 200, "only {compared} fields compared");
    assert!(
        mismatches.is_empty(),
        "{} of {compared} fields differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    println!(
        "{compared} fields of {} captures agree with tshark",
        captures.len()
    );
}
