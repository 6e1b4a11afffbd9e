//! The daemon's log (issue 11): with standard error going to a file, no ANSI
//! escape codes; `--log-format json` gives one JSON object per line; one line per
//! event that matters (an interface attached, an interface that appeared and was
//! attached, one that vanished), none per handshake: twenty real OpenSSL
//! handshakes add no line.
//!
//! Needs root (namespace, BPF) and openssl. Without root it is skipped, unless
//! `CI` is set: then it fails.

use std::{path::Path, process::Stdio, time::Duration};
use tlsmon_tests::root_or_skip;

use anyhow::{ensure, Context, Result};
use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::get,
    netns::{wait_listening, ChildGuard, Netns, TestCert},
    process::{poll, run_checked, Background},
};

const PORT: u16 = 4433;
const HANDSHAKES: usize = 20;

/// Runs the daemon on `lo` and `lg*` in a fresh namespace with `extra` flags:
/// twenty handshakes on `lo`, then a veth pair `lg0`/`lg1` appears and is
/// deleted. Returns the log, whole, after a clean stop, and the number of lines
/// written before and after the handshakes.
fn session(dir: &Path, name: &str, extra: &[&str]) -> Result<(String, usize, usize)> {
    let ns = Netns::new("tml");
    let cert = TestCert::new();
    let tlsmon = tlsmon_binary()?;
    let mut daemon = {
        let mut cmd = ns.command(&tlsmon.display().to_string());
        cmd.args(["run", "--interface", "lo", "--interface", "lg*"])
            .args(["--listen", "127.0.0.1:9813"])
            .args(extra);
        Background::spawn(name, cmd, dir)?
    };
    poll(
        "attached to lo",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            Ok((tcx_programs_of_ours(&ns, "lo") == (1, 1)).then_some(()))
        },
    )?;
    let _server = ChildGuard(
        ns.command("openssl")
            .args(["s_server", "-quiet", "-accept", &PORT.to_string()])
            .args(["-cert", &cert.cert(), "-key", &cert.key()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_listening(&ns, PORT);
    // Let the start-up lines land before counting.
    poll(
        "the start-up lines",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || Ok(daemon.log().contains("tlsmon running").then_some(())),
    )?;
    let before = daemon.log().lines().count();
    for _ in 0..HANDSHAKES {
        let out = ns
            .command("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{PORT}")])
            .stdin(Stdio::null())
            .output()?;
        ensure!(out.status.success(), "s_client failed");
    }
    // Counted means the daemon has handled them: any line of theirs is written.
    poll(
        "the handshakes counted",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            let resp = ns.run_inside(|| get("127.0.0.1:9813".parse().unwrap(), "/metrics"))?;
            let seen = Scrape::parse(&resp.body)?.sum("tlsmon_handshakes_total", &[]);
            Ok((seen == HANDSHAKES as f64).then_some(()))
        },
    )
    .with_context(|| daemon.log())?;
    let after = daemon.log().lines().count();

    let ip = |args: &[&str]| run_checked(ns.command("ip").args(args)).map(|_| ());
    ip(&["link", "add", "lg0", "type", "veth", "peer", "name", "lg1"])?;
    ip(&["link", "set", "lg0", "up"])?;
    ip(&["link", "set", "lg1", "up"])?;
    poll(
        "lg0 and lg1 attached",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            let log = daemon.log();
            Ok((log.contains("lg0") && log.contains("lg1")).then_some(()))
        },
    )?;
    ip(&["link", "del", "lg0"])?;
    poll(
        "lg0 and lg1 vanished",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            Ok((daemon.log().matches("vanished").count() == 2).then_some(()))
        },
    )
    .with_context(|| daemon.log())?;
    let status = daemon.stop()?;
    ensure!(status.success(), "tlsmon exit: {status}\n{}", daemon.log());
    Ok((daemon.log(), before, after))
}

#[test]
fn log_lines_are_plain_one_per_event_and_json_on_request() -> Result<()> {
    if !root_or_skip("logs")? {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("tlsmon-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    // Text, standard error to a file.
    let (text, before, after) = session(&dir, "text", &[])?;
    assert!(
        !text.contains('\x1b'),
        "ANSI escape codes in a log file:\n{text}"
    );
    assert_eq!(
        before, after,
        "{HANDSHAKES} handshakes added log lines:\n{text}"
    );
    for (interface, event) in [
        ("lo", "attached"),
        ("lg0", "attached"),
        ("lg1", "attached"),
        ("lg0", "interface vanished"),
        ("lg1", "interface vanished"),
    ] {
        let lines = text
            .lines()
            .filter(|l| l.contains(event) && l.contains(&format!("interface={interface}")))
            .count();
        assert_eq!(lines, 1, "{interface} {event}:\n{text}");
    }

    // JSON: every line an object with level, target and message.
    let (json, before, after) = session(&dir, "json", &["--log-format", "json"])?;
    assert_eq!(
        before, after,
        "{HANDSHAKES} handshakes added log lines:\n{json}"
    );
    let mut events = Vec::new();
    for line in json.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        for field in ["timestamp", "level", "target", "message"] {
            ensure!(v[field].is_string(), "no {field} in {line}");
        }
        events.push((
            v["message"].as_str().unwrap_or("").to_owned(),
            v["interface"].as_str().unwrap_or("").to_owned(),
        ));
    }
    for (message, interface) in [
        ("attached", "lo"),
        ("attached", "lg0"),
        ("interface vanished; detached", "lg1"),
    ] {
        assert!(
            events.contains(&(message.to_owned(), interface.to_owned())),
            "{message} {interface}:\n{json}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
