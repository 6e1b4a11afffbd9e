//! Attaching and detaching as root in throwaway namespaces: clsact clean-up that
//! keeps what others own, no double attach after `kill -9`, and the one-line
//! errors for a missing interface and for missing privileges.
//!
//! Tests run one at a time (SERIAL): they start helper processes and count filters.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use tlsmon::source::live::{
    AttachMode, AttachedVia, Capture, CaptureError, CaptureOptions, InterfaceSelector,
};
use tlsmon_tests::{
    attached::{tc_filters_of_ours as ours_tc, tcx_programs_of_ours as tcx_ours},
    netns::{ChildGuard, Netns, VethLink},
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn options(mode: AttachMode) -> CaptureOptions {
    CaptureOptions {
        attach_mode: mode,
        ..CaptureOptions::default()
    }
}

fn qdiscs(ns: &Netns, dev: &str) -> String {
    ns.exec(&["tc", "qdisc", "show", "dev", dev])
}

#[test]
fn clsact_mode_removes_its_own_qdisc_and_keeps_a_preexisting_one() {
    let _serial = serial();
    let link = VethLink::new(3);
    let dev = link.server_if.clone();
    link.server.enter_current_thread();

    // No qdisc before: tlsmon adds clsact and removes it again.
    let mut c = Capture::load(options(AttachMode::Clsact)).unwrap();
    c.attach(&dev).unwrap();
    assert_eq!(
        c.attached_via(&dev),
        Some(AttachedVia::Clsact {
            created_qdisc: true
        })
    );
    assert_eq!(ours_tc(&link.server, &dev), (1, 1));
    assert!(qdiscs(&link.server, &dev).contains("clsact"));
    assert!(c.detach(&dev).unwrap());
    assert!(!c.detach(&dev).unwrap(), "detaching twice is a no-op");
    assert_eq!(ours_tc(&link.server, &dev), (0, 0));
    assert!(!qdiscs(&link.server, &dev).contains("clsact"));

    // Someone else's clsact with a filter: both stay, only ours go.
    link.server
        .exec(&["tc", "qdisc", "add", "dev", &dev, "clsact"]);
    link.server.exec(&[
        "tc", "filter", "add", "dev", &dev, "ingress", "prio", "10", "u32", "match", "u32", "0",
        "0", "flowid", "1:1",
    ]);
    c.attach(&dev).unwrap();
    assert_eq!(
        c.attached_via(&dev),
        Some(AttachedVia::Clsact {
            created_qdisc: false
        })
    );
    assert_eq!(ours_tc(&link.server, &dev), (1, 1));
    drop(c); // dropping detaches too
    assert_eq!(ours_tc(&link.server, &dev), (0, 0));
    let left = link
        .server
        .exec(&["tc", "filter", "show", "dev", &dev, "ingress"]);
    assert!(left.contains("u32"), "{left}");
    assert!(qdiscs(&link.server, &dev).contains("clsact"));
}

/// Env vars that turn `helper_attach_then_wait_for_kill` into a real helper.
const HELPER_NETNS: &str = "TLSMON_TEST_HELPER_NETNS";
const HELPER_DEV: &str = "TLSMON_TEST_HELPER_DEV";
const HELPER_MODE: &str = "TLSMON_TEST_HELPER_MODE";

#[test]
#[ignore = "helper process of after_kill_9_a_new_start_does_not_double_attach, which runs it"]
fn helper_attach_then_wait_for_kill() {
    let (Ok(netns), Ok(dev), Ok(mode)) = (
        std::env::var(HELPER_NETNS),
        std::env::var(HELPER_DEV),
        std::env::var(HELPER_MODE),
    ) else {
        return;
    };
    let file = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
    // SAFETY: setns on a valid namespace fd, for this thread only.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0);
    let mode = if mode == "clsact" {
        AttachMode::Clsact
    } else {
        AttachMode::Tcx
    };
    let mut c = Capture::load(options(mode)).unwrap();
    c.attach(&dev).unwrap();
    println!("HELPER-ATTACHED");
    // Wait for SIGKILL: the parent holds our stdin open and never writes.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::mem::forget(c);
}

/// Starts the helper attached to `dev` in `ns` and kills it with SIGKILL.
fn attach_in_helper_and_kill_it(ns: &Netns, dev: &str, mode: &str) {
    let mut child = ChildGuard(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "helper_attach_then_wait_for_kill", "--ignored"])
            .args(["--nocapture", "--test-threads=1"])
            .env(HELPER_NETNS, ns.name())
            .env(HELPER_DEV, dev)
            .env(HELPER_MODE, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("HELPER-ATTACHED") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("helper never attached");
    child.0.kill().unwrap(); // SIGKILL: no destructor runs
    assert!(child.wait_exit(Duration::from_secs(10)));
}

#[test]
fn after_kill_9_a_new_start_does_not_double_attach() {
    let _serial = serial();
    let link = VethLink::new(4);
    let dev = link.server_if.clone();
    let ns = &link.server;

    // TCX: the links die with the process.
    attach_in_helper_and_kill_it(ns, &dev, "tcx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tcx_ours(ns, &dev) != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "TCX links outlived their process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    ns.enter_current_thread();
    let mut c = Capture::load(options(AttachMode::Auto)).unwrap();
    c.attach(&dev).unwrap();
    assert_eq!(tcx_ours(ns, &dev), (1, 1));
    c.detach_all().unwrap();
    assert_eq!(tcx_ours(ns, &dev), (0, 0));

    // clsact: the filters survive the process; the next start replaces them and
    // adopts the qdisc that only they used.
    attach_in_helper_and_kill_it(ns, &dev, "clsact");
    assert_eq!(ours_tc(ns, &dev), (1, 1), "stale filters expected");
    let mut c = Capture::load(options(AttachMode::Clsact)).unwrap();
    c.attach(&dev).unwrap();
    assert_eq!(ours_tc(ns, &dev), (1, 1), "double attach");
    assert_eq!(
        c.attached_via(&dev),
        Some(AttachedVia::Clsact {
            created_qdisc: true
        })
    );
    c.detach_all().unwrap();
    assert_eq!(ours_tc(ns, &dev), (0, 0));
    assert!(!qdiscs(ns, &dev).contains("clsact"));

    // And a TCX start after a crashed clsact run removes the stale filters too.
    attach_in_helper_and_kill_it(ns, &dev, "clsact");
    let mut c = Capture::load(options(AttachMode::Tcx)).unwrap();
    c.attach(&dev).unwrap();
    assert_eq!(ours_tc(ns, &dev), (0, 0));
    assert_eq!(tcx_ours(ns, &dev), (1, 1));
    c.detach_all().unwrap();
}

#[test]
fn missing_interfaces_are_one_line_errors() {
    let _serial = serial();
    let ns = Netns::new("tme");
    ns.enter_current_thread();
    let mut c = Capture::load(CaptureOptions::default()).unwrap();
    let err = c.attach("nosuchif0").unwrap_err();
    assert!(matches!(err, CaptureError::InterfaceNotFound(_)));
    assert_eq!(
        err.to_string(),
        "interface \"nosuchif0\" not found (see `ip link`)"
    );
    let selector = InterfaceSelector::new(&["nosuchif0"]).unwrap();
    assert!(matches!(
        c.attach_selected(&selector),
        Err(CaptureError::InterfaceNotFound(_))
    ));
    // The default selection in a namespace with only loopback selects nothing.
    let default = InterfaceSelector::new::<&str>(&[]).unwrap();
    assert_eq!(c.attach_selected(&default).unwrap(), Vec::<String>::new());
    assert!(c.attached().is_empty());
}

const HELPER_UNPRIVILEGED: &str = "TLSMON_TEST_HELPER_UNPRIVILEGED";

#[test]
#[ignore = "helper process of loading_without_privileges_says_what_is_missing, which runs it"]
fn helper_load_without_privileges() {
    if std::env::var(HELPER_UNPRIVILEGED).is_err() {
        return;
    }
    match Capture::load(CaptureOptions::default()) {
        Ok(_) => println!("HELPER-RESULT loaded"),
        Err(e) => println!("HELPER-RESULT {e}"),
    }
}

#[test]
fn loading_without_privileges_says_what_is_missing() {
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_load_without_privileges",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_UNPRIVILEGED, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("HELPER-RESULT "))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no result: {stdout} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert_eq!(
        line,
        "permission denied loading the eBPF program: run tlsmon as root, or grant CAP_BPF, \
         CAP_NET_ADMIN and CAP_PERFMON (missing: CAP_NET_ADMIN, CAP_BPF, CAP_PERFMON)"
    );
}
