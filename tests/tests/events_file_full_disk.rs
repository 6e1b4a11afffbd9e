//! The daemon's events file on a full disk: a record is written whole or not at
//! all, so every line stays valid JSON; each lost record is counted, the failure
//! is logged once (not once per record), and once space is freed the next
//! records are written whole. The disk is a 12 KiB tmpfs the test mounts (and
//! unmounts in a guard), two thirds of it taken by a filler file at first.
//!
//! Run under the global lock: `flock /tmp/tlsmon-nettest.lock cargo test -p
//! tlsmon-tests --test events_file_full_disk -- --test-threads=1`.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result};
use tlsmon_tests::{
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::get,
    netns::{Netns, TestCert, VethLink},
    process::{poll, Background},
};

const LISTEN: &str = "127.0.0.1:19840";
/// Handshakes while the disk is full, and after space was freed.
const WHILE_FULL: usize = 6;
const AFTER_FREEING: usize = 3;

/// A tmpfs mounted on a fresh directory; unmounted (and the directory removed)
/// on drop, also when the test fails.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon that still has the file open must not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Every line of the events file, each parsed as JSON (a torn line fails here).
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        let tail = text.rsplit('\n').next().unwrap_or_default();
        panic!("the file ends in a partial line: {tail:?}");
    }
    text.lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a whole JSON record ({e}): {line:?}"))
        })
        .collect()
}

fn scrape(ns: &Netns) -> Result<Scrape> {
    let addr: SocketAddr = LISTEN.parse()?;
    let body = ns.run_inside(move || get(addr, "/metrics"))?.body;
    Ok(Scrape::parse(&body)?)
}

/// Runs one handshake and waits until the daemon has decided `total` in all.
fn handshake(link: &VethLink, daemon: &mut Background, total: usize) -> Result<Scrape> {
    assert_eq!(
        link.openssl_handshake(&[]).code(),
        Some(0),
        "s_client failed"
    );
    poll(
        &format!("{total} handshakes decided"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            daemon.check_running()?;
            let s = scrape(&link.server)?;
            Ok((s.sum("tlsmon_handshakes_total", &[]) == total as f64).then_some(s))
        },
    )
    .with_context(|| daemon.log())
}

fn counter(s: &Scrape, name: &str) -> f64 {
    s.value(name, &[])
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[test]
fn a_full_disk_loses_whole_records_only_counts_them_and_recovers() -> Result<()> {
    let link = VethLink::new(64);
    let cert = TestCert::new();
    let work = std::env::temp_dir().join(format!("tlsmon-fulldisk-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    // Three pages; the filler takes two, the events file gets one (two or three
    // records), and all three once the filler is gone.
    let disk = Tmpfs::mount(work.join("disk"), "12k");
    let filler = disk.dir.join("filler");
    std::fs::write(&filler, vec![0u8; 8192])?;
    let events = disk.dir.join("events.jsonl");

    let mut cmd = link.server.command(tlsmon_binary()?.to_str().unwrap());
    cmd.args(["run", "--interface", &link.server_if, "--listen", LISTEN])
        .arg("--events-file")
        .arg(&events);
    let mut daemon = Background::spawn("tlsmon", cmd, &work)?;
    poll(
        "the daemon to run",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            daemon.check_running()?;
            Ok(daemon.log().contains("tlsmon running").then_some(()))
        },
    )?;
    let _server = link.openssl_server(&cert, (WHILE_FULL + AFTER_FREEING) as u32, &[]);

    // Fill the page: a record takes well over 1 KiB, so a few fit, then writes
    // fail, part-way through a record or at once.
    let mut s = None;
    for i in 1..=WHILE_FULL {
        s = Some(handshake(&link, &mut daemon, i)?);
    }
    let s = s.expect("at least one handshake");
    let written = json_lines(&events).len();
    let lost = counter(&s, "tlsmon_events_file_records_lost_total");
    assert!(written >= 1, "some records fit");
    assert!(lost >= 2.0, "the disk filled up: {written} written");
    assert_eq!(
        written as f64 + lost,
        WHILE_FULL as f64,
        "every record is in the file or counted"
    );
    assert_eq!(counter(&s, "tlsmon_events_file_write_errors_total"), lost);
    let log = daemon.log();
    assert_eq!(
        log.matches("cannot write to events file").count(),
        1,
        "one warning for {lost} failures:\n{log}"
    );
    // The first failure came part-way through a record (the page had room for
    // part of it), and that part was cut off again.
    assert!(
        log.contains("the record is lost (its partial line was removed)"),
        "{log}"
    );

    // Space again: the next records are written whole, after the earlier ones.
    std::fs::remove_file(&filler)?;
    let mut s = None;
    for i in 1..=AFTER_FREEING {
        s = Some(handshake(&link, &mut daemon, WHILE_FULL + i)?);
    }
    let s = s.expect("at least one handshake");
    let lines = json_lines(&events);
    assert_eq!(lines.len(), written + AFTER_FREEING);
    for line in &lines[written..] {
        assert_eq!(line["outcome"], "established");
        assert_eq!(line["device"], link.server_if.as_str());
    }
    assert_eq!(counter(&s, "tlsmon_events_file_records_lost_total"), lost);
    assert!(
        daemon.log().contains(&format!(
            "events file written again; {lost} records were lost before"
        )),
        "{}",
        daemon.log()
    );
    assert!(daemon.stop()?.success(), "{}", daemon.log());
    drop(disk);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
