//! `tlsmon run` under a label-squatting attack: 10,000 real TCP connections each
//! carry a ClientHello of random code points no registry names (with GREASE) to a
//! listener that never answers; a genuine OpenSSL TLS 1.3 handshake after them must
//! still be labelled with its real version, cipher and group on `/metrics`, and an
//! SNI with ESC and NUL must be exported escaped.

use std::{
    collections::BTreeMap,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    binary::tlsmon_binary,
    exposition::Scrape,
    hostile::{HostileHello, SplitMix64},
    http_get,
    netns::{Netns, TestCert, VethLink},
    poll,
    process::Background,
};

/// Hostile connections made before the genuine handshake.
const HOSTILE_CONNECTIONS: usize = 10_000;
/// Longest the hostile connections may take, all together.
const HOSTILE_TIME_LIMIT: Duration = Duration::from_secs(240);
/// Port of the listener that accepts and never answers.
const SILENT_PORT: u16 = 4434;
/// Where the daemon serves /metrics, inside the server's namespace.
const LISTEN: &str = "127.0.0.1:9813";
/// The hostile SNI: ESC starts a terminal control sequence, NUL ends C strings.
const HOSTILE_SNI: &[u8] = b"evil\x1b[2J\x00.test";

/// The directory of the daemon's log, removed on drop (after the daemon stopped:
/// it is made first, so dropped last).
struct LogDir(std::path::PathBuf);

