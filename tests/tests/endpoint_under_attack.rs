//! The daemon's HTTP endpoint under attack: while 500 idle connections (which
//! never send a byte) and 20 slow-header senders are held open against it, and
//! reopened as fast as the daemon closes them, `/metrics` and `/healthz` each
//! answer within 1 s on a fresh connection, and the daemon counts the connections
//! it shed.
//!
//! Run under the global lock (it starts `tlsmon run` in a namespace):
//! `flock /tmp/tlsmon-nettest.lock cargo test -p tlsmon-tests --test
//! endpoint_under_attack -- --test-threads=1 --nocapture` (the measured latencies
//! are printed; BENCHMARKS.md quotes them).

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tlsmon_tests::{
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::get,
    netns::{Netns, VethLink},
    process::{poll, Background},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const LISTEN: &str = "127.0.0.1:19830";
/// Connections opened and then left silent.
const IDLE: usize = 500;
/// Connections that send a request head one header line every 100 ms, forever.
const SLOW: usize = 20;
/// Requests per path, each on a fresh connection, while the attack runs.
const PROBES: usize = 20;
/// What "answers" means: a whole response within this time.
const ANSWER_WITHIN: Duration = Duration::from_secs(1);
/// Reconnections per attacking connection at most (every loop is bounded).
const MAX_RECONNECTS: usize = 1000;

/// What the attacker did, shared with the test thread.
#[derive(Default)]
struct AttackStats {
    /// Attacking connections open now (from the attacker's side).
    open: AtomicUsize,
    /// Connections the attacker saw closed by the daemon (and reopened).
    closed_by_server: AtomicUsize,
    /// Connection attempts that failed (retried after 10 ms).
    connect_failures: AtomicUsize,
}

/// Holds one connection slot open: connects, stays silent (or trickles a header
/// when `slow`), and reconnects after the server closes it.
async fn hold(addr: SocketAddr, slow: bool, stats: Arc<AttackStats>, stop: Arc<AtomicBool>) {
    for _ in 0..MAX_RECONNECTS {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        stats.open.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 512];
        if slow {
            let _ = stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: attacker\r\n")
                .await;
        }
        // Until the server closes the connection or the test stops.
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            if stop.load(Ordering::Relaxed) {
                stats.open.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                },
                _ = tick.tick() => {
                    if slow && stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                        break;
                    }
                }
            }
        }
        stats.open.fetch_sub(1, Ordering::Relaxed);
        stats.closed_by_server.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs the attack from a thread in `ns` until `stop`; returns the thread.
fn start_attack(
    ns: &Netns,
    addr: SocketAddr,
    stats: Arc<AttackStats>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let ns_path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns_path).expect("namespace file");
        // SAFETY: setns on a valid namespace fd; only this thread moves.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..IDLE + SLOW {
                tasks.spawn(hold(addr, i >= IDLE, stats.clone(), stop.clone()));
            }
            while tasks.join_next().await.is_some() {}
        });
    })
}

/// One GET on a fresh connection from inside `ns`: status and time to the whole
/// response (an error counts as never answering).
fn timed_get(ns: &Netns, addr: SocketAddr, path: &'static str) -> (Option<u16>, Duration) {
    ns.run_inside(move || {
        let start = Instant::now();
        let status = get(addr, path).ok().map(|r| r.status);
        (status, start.elapsed())
    })
}

