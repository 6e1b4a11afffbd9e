//! The offline commands as a user runs them: exit codes, messages, output formats.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/corpus")
        .join(name)
}

fn tlsmon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tlsmon"))
        .args(args)
        .output()
        .expect("the tlsmon binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tlsmon-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn help_describes_every_command() {
    let out = tlsmon(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["run", "watch", "analyze", "compare"] {
        assert!(help.contains(command), "--help lacks {command}: {help}");
    }
}

#[test]
fn json_output_is_one_parseable_object_per_handshake() {
    let file = corpus("resumption-tls13.pcap");
    let out = tlsmon(&["analyze", "--format", "json", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["outcome"], "established");
    assert_eq!(lines[0]["resumed"], false);
    assert_eq!(lines[1]["resumed"], true);
    assert_eq!(lines[1]["version"], "TLSv1.3");
    // The summary goes to stderr so stdout stays machine-readable.
    assert!(text(&out.stderr).contains("2 handshakes: 2 established, 0 failed, 0 incomplete"));
}

#[test]
fn truncated_capture_reports_file_and_offset_and_keeps_what_it_read() {
    let whole = std::fs::read(corpus("resumption-tls12.pcap")).unwrap();
    // Cut inside the last packet record: the first connection is whole.
    let cut = temp_file("truncated.pcap", &whole[..whole.len() - 10]);
    let out = tlsmon(&["analyze", "--format", "json", cut.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("truncated.pcap"), "{stderr}");
    assert!(stderr.contains("offset"), "{stderr}");
    let records = text(&out.stdout).lines().count();
    assert_eq!(
        records,
        2,
        "both handshakes precede the cut: {}",
        text(&out.stdout)
    );
}

#[test]
fn a_file_that_is_not_a_capture_is_a_clear_error() {
    let junk = temp_file("junk.pcap", b"this is not a capture file at all");
    let out = tlsmon(&["analyze", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("junk.pcap"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let missing = tlsmon(&["analyze", "/nonexistent/x.pcap"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("/nonexistent/x.pcap"));
}

#[test]
fn metrics_format_prints_the_daemons_exposition() {
    let file = corpus("cipher-mismatch-tls12.pcap");
    let out = tlsmon(&["analyze", "--format", "metrics", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = text(&out.stdout);
    let failure = body
        .lines()
        .find(|l| l.starts_with("tlsmon_handshake_failures_total{"))
        .expect("a failure series");
    assert!(failure.contains("alert=\"handshake_failure\""), "{failure}");
    assert!(failure.contains("alert_sender=\"server\""), "{failure}");
    assert!(failure.ends_with(" 1"), "{failure}");
}

#[test]
fn compare_marks_what_differs_between_devices() {
    let ok = corpus("tls12-ok.pcap");
    let bad = corpus("cipher-mismatch-tls12.pcap");
    let out = tlsmon(&[
        "compare",
        "--color",
        "never",
        ok.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    assert!(report.contains("tls12-ok.pcap") && report.contains("cipher-mismatch-tls12.pcap"));
    let failed_row = report
        .lines()
        .find(|l| l.trim_start_matches(['*', ' ']).starts_with("failed"))
        .expect("an outcome row for failed");
    assert!(
        failed_row.starts_with('*'),
        "differing row is marked: {failed_row}"
    );
}

#[test]
fn out_of_range_flags_are_refused_before_anything_runs() {
    let out = tlsmon(&["watch", "--byte-budget", "10"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--byte-budget"));
}

#[test]
fn run_refuses_to_start_on_an_invalid_config_naming_file_and_line() {
    let config = temp_file(
        "bad.toml",
        b"listen = \"127.0.0.1:9808\"\nbyte_budget = 12\n",
    );
    let out = tlsmon(&["run", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.toml:2:"), "{stderr}");
    assert!(stderr.contains("byte_budget"), "{stderr}");
}

#[test]
fn run_refuses_to_start_when_no_interface_matches() {
    let out = tlsmon(&[
        "run",
        "--interface",
        "no-such-nic-*",
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no interface matches no-such-nic-*"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one readable line: {stderr}");
}
