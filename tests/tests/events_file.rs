//! The daemon's events file: one JSON line per handshake, and after log rotation
//! moved it away, SIGHUP makes the daemon write to a fresh file at the same path.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    binary::tlsmon_binary,
    netns::{ChildGuard, TestCert, VethLink},
    poll,
};

fn handshake(link: &VethLink) {
    assert_eq!(
        link.openssl_handshake(&[]).code(),
        Some(0),
        "s_client failed"
    );
}

fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON event"))
        .collect()
}

fn wait_for_lines(path: &Path, n: usize) -> Vec<serde_json::Value> {
    poll::until(
        &format!("{n} line(s) in {}", path.display()),
        Duration::from_secs(30),
        || {
            let lines = lines_of(path);
            (lines.len() >= n).then_some(lines)
        },
    )
}

#[test]
fn events_file_gets_a_line_per_handshake_and_reopens_on_sighup() {
    let link = VethLink::new(94);
    let cert = TestCert::new();
    let dir = std::env::temp_dir().join(format!("tlsmon-events-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let events = dir.join("events.jsonl");
    let rotated = dir.join("events.jsonl.1");
    let _ = std::fs::remove_file(&events);
    let _ = std::fs::remove_file(&rotated);

    let daemon = ChildGuard(
        link.server
            .command(tlsmon_binary().unwrap().to_str().unwrap())
            .args([
                "run",
                "--interface",
                &link.server_if,
                "--listen",
                "127.0.0.1:9811",
            ])
            .arg("--events-file")
            .arg(&events)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    poll::until("the daemon to attach", Duration::from_secs(30), || {
        (tcx_programs_of_ours(&link.server, &link.server_if) == (1, 1)).then_some(())
    });
    let _server = link.openssl_server(&cert, 2, &[]);

    handshake(&link);
    let first = wait_for_lines(&events, 1);
    assert_eq!(first[0]["outcome"], "established");
    assert_eq!(first[0]["device"], link.server_if.as_str());

    std::fs::rename(&events, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &daemon.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The reopen has happened once the new file exists (created empty on reopen).
    poll::until(
        "the events file to be reopened",
        Duration::from_secs(10),
        || events.exists().then_some(()),
    );
    handshake(&link);
    let second = wait_for_lines(&events, 1);
    assert_eq!(
        second.len(),
        1,
        "the new file holds only the later handshake"
    );
    assert_eq!(
        lines_of(&rotated).len(),
        1,
        "the rotated file was not written to again"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