/// `tlsmon_http_connections_closed_total{reason="shed"}` of the daemon now.
fn shed_so_far(ns: &Netns, addr: SocketAddr) -> anyhow::Result<f64> {
    let body = ns.run_inside(move || get(addr, "/metrics"))?.body;
    Ok(Scrape::parse(&body)?
        .value(
            "tlsmon_http_connections_closed_total",
            &[("reason", "shed")],
        )
        .unwrap_or(0.0))
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

#[test]
fn metrics_and_healthz_answer_within_1s_while_hundreds_of_connections_are_held() {
    let link = VethLink::new(63);
    let ns = &link.server;
    let logs = std::env::temp_dir().join(format!("tlsmon-attack-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let mut cmd = ns.command(tlsmon_binary().unwrap().to_str().unwrap());
    cmd.args(["run", "--interface", &link.server_if, "--listen", LISTEN]);
    let mut daemon = Background::spawn("tlsmon", cmd, &logs).unwrap();
    let addr: SocketAddr = LISTEN.parse().unwrap();
    poll(
        "the daemon to serve /healthz",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            Ok(ns
                .run_inside(move || get(addr, "/healthz"))
                .ok()
                .filter(|r| r.status == 200))
        },
    )
    .unwrap();

    // For comparison: the same probes without the attack.
    for path in ["/metrics", "/healthz"] {
        let mut times: Vec<Duration> = (0..PROBES)
            .map(|_| timed_get(ns, addr, path))
            .filter(|(status, _)| *status == Some(200))
            .map(|(_, took)| took)
            .collect();
        times.sort();
        assert_eq!(times.len(), PROBES, "{path} answers without an attack");
        println!(
            "{path} without attack: {PROBES} probes, min {:?}, median {:?}, p90 {:?}, max {:?}",
            times[0],
            percentile(&times, 50),
            percentile(&times, 90),
            times[PROBES - 1],
        );
    }

    let stats = Arc::new(AttackStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = start_attack(ns, addr, stats.clone(), stop.clone());
    // Against a server that stops accepting, connects hang in the SYN queue:
    // probe anyway after a while (the probes then show it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while stats.open.load(Ordering::Relaxed) < IDLE + SLOW && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut latencies: Vec<(&str, Vec<Duration>)> = Vec::new();
    let mut failures = Vec::new();
    let shed_before = shed_so_far(ns, addr);
    if let Err(e) = &shed_before {
        failures.push(format!("/metrics (before probing): {e:#}"));
    }
    for path in ["/metrics", "/healthz"] {
        if !failures.is_empty() {
            break;
        }
        let mut times = Vec::with_capacity(PROBES);
        for _ in 0..PROBES {
            let (status, took) = timed_get(ns, addr, path);
            if status != Some(200) || took > ANSWER_WITHIN {
                failures.push(format!("{path}: {status:?} after {took:?}"));
                // One failure is enough; do not wait out every probe.
                break;
            }
            times.push(took);
        }
        latencies.push((path, times));
    }
    let shed_during = match (shed_so_far(ns, addr), shed_before) {
        (Ok(after), Ok(before)) => after - before,
        _ => 0.0,
    };
    stop.store(true, Ordering::Relaxed);
    attacker.join().unwrap();

    for (path, times) in &mut latencies {
        times.sort();
        if let (Some(first), Some(last)) = (times.first(), times.last()) {
            println!(
                "{path} under {IDLE} idle + {SLOW} slow-header connections: {} probes, \
                 min {first:?}, median {:?}, p90 {:?}, max {last:?}",
                times.len(),
                percentile(times, 50),
                percentile(times, 90),
            );
        }
    }
    println!(
        "attacker: {} connections closed by the daemon and reopened, {shed_during} shed \
         by the daemon while probing; {} connects failed",
        stats.closed_by_server.load(Ordering::Relaxed),
        stats.connect_failures.load(Ordering::Relaxed)
    );
    assert!(
        failures.is_empty(),
        "not answered within {ANSWER_WITHIN:?}: {failures:?}"
    );
    // The attack was in force during every probe: the daemon's table was full,
    // so each probe connection (at least) made it shed one.
    assert!(
        shed_during >= (2 * PROBES) as f64,
        "the daemon shed only {shed_during} connections while probing"
    );
    // And it counted at least the connections beyond its limit at the start.
    let shed_total = shed_so_far(ns, addr).unwrap();
    assert!(
        shed_total >= (IDLE + SLOW - tlsmon::http::MAX_CONNECTIONS) as f64,
        "shed in all: {shed_total}"
    );
    assert!(daemon.stop().unwrap().success(), "{}", daemon.log());
    let _ = std::fs::remove_dir_all(&logs);
}
