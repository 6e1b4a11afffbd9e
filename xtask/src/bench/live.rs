//! What the live benches (daemon, replay) share: network namespaces that are
//! removed on drop, a `tlsmon run` started inside one and stopped on drop, its
//! metrics, and the CPU time of a process.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{output_of, Bench};

/// The tlsmon binary to measure: `given`, else a release build of this workspace.
pub fn tlsmon_binary(bench: &Bench, given: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    output_of(
        bench
            .cargo()
            .args(["build", "--release", "--package", "tlsmon"]),
    )?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| bench.root.join("target"), PathBuf::from);
    Ok(target.join("release").join("tlsmon"))
}

/// Runs a command line, failing with its output unless it exits 0.
pub fn sh(program: &str, args: &[&str]) -> Result<String> {
    output_of(Command::new(program).args(args))
}

/// Network namespaces made for one bench, deleted on drop.
pub struct Namespaces(Vec<String>);

impl Namespaces {
    /// Makes `names` (with `lo` up), deleting leftovers of an earlier run first.
    pub fn new(names: &[&str]) -> Result<Self> {
        let made = Namespaces(names.iter().map(|n| n.to_string()).collect());
        for name in names {
            let _ = Command::new("ip")
                .args(["netns", "del", name])
                .stderr(Stdio::null())
                .status();
            sh("ip", &["netns", "add", name])?;
            sh("ip", &["-n", name, "link", "set", "lo", "up"])?;
        }
        Ok(made)
    }

    /// A veth pair `a` in namespace `ns_a`, `b` in `ns_b`, both up, with
    /// addresses when given (`10.0.0.1/24`).
    pub fn veth(
        &self,
        (ns_a, a, addr_a): (&str, &str, Option<&str>),
        (ns_b, b, addr_b): (&str, &str, Option<&str>),
    ) -> Result<()> {
        sh(
            "ip",
            &[
                "link", "add", a, "netns", ns_a, "type", "veth", "peer", "name", b, "netns", ns_b,
            ],
        )?;
        for (ns, dev, addr) in [(ns_a, a, addr_a), (ns_b, b, addr_b)] {
            if let Some(addr) = addr {
                sh("ip", &["-n", ns, "addr", "add", addr, "dev", dev])?;
            }
            sh("ip", &["-n", ns, "link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// The MAC address of `dev` in `ns`.
    pub fn mac(&self, ns: &str, dev: &str) -> Result<String> {
        let text = sh("ip", &["-n", ns, "-o", "link", "show", dev])?;
        text.split_whitespace()
            .skip_while(|w| *w != "link/ether")
            .nth(1)
            .map(str::to_owned)
            .with_context(|| format!("no MAC address for {dev} in: {text}"))
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A child process killed (SIGTERM, then waited for) on drop.
pub struct Running(pub Child);

impl Running {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Stops it with SIGTERM and waits (bounded) for it to exit.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.0.try_wait() {
            return;
        }
        // SAFETY: kill(2) on a child we own and have not reaped yet.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `tlsmon run` inside a namespace, with its metrics endpoint on that
/// namespace's loopback.
pub struct Daemon {
    /// The process (`ip netns exec` execs tlsmon, so this is tlsmon's pid).
    pub process: Running,
    ns: String,
    listen: String,
}

impl Daemon {
    /// Starts `tlsmon run --interface dev` in `ns` with `extra` arguments and
    /// waits (up to 30 s) until it is attached.
    pub fn start(tlsmon: &Path, ns: &str, dev: &str, log: &Path, extra: &[&str]) -> Result<Self> {
        let listen = "127.0.0.1:19808".to_owned();
        let log_file = std::fs::File::create(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(tlsmon)
            .args([
                "run",
                "--interface",
                dev,
                "--listen",
                &listen,
                "--log-level",
                "warn",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("starting tlsmon run")?;
        let daemon = Daemon {
            process: Running(child),
            ns: ns.to_owned(),
            listen,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if daemon.metric("tlsmon_interface_attached").unwrap_or(0.0) >= 1.0 {
                return Ok(daemon);
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                bail!("tlsmon did not attach to {dev} within 30 s:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The sum of every series of metric `name`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let url = format!("http://{}/metrics", self.listen);
        let text = sh("ip", &["netns", "exec", &self.ns, "curl", "-sf", &url])?;
        Ok(text
            .lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits (up to `limit`) until the daemon follows no flow any more and its
    /// handshake count stopped moving for a second; returns that count.
    pub fn settle(&self, limit: Duration) -> Result<f64> {
        let deadline = Instant::now() + limit;
        let mut last = -1.0;
        loop {
            // Metrics refresh once a second.
            std::thread::sleep(Duration::from_millis(1100));
            let handshakes = self.metric("tlsmon_handshakes_total")?;
            let tracked = self.metric("tlsmon_flows_tracked")?;
            if tracked == 0.0 && handshakes == last {
                return Ok(handshakes);
            }
            if Instant::now() > deadline {
                bail!("the daemon did not settle in {limit:?}: {tracked} flows still tracked");
            }
            last = handshakes;
        }
    }
}

/// CPU time (user + system, all threads) `pid` has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name, which may hold spaces and parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("short stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}
