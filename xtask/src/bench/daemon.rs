//! The daemon part: what `tlsmon run` costs next to the server whose handshakes
//! it watches. An `openssl s_server` in one namespace, `openssl s_time -new
//! -tls1_3` making full handshakes back to back from another, through a veth
//! pair; `tlsmon run` attached to the server's end. The CPU time (user + system,
//! all threads, from /proc/PID/stat) of the daemon and of s_server over the run,
//! per handshake and as a ratio (BENCHMARKS.md, "Daemon throughput (issue 16)").

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context, Result};
use clap::Args;

use super::live::{cpu_time, sh, tlsmon_binary, Daemon, Namespaces, Running};
use super::Bench;

/// Options of the daemon part.
#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// Seconds s_time makes handshakes.
    #[arg(long, default_value_t = 20)]
    pub daemon_seconds: u32,
    /// The tlsmon binary to measure (e.g. an older build, to compare); a release
    /// build of this workspace when absent.
    #[arg(long)]
    pub daemon_tlsmon: Option<PathBuf>,
    /// Extra arguments for `tlsmon run` (e.g. `--workers 1`), comma-separated.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub daemon_args: Vec<String>,
}

const CLIENT_NS: &str = "tlsmon-bd-c";
const SERVER_NS: &str = "tlsmon-bd-s";
const SERVER_IP: &str = "10.78.0.1";
const PORT: &str = "4443";

/// The figures of one run.
struct Figures {
    handshakes: u64,
    recorded: f64,
    wall: Duration,
    server_cpu: Duration,
    daemon_cpu: Duration,
    dropped: f64,
}

/// Sets up, runs s_time once, and formats the figures.
pub fn run(bench: &Bench, args: &DaemonArgs) -> Result<String> {
    let tlsmon = tlsmon_binary(bench, args.daemon_tlsmon.as_deref())?;
    let work = std::env::temp_dir().join(format!("tlsmon-bench-daemon-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let figures = measure(&tlsmon, args, &work);
    let _ = std::fs::remove_dir_all(&work);
    let f = figures?;
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / f.handshakes.max(1) as f64;
    let extra = if args.daemon_args.is_empty() {
        String::new()
    } else {
        format!(" --daemon-args {}", args.daemon_args.join(","))
    };
    Ok(format!(
        "\n#### Daemon against s_server\n\n\
         `cargo xtask bench --part daemon --daemon-seconds {secs}{extra}`, tlsmon `{bin}`: \
         one `openssl s_time -new -tls1_3` against `openssl s_server` (P-256) through a veth, \
         `tlsmon run` on the server's end.\n\n\
         | handshakes (s_time) | recorded by tlsmon | rate | s_server CPU | per handshake | \
         tlsmon CPU | per handshake | tlsmon / s_server | RingBuf drops |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n\
         | {hs} | {rec} | {rate:.0}/s | {scpu:.2} s | {sper:.1} µs | {dcpu:.2} s | {dper:.1} µs | \
         {ratio:.1} % | {drops} |\n",
        secs = args.daemon_seconds,
        bin = tlsmon.display(),
        hs = f.handshakes,
        rec = f.recorded,
        rate = f.handshakes as f64 / f.wall.as_secs_f64(),
        scpu = f.server_cpu.as_secs_f64(),
        sper = per(f.server_cpu),
        dcpu = f.daemon_cpu.as_secs_f64(),
        dper = per(f.daemon_cpu),
        ratio = 100.0 * f.daemon_cpu.as_secs_f64() / f.server_cpu.as_secs_f64().max(1e-9),
        drops = f.dropped,
    ))
}

fn measure(tlsmon: &std::path::Path, args: &DaemonArgs, work: &std::path::Path) -> Result<Figures> {
    let namespaces = Namespaces::new(&[CLIENT_NS, SERVER_NS])?;
    namespaces.veth(
        (CLIENT_NS, "bd-c", Some("10.78.0.2/24")),
        (SERVER_NS, "bd-s", Some(&format!("{SERVER_IP}/24"))),
    )?;
    let (cert, key) = (work.join("cert.pem"), work.join("key.pem"));
    sh(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=bench.test",
            "-keyout",
            key.to_str().context("path")?,
            "-out",
            cert.to_str().context("path")?,
        ],
    )?;
    let server = Running(
        Command::new("ip")
            .args(["netns", "exec", SERVER_NS, "openssl", "s_server", "-quiet"])
            .args(["-accept", PORT, "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("starting openssl s_server")?,
    );
    let extra: Vec<&str> = args.daemon_args.iter().map(String::as_str).collect();
    let daemon = Daemon::start(tlsmon, SERVER_NS, "bd-s", &work.join("tlsmon.log"), &extra)?;
    // Settled: start-up work is not counted.
    std::thread::sleep(Duration::from_secs(2));
    let server_before = cpu_time(server.pid())?;
    let daemon_before = cpu_time(daemon.process.pid())?;
    let started = std::time::Instant::now();
    let out = sh(
        "ip",
        &[
            "netns",
            "exec",
            CLIENT_NS,
            "openssl",
            "s_time",
            "-connect",
            &format!("{SERVER_IP}:{PORT}"),
            "-new",
            "-tls1_3",
            "-time",
            &args.daemon_seconds.to_string(),
        ],
    )?;
    let wall = started.elapsed();
    let recorded = daemon.settle(Duration::from_secs(60))?;
    let server_cpu = cpu_time(server.pid())? - server_before;
    let daemon_cpu = cpu_time(daemon.process.pid())? - daemon_before;
    let handshakes = out
        .lines()
        .find_map(|l| l.split_once(" connections in ").map(|(n, _)| n.trim()))
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("no connection count in s_time's output:\n{out}"))?;
    let dropped = daemon.metric("tlsmon_capture_ringbuf_dropped_total")?;
    drop(daemon);
    drop(server);
    drop(namespaces);
    Ok(Figures {
        handshakes,
        recorded,
        wall,
        server_cpu,
        daemon_cpu,
        dropped,
    })
}
