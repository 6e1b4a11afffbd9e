//! One daemon per interface: a second `tlsmon run` on an interface a running
//! daemon watches refuses with one line naming the interface and the other pid;
//! `--allow-shared-interface` attaches anyway; after `kill -9` of the first
//! daemon a new one starts (the kernel released its lock). Interfaces that appear
//! later go to one daemon only. `tlsmon watch` runs next to a daemon, and in
//! clsact mode a capture that only observes leaves the daemon's filters alone.
//!
//! Run under the global lock: `flock /tmp/tlsmon-nettest.lock cargo test -p
//! tlsmon-tests --test one_daemon_per_interface -- --test-threads=1`.

use std::{
    fs::File,
    net::SocketAddr,
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use anyhow::{Context, Result};
use tlsmon::capture::{AttachMode, Capture, CaptureOptions, InterfaceLocking};
use tlsmon_tests::{
    attached::{tc_filters_of_ours, tcx_programs_of_ours},
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::get,
    netns::{ChildGuard, Netns, VethLink},
    process::{poll, run_bounded, Exited},
};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn log_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tlsmon-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log directory");
    dir
}

fn tlsmon_run(ns: &Netns, interface: &str, listen: &str, extra: &[&str]) -> Command {
    let mut cmd = ns.command(tlsmon_binary().expect("tlsmon binary").to_str().unwrap());
    cmd.args(["run", "--interface", interface, "--listen", listen])
        .args(extra);
    cmd
}

/// A daemon started in the background, its output in a log file; SIGKILLed on drop.
struct Daemon {
    name: &'static str,
    child: ChildGuard,
    log: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, mut cmd: Command, logs: &std::path::Path) -> Result<Daemon> {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Daemon {
            name,
            child: ChildGuard(child),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.0.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.0.try_wait()? {
            return Err(Exited(format!(
                "{} exited early ({status}):\n{}",
                self.name,
                self.log()
            ))
            .into());
        }
        Ok(())
    }

    /// SIGTERM, then waits; true when it exited successfully.
    fn stop(&mut self) -> bool {
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        self.child.wait_exit(Duration::from_secs(20))
            && self
                .child
                .0
                .try_wait()
                .ok()
                .flatten()
                .is_some_and(|s| s.success())
    }
}

