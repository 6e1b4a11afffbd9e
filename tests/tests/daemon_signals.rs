//! The real `tlsmon run` binary, as root in a throwaway namespace: SIGINT and
//! SIGTERM detach everything it attached, and after `kill -9` a new start works
//! without attaching twice. Needs the tlsmon binary next to this test's directory
//! (`cargo test --workspace` builds it for the tlsmon crate's CLI tests).

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use tlsmon_tests::{
    attached::{tc_filters_of_ours, tcx_programs_of_ours},
    netns::{ChildGuard, VethLink},
    poll,
};

static SERIAL: Mutex<()> = Mutex::new(());

fn tlsmon_binary() -> PathBuf {
    tlsmon_tests::binary::tlsmon_binary()
        .expect("the tlsmon binary (cargo test --workspace builds it)")
}

fn start(link: &VethLink, port: u16) -> ChildGuard {
    let child = link
        .server
        .command(tlsmon_binary().to_str().unwrap())
        .args(["run", "--interface", &link.server_if])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = ChildGuard(child);
    poll::until("tlsmon to attach", Duration::from_secs(30), || {
        (tcx_programs_of_ours(&link.server, &link.server_if) == (1, 1)).then_some(())
    });
    guard
}

fn signal(child: &ChildGuard, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn sigint_and_sigterm_detach_everything_and_kill_9_leaves_no_double_attach() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let link = VethLink::new(5);
    for (sig, port) in [("INT", 19811), ("TERM", 19812)] {
        let mut daemon = start(&link, port);
        signal(&daemon, sig);
        assert!(
            daemon.wait_exit(Duration::from_secs(20)),
            "tlsmon did not stop on SIG{sig}"
        );
        let status = daemon.0.try_wait().unwrap().unwrap();
        assert!(status.success(), "exit after SIG{sig}: {status}");
        assert_eq!(tcx_programs_of_ours(&link.server, &link.server_if), (0, 0));
        assert_eq!(tc_filters_of_ours(&link.server, &link.server_if), (0, 0));
    }

    // kill -9: TCX links die with the process; a new start attaches exactly once.
    let mut daemon = start(&link, 19813);
    signal(&daemon, "KILL");
    assert!(daemon.wait_exit(Duration::from_secs(10)));
    poll::until(
        "the killed process's links to go",
        Duration::from_secs(10),
        || (tcx_programs_of_ours(&link.server, &link.server_if) == (0, 0)).then_some(()),
    );
    let mut again = start(&link, 19814);
    assert_eq!(tcx_programs_of_ours(&link.server, &link.server_if), (1, 1));
    signal(&again, "TERM");
    assert!(again.wait_exit(Duration::from_secs(20)));
    assert_eq!(tcx_programs_of_ours(&link.server, &link.server_if), (0, 0));
}
