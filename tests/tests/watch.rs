//! `tlsmon watch --json`, as a user runs it: one JSON line per handshake as it
//! completes, with the right interface, direction, peers and outcome; Ctrl-C
//! (SIGINT) ends it cleanly with nothing left attached.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;
use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    binary::tlsmon_binary,
    netns::{ChildGuard, TestCert, VethLink},
    poll,
};

/// One client that must not hang; the outcome is what `watch` reports.
fn client(link: &VethLink, version_flag: &str) {
    let status = link.openssl_handshake(&["-servername", "watch.test", version_flag]);
    assert_ne!(status.code(), Some(124), "s_client {version_flag} hung");
}

#[test]
fn watch_prints_one_json_line_per_handshake_and_stops_on_ctrl_c() {
    let link = VethLink::new(93);
    let cert = TestCert::new();
    let mut watch = ChildGuard(
        link.server
            .command(tlsmon_binary().unwrap().to_str().unwrap())
            .args(["watch", "--json", "--interface", &link.server_if])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    poll::until("watch to attach", Duration::from_secs(30), || {
        (tcx_programs_of_ours(&link.server, &link.server_if) == (1, 1)).then_some(())
    });
    let stdout = watch.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    // A TLS 1.2-only server: a TLS 1.2 client succeeds, a TLS 1.3-only one gets
    // protocol_version.
    let _server = link.openssl_server(&cert, 2, &["-no_tls1_3"]);
    client(&link, "-tls1_2");
    client(&link, "-tls1_3");

    let mut events: Vec<Value> = Vec::new();
    while events.len() < 2 {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!("watch printed {} of 2 handshakes: {events:?}", events.len())
            });
        events.push(serde_json::from_str(&line).expect("each line is a JSON event"));
    }
    for event in &events {
        assert_eq!(event["device"], link.server_if.as_str());
        assert_eq!(event["direction"], "inbound");
        assert_eq!(event["client_ip"], link.client_ip.as_str());
        assert_eq!(event["server_ip"], link.server_ip.as_str());
        assert_eq!(event["server_port"], 4433);
        assert_eq!(event["sni"], "watch.test");
    }
    let established = &events[0];
    assert_eq!(established["outcome"], "established", "{established}");
    assert_eq!(established["version"], "TLSv1.2");
    let refused = &events[1];
    assert_eq!(refused["outcome"], "failed", "{refused}");
    assert_eq!(refused["failure_reason"], "alert");
    assert_eq!(refused["alert"], "protocol_version");
    assert_eq!(refused["alert_sender"], "server");
    assert_eq!(refused["offered_versions"], serde_json::json!(["TLSv1.3"]));

    let interrupted = Command::new("kill")
        .args(["-INT", &watch.0.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    assert!(
        watch.wait_exit(Duration::from_secs(10)),
        "watch ignored Ctrl-C"
    );
    assert_eq!(watch.0.try_wait().unwrap().map(|s| s.success()), Some(true));
    assert_eq!(tcx_programs_of_ours(&link.server, &link.server_if), (0, 0));
}