impl LogDir {
    fn new() -> LogDir {
        let dir = std::env::temp_dir().join(format!("tlsmon-labels-live-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        LogDir(dir)
    }
}

impl Drop for LogDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One scrape of /metrics, fetched inside `ns`.
fn scrape(ns: &Netns) -> Option<Scrape> {
    let addr: SocketAddr = LISTEN.parse().unwrap();
    let response = ns
        .run_inside(move || http_get::get(addr, "/metrics"))
        .ok()?;
    (response.status == 200).then(|| Scrape::parse(&response.body).expect("a valid exposition"))
}

/// Every sample of `name`, keyed by the values of `labels`; no key may repeat.
fn by_labels(scrape: &Scrape, name: &str, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
    let mut out = BTreeMap::new();
    for sample in scrape.select(name, &[]) {
        let key = labels.iter().map(|l| sample.labels[*l].clone()).collect();
        assert_eq!(out.insert(key, sample.value), None, "{sample:?} repeats");
    }
    out
}

fn key(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

/// Accepts connections on `listener` until `count` were accepted or `limit`
/// passed; reads each to its end and closes it without ever writing.
fn accept_silently(listener: TcpListener, count: usize, limit: Duration) -> usize {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    let mut accepted = 0;
    let mut sink = [0u8; 4096];
    while accepted < count && Instant::now() < deadline {
        match listener.accept() {
            Ok((mut stream, _)) => {
                accepted += 1;
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("accept on the silent listener: {e}"),
        }
    }
    accepted
}

#[test]
fn hostile_offers_cannot_change_how_the_daemon_labels_a_genuine_handshake() {
    let link = VethLink::new(95);
    let cert = TestCert::new();
    let logs = LogDir::new();

    let mut daemon_cmd = link
        .server
        .command(tlsmon_binary().unwrap().to_str().unwrap());
    daemon_cmd.args([
        "run",
        "--interface",
        &link.server_if,
        "--listen",
        LISTEN,
        "--label-sni",
    ]);
    let mut daemon = Background::spawn("tlsmon", daemon_cmd, &logs.0).unwrap();
    poll::until("the daemon to attach", Duration::from_secs(30), || {
        (tcx_programs_of_ours(&link.server, &link.server_if) == (1, 1)).then_some(())
    });
    poll::until("/metrics to answer", Duration::from_secs(30), || {
        scrape(&link.server)
    });

    // A socket belongs to the namespace it was made in: bind the listener inside
    // the server's, serve it from a plain thread.
    let silent: SocketAddr = format!("{}:{SILENT_PORT}", link.server_ip).parse().unwrap();
    let listener = link
        .server
        .run_inside(move || TcpListener::bind(silent))
        .unwrap();
    let acceptor =
        thread::spawn(move || accept_silently(listener, HOSTILE_CONNECTIONS, HOSTILE_TIME_LIMIT));

    let mut rng = SplitMix64::new(0x5eed_0001);
    let hellos: Vec<Vec<u8>> = (0..HOSTILE_CONNECTIONS)
        .map(|i| {
            let mut hello = HostileHello::random(&mut rng);
            if i == 0 {
                hello.sni = Some(HOSTILE_SNI.to_vec());
            }
            hello.record()
        })
        .collect();
    let started = Instant::now();
    let sent = link.client.run_inside(move || {
        let deadline = Instant::now() + HOSTILE_TIME_LIMIT;
        let mut sent = 0usize;
        for hello in &hellos {
            if Instant::now() >= deadline {
                break;
            }
            let mut stream = TcpStream::connect_timeout(&silent, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("hostile connection {sent}: {e}"));
            stream
                .write_all(hello)
                .unwrap_or_else(|e| panic!("hostile ClientHello {sent}: {e}"));
            // Dropping closes with a FIN: everything written was sent.
            sent += 1;
        }
        sent
    });
    let accepted = acceptor.join().unwrap();
    assert_eq!(
        (sent, accepted),
        (HOSTILE_CONNECTIONS, HOSTILE_CONNECTIONS),
        "hostile connections sent and accepted within {HOSTILE_TIME_LIMIT:?}"
    );
    eprintln!(
        "{HOSTILE_CONNECTIONS} hostile connections in {:?}",
        started.elapsed()
    );

    // Every hostile handshake is counted (closed by the client, never answered)
    // before the genuine one starts.
    poll::until(
        "the daemon to count every hostile handshake",
        Duration::from_secs(60),
        || {
            daemon.check_running().unwrap();
            let s = scrape(&link.server)?;
            (s.sum("tlsmon_handshakes_total", &[]) >= HOSTILE_CONNECTIONS as f64).then_some(())
        },
    );

    let _server = link.openssl_server(
        &cert,
        1,
        &[
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256",
            "-groups",
            "X25519",
        ],
    );
    let status = link.openssl_handshake(&[
        "-tls1_3",
        "-ciphersuites",
        "TLS_CHACHA20_POLY1305_SHA256",
        "-groups",
        "X25519",
        "-servername",
        "genuine.test",
    ]);
    assert_eq!(status.code(), Some(0), "s_client failed");

    let s = poll::until(
        "the genuine handshake on /metrics",
        Duration::from_secs(30),
        || {
            let s = scrape(&link.server)?;
            (s.sum("tlsmon_handshakes_total", &[("outcome", "established")]) >= 1.0).then_some(s)
        },
    );
    let device = link.server_if.as_str();
    let n = HOSTILE_CONNECTIONS as f64;
    assert_eq!(
        s.sum("tlsmon_capture_ringbuf_dropped_total", &[]),
        0.0,
        "events were lost: the counts below cannot be exact"
    );
    assert_eq!(
        by_labels(
            &s,
            "tlsmon_handshakes_total",
            &["device", "direction", "version", "cipher", "outcome"]
        ),
        BTreeMap::from([
            (key(&[device, "inbound", "", "", "failed"]), n),
            (
                key(&[
                    device,
                    "inbound",
                    "TLSv1.3",
                    "TLS_CHACHA20_POLY1305_SHA256",
                    "established"
                ]),
                1.0
            ),
        ])
    );
    assert_eq!(
        by_labels(
            &s,
            "tlsmon_handshake_failures_total",
            &["reason", "closed_by", "stage"]
        ),
        BTreeMap::from([(key(&["closed", "client", "before_server_hello"]), n)])
    );
    assert_eq!(
        by_labels(&s, "tlsmon_handshake_groups_total", &["group", "outcome"]),
        BTreeMap::from([(key(&["x25519", "established"]), 1.0)])
    );
    // Offered: each hostile ClientHello once as `unknown`, never GREASE or hex; the
    // genuine one's names once each (OpenSSL adds the renegotiation SCSV).
    assert_eq!(
        by_labels(
            &s,
            "tlsmon_client_hello_offered_versions_total",
            &["version"]
        ),
        BTreeMap::from([(key(&["TLSv1.3"]), 1.0), (key(&["unknown"]), n)])
    );
    assert_eq!(
        by_labels(&s, "tlsmon_client_hello_offered_ciphers_total", &["cipher"]),
        BTreeMap::from([
            (key(&["TLS_CHACHA20_POLY1305_SHA256"]), 1.0),
            (key(&["TLS_EMPTY_RENEGOTIATION_INFO_SCSV"]), 1.0),
            (key(&["unknown"]), n),
        ])
    );
    assert_eq!(
        by_labels(&s, "tlsmon_client_hello_offered_groups_total", &["group"]),
        BTreeMap::from([(key(&["x25519"]), 1.0), (key(&["unknown"]), n)])
    );
    // The hostile SNI arrives escaped (`\x1b`, `\x00`; the exposition's own
    // escaping is undone by the parser), and takes one slot of the SNI cap.
    assert_eq!(
        by_labels(&s, "tlsmon_handshakes_by_sni_total", &["sni", "outcome"]),
        BTreeMap::from([
            (key(&["", "failed"]), n - 1.0),
            (key(&[r"evil\x1b[2J\x00.test", "failed"]), 1.0),
            (key(&["genuine.test", "established"]), 1.0),
        ])
    );
    assert_eq!(
        by_labels(&s, "tlsmon_label_values_folded_total", &["label"]),
        BTreeMap::from([
            (key(&["device"]), 0.0),
            (key(&["service"]), 0.0),
            (key(&["sni"]), 0.0)
        ])
    );

    daemon.stop().unwrap();
}
