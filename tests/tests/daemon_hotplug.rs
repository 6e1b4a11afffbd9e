//! The daemon follows interfaces: one that appears and matches `--interface` is
//! watched and shows as `tlsmon_interface_attached{device} 1`; when it vanishes the
//! gauge drops to 0; on SIGTERM nothing of tlsmon's stays attached.

use std::time::Duration;

use anyhow::Result;
use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::get,
    netns::Netns,
    process::{poll, Background},
};

const LISTEN: &str = "127.0.0.1:9808";

/// `tlsmon_interface_attached{device}` as the daemon in `ns` reports it now.
fn attached_gauge(ns: &Netns, daemon: &mut Background, device: &str) -> Result<Option<f64>> {
    daemon.check_running()?;
    let body = ns
        .run_inside(|| get(LISTEN.parse().expect("valid address"), "/metrics"))?
        .body;
    Ok(Scrape::parse(&body)?.value("tlsmon_interface_attached", &[("device", device)]))
}

fn wait_for_gauge(ns: &Netns, daemon: &mut Background, device: &str, want: f64) -> Result<()> {
    poll(
        &format!("tlsmon_interface_attached{{device=\"{device}\"}} == {want}"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            Ok(attached_gauge(ns, daemon, device)?
                .filter(|&v| v == want)
                .map(|_| ()))
        },
    )
}

fn add_veth(ns: &Netns, name: &str, peer: &str) {
    ns.exec(&[
        "ip", "link", "add", name, "type", "veth", "peer", "name", peer,
    ]);
    ns.exec(&["ip", "link", "set", name, "up"]);
    ns.exec(&["ip", "link", "set", peer, "up"]);
}

#[test]
fn daemon_attaches_to_interfaces_that_appear_and_drops_those_that_vanish() -> Result<()> {
    let ns = Netns::new("tlsmon-dhp");
    add_veth(&ns, "hpa0", "xpa0");
    let logs = tempfile_dir()?;
    let mut cmd = ns.command(tlsmon_binary()?.to_str().expect("utf-8 path"));
    cmd.args(["run", "--interface", "hp*", "--listen", LISTEN]);
    let mut daemon = Background::spawn("tlsmon", cmd, &logs)?;

    wait_for_gauge(&ns, &mut daemon, "hpa0", 1.0)?;
    // Only what the glob selects: the peer is not watched.
    assert_eq!(attached_gauge(&ns, &mut daemon, "xpa0")?, None);

    add_veth(&ns, "hpb0", "xpb0");
    wait_for_gauge(&ns, &mut daemon, "hpb0", 1.0)?;
    assert_eq!(tcx_programs_of_ours(&ns, "hpb0"), (1, 1));

    ns.exec(&["ip", "link", "del", "hpb0"]);
    wait_for_gauge(&ns, &mut daemon, "hpb0", 0.0)?;
    let health = ns.run_inside(|| get(LISTEN.parse().expect("valid address"), "/healthz"))?;
    assert_eq!(health.status, 200, "still watching hpa0: {}", health.body);

    let status = daemon.stop()?;
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        daemon.log()
    );
    assert_eq!(
        tcx_programs_of_ours(&ns, "hpa0"),
        (0, 0),
        "nothing left attached"
    );
    Ok(())
}

/// A fresh directory for the daemon's log.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("tlsmon-dhp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