/// Polls until `interface` in `ns` carries `want` (ingress, egress) TCX programs
/// of ours and `daemon` says it runs (from then on it handles SIGTERM), failing
/// early when `daemon` exits.
fn wait_tcx(ns: &Netns, interface: &str, want: (usize, usize), daemon: &mut Daemon) {
    poll(
        &format!("{} to run", daemon.name),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            daemon.check_running()?;
            Ok(daemon.log().contains("tlsmon running").then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    poll(
        &format!("{want:?} TCX programs on {interface}"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            daemon.check_running()?;
            Ok((tcx_programs_of_ours(ns, interface) == want).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
}

#[test]
fn a_second_daemon_refuses_unless_allowed_and_a_killed_one_frees_the_interface() {
    let _serial = serial();
    let link = VethLink::new(61);
    let (ns, dev) = (&link.server, link.server_if.as_str());
    let logs = log_dir("one-daemon");

    let mut first = Daemon::spawn(
        "tlsmon-first",
        tlsmon_run(ns, dev, "127.0.0.1:19821", &[]),
        &logs,
    )
    .unwrap();
    wait_tcx(ns, dev, (1, 1), &mut first);

    // A second daemon on the same interface: one line, non-zero exit, nothing attached.
    let (status, output) = run_bounded(
        tlsmon_run(ns, dev, "127.0.0.1:19822", &[]),
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(!status.success(), "the second daemon must refuse: {output}");
    assert_eq!(
        output,
        format!(
            "tlsmon: interface {dev} is already watched by another tlsmon (pid {}); stop it, \
             or pass --allow-shared-interface to attach anyway (both then count every handshake)\n",
            first.pid()
        )
    );
    assert_eq!(tcx_programs_of_ours(ns, dev), (1, 1));

    // Allowed explicitly: it attaches next to the first, and detaches on SIGTERM.
    let mut shared = Daemon::spawn(
        "tlsmon-shared",
        tlsmon_run(ns, dev, "127.0.0.1:19823", &["--allow-shared-interface"]),
        &logs,
    )
    .unwrap();
    wait_tcx(ns, dev, (2, 2), &mut shared);
    assert!(shared.stop(), "{}", shared.log());
    assert_eq!(tcx_programs_of_ours(ns, dev), (1, 1));

    // kill -9 of the first: no destructor runs, the kernel drops its links and
    // its lock; a new daemon starts without the flag.
    first.child.0.kill().unwrap();
    assert!(first.child.wait_exit(Duration::from_secs(10)));
    poll::<()>(
        "the killed daemon's links to go",
        Duration::from_secs(10),
        Duration::from_millis(20),
        || Ok((tcx_programs_of_ours(ns, dev) == (0, 0)).then_some(())),
    )
    .unwrap();
    let mut next = Daemon::spawn(
        "tlsmon-next",
        tlsmon_run(ns, dev, "127.0.0.1:19824", &[]),
        &logs,
    )
    .unwrap();
    wait_tcx(ns, dev, (1, 1), &mut next);
    assert!(next.stop(), "{}", next.log());
    assert_eq!(tcx_programs_of_ours(ns, dev), (0, 0));
    let _ = std::fs::remove_dir_all(&logs);
}

/// `tlsmon_interface_attached{device}` of the daemon listening on `listen` in `ns`.
fn attached_gauge(ns: &Netns, listen: &str, device: &str) -> Result<Option<f64>> {
    let addr: SocketAddr = listen.parse()?;
    let body = ns.run_inside(move || get(addr, "/metrics"))?.body;
    Ok(Scrape::parse(&body)?.value("tlsmon_interface_attached", &[("device", device)]))
}

fn add_veth(ns: &Netns, name: &str, peer: &str) {
    ns.exec(&[
        "ip", "link", "add", name, "type", "veth", "peer", "name", peer,
    ]);
    ns.exec(&["ip", "link", "set", name, "up"]);
    ns.exec(&["ip", "link", "set", peer, "up"]);
}

#[test]
fn an_interface_that_appears_is_watched_by_one_daemon_only() -> Result<()> {
    let _serial = serial();
    let ns = Netns::new("tlsmon-odh");
    // Each daemon starts with an interface of its own, and both follow "ho*".
    add_veth(&ns, "hoa0", "xoa0");
    add_veth(&ns, "hob0", "xob0");
    let logs = log_dir("one-daemon-hotplug");
    let (listen_a, listen_b) = ("127.0.0.1:19825", "127.0.0.1:19826");
    let mut a = Daemon::spawn(
        "tlsmon-a",
        tlsmon_run(&ns, "hoa*", listen_a, &["--interface", "hoc*"]),
        &logs,
    )?;
    wait_tcx(&ns, "hoa0", (1, 1), &mut a);
    let mut b = Daemon::spawn(
        "tlsmon-b",
        tlsmon_run(&ns, "hob*", listen_b, &["--interface", "hoc*"]),
        &logs,
    )?;
    wait_tcx(&ns, "hob0", (1, 1), &mut b);

    add_veth(&ns, "hoc0", "xoc0");
    // Both daemons decide about hoc0; exactly one of them attaches.
    let gauges = poll(
        "both daemons to report hoc0",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            a.check_running()?;
            b.check_running()?;
            Ok(
                match (
                    attached_gauge(&ns, listen_a, "hoc0")?,
                    attached_gauge(&ns, listen_b, "hoc0")?,
                ) {
                    (Some(x), Some(y)) => Some((x, y)),
                    _ => None,
                },
            )
        },
    )
    .with_context(|| format!("a:\n{}\nb:\n{}", a.log(), b.log()))?;
    assert!(
        gauges == (1.0, 0.0) || gauges == (0.0, 1.0),
        "exactly one daemon watches hoc0: {gauges:?}"
    );
    assert_eq!(tcx_programs_of_ours(&ns, "hoc0"), (1, 1));
    let (winner, loser) = if gauges.0 == 1.0 { (&a, &b) } else { (&b, &a) };
    let said = format!(
        "interface hoc0 is already watched by another tlsmon (pid {})",
        winner.pid()
    );
    assert!(loser.log().contains(&said), "{}", loser.log());

    assert!(a.stop(), "{}", a.log());
    assert!(b.stop(), "{}", b.log());
    for dev in ["hoa0", "hob0", "hoc0"] {
        assert_eq!(tcx_programs_of_ours(&ns, dev), (0, 0), "{dev}");
    }
    let _ = std::fs::remove_dir_all(&logs);
    Ok(())
}

#[test]
fn an_observing_capture_leaves_a_daemons_clsact_filters_alone() {
    let _serial = serial();
    let link = VethLink::new(62);
    let dev = link.server_if.clone();
    link.server.enter_current_thread();
    let options = |interface_lock| CaptureOptions {
        attach_mode: AttachMode::Clsact,
        interface_lock,
        ..CaptureOptions::default()
    };

    let mut daemon = Capture::load(options(InterfaceLocking::Exclusive)).unwrap();
    daemon.attach(&dev).unwrap();
    assert_eq!(tc_filters_of_ours(&link.server, &dev), (1, 1));
    // As `tlsmon watch` attaches: the daemon's filters are not stale, they stay.
    let mut watch = Capture::load(options(InterfaceLocking::Observe)).unwrap();
    watch.attach(&dev).unwrap();
    assert_eq!(tc_filters_of_ours(&link.server, &dev), (2, 2));
    watch.detach_all().unwrap();
    assert_eq!(tc_filters_of_ours(&link.server, &dev), (1, 1));
    daemon.detach_all().unwrap();
    assert_eq!(tc_filters_of_ours(&link.server, &dev), (0, 0));
}
