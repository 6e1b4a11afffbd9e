//! Live equals offline (issue 15): for each scenario, `tlsmon run` and tcpdump
//! watch the same interface while real TLS stacks make a known amount of
//! traffic; then the daemon's events file must agree, record for record, with
//! `tlsmon analyze` of the capture, and both must hold exactly the handshakes
//! that were made (see tests/src/differential.rs for what is compared).
//!
//! Scenarios: a burst of short connections forced to reuse client ports, hundreds
//! of concurrent handshakes from several client addresses, every kind of failure
//! of the two-path scenario, TLS 1.2 and 1.3 resumption, and a TCP proxy that
//! reuses its backend ports (front and back compared). `TLSMON_DIFF_SECONDS`
//! sets how long each s_time burst runs (default 3).
//!
//! Needs root (namespaces, BPF), openssl, gnutls-cli, haproxy and tcpdump.
//! Without root it is skipped, unless `CI` is set: then it fails.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{Arc, Barrier, Mutex, MutexGuard},
    time::Duration,
};
use tlsmon_tests::root_or_skip;

use anyhow::{ensure, Context, Result};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tlsmon_tests::{
    binary::tlsmon_binary,
    differential::{observe, port_reuse, restrict_ports, s_time, Record, Scratch},
    netns::{Netns, VethLink},
    pki::Pki,
    process::{run_bounded, Background},
    reset_server::ResetServer,
    topology::{TwoPaths, PROXY_FRONT, SERVER_B},
    two_path_scenario::wait_listening,
};

/// The scenarios are load tests: one at a time, so they do not slow each other.
static SERIAL: Mutex<()> = Mutex::new(());

const SERVER_NAME: &str = "server.test";
const TLS_PORT: u16 = 4433;
/// Ephemeral ports a client namespace may use in the reuse scenarios: with
/// thousands of connections each port must be used many times.
const CLIENT_PORTS: (u16, u16) = (40_000, 40_199);
/// Ephemeral ports of the proxy namespace (haproxy's backend connections).
const PROXY_PORTS: (u16, u16) = (50_000, 50_199);
/// The proxy's interfaces (named in tests/src/topology.rs): towards the clients
/// and towards the server.
const PROXY_CLIENT_SIDE: &str = "prx-c";
const PROXY_SERVER_SIDE: &str = "prx-s";

/// How long each `s_time` burst runs: `TLSMON_DIFF_SECONDS`, else 3 s (a few
/// thousand connections here, enough to reuse every allowed port many times).
fn burst_seconds() -> Result<u32> {
    match std::env::var("TLSMON_DIFF_SECONDS") {
        Ok(s) => s
            .parse()
            .ok()
            .filter(|n| (1..=600).contains(n))
            .with_context(|| format!("TLSMON_DIFF_SECONDS={s:?}: want 1 to 600")),
        Err(_) => Ok(3),
    }
}

/// The tlsmon binary and the serialisation guard, or `None` when the test must
/// be skipped (not root, outside CI).
fn setup(name: &str) -> Result<Option<(PathBuf, MutexGuard<'static, ()>)>> {
    if !root_or_skip(&format!("differential {name}"))? {
        return Ok(None);
    }
    let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Ok(Some((tlsmon_binary()?, serial)))
}

/// `openssl s_server -www` on [`TLS_PORT`] of `ns`: answers `GET /` with a page
/// and closes; a client that sends nothing just gets the handshake.
fn s_server_www(ns: &Netns, pki: &Pki, dir: &Path, extra: &[&str]) -> Result<Background> {
    let mut cmd = ns.command("openssl");
    cmd.args([
        "s_server",
        "-quiet",
        "-www",
        "-accept",
        &TLS_PORT.to_string(),
    ])
    .arg("-cert")
    .arg(&pki.cert)
    .arg("-key")
    .arg(&pki.key)
    .args(extra);
    let mut server = Background::spawn("s_server", cmd, dir)?;
    wait_listening(ns, TLS_PORT, &mut server)?;
    Ok(server)
}

fn server_addr(link: &VethLink) -> Result<SocketAddr> {
    Ok(SocketAddr::new(link.server_ip.parse()?, TLS_PORT))
}

/// Fails unless `records` show fewer client ports than connections, all from
/// the restricted range.
fn ensure_ports_reused(what: &str, records: &[Record], range: (u16, u16)) -> Result<()> {
    let (connections, ports) = port_reuse(records);
    eprintln!("{what}: {connections} connections from {ports} distinct client ports");
    let outside = records
        .iter()
        .filter(|r| !(range.0..=range.1).contains(&r.connection.client_port))
        .count();
    ensure!(
        outside == 0,
        "{what}: {outside} connections from ports outside {range:?}"
    );
    ensure!(
        connections >= 2 * ports,
        "{what}: {connections} connections from {ports} ports: too little port reuse to test it"
    );
    Ok(())
}

/// Thousands of short TLS 1.3 connections (`s_time -new`) from a client limited
/// to 200 ephemeral ports: every port carries many handshakes, one after
/// another, and each must be recorded live as in the capture.
#[test]
fn burst_with_client_port_reuse() -> Result<()> {
    let Some((tlsmon, _serial)) = setup("burst")? else {
        return Ok(());
    };
    let mut scratch = Scratch::new("burst")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    // Declared before the processes, so it is dropped after them.
    let link = VethLink::new(151);
    restrict_ports(&link.client, CLIENT_PORTS.0, CLIENT_PORTS.1)?;
    let _server = s_server_www(&link.server, &pki, &dir, &[])?;
    let target = server_addr(&link)?;
    let seconds = burst_seconds()?;
    let (seen, made) = observe(&tlsmon, &link.server, &[&link.server_if], &dir, || {
        s_time(&link.client, target, seconds, &["-new"])
    })?;
    eprintln!(
        "burst: s_time made {} connections in {seconds} s",
        made.connections
    );
    ensure_ports_reused(
        "burst",
        &seen.device(&link.server_if)?.offline,
        CLIENT_PORTS,
    )?;
    seen.check("burst", &[(&link.server_if, made.connections)])?;
    scratch.passed();
    Ok(())
}

/// A rustls client connection bound to `source`, connected to `target`.
fn connect_from(source: Ipv4Addr, target: SocketAddr) -> Result<std::net::TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(IpAddr::V4(source), 0).into())?;
    socket.connect_timeout(&target.into(), Duration::from_secs(10))?;
    let stream: std::net::TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(stream)
}

fn rustls_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Handshakes from `sources` x `per_source` client threads, all started at once
/// and all held open until every one has finished; returns how many completed.
fn concurrent_handshakes(
    sources: &[Ipv4Addr],
    per_source: usize,
    target: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<usize> {
    let total = sources.len() * per_source;
    // Every thread reaches both barriers whatever happened to it, so a failure
    // cannot leave the others waiting.
    let start = Arc::new(Barrier::new(total));
    let done = Arc::new(Barrier::new(total));
    let mut threads = Vec::new();
    for source in sources.iter().copied() {
        for _ in 0..per_source {
            let (start, done, config) = (start.clone(), done.clone(), config.clone());
            threads.push(std::thread::spawn(move || -> Result<()> {
                let stream = connect_from(source, target);
                start.wait();
                let handshake = stream.and_then(|stream| {
                    let name = ServerName::try_from(SERVER_NAME)?;
                    let conn = rustls::ClientConnection::new(config, name)?;
                    let mut tls = rustls::StreamOwned::new(conn, stream);
                    while tls.conn.is_handshaking() {
                        tls.conn.complete_io(&mut tls.sock)?;
                    }
                    Ok(tls)
                });
                done.wait();
                handshake.map(drop)
            }));
        }
    }
    let mut completed = 0;
    let mut errors = Vec::new();
    for t in threads {
        match t.join() {
            Ok(Ok(())) => completed += 1,
            Ok(Err(e)) => errors.push(format!("{e:#}")),
            Err(_) => errors.push("client thread panicked".into()),
        }
    }
    ensure!(
        errors.is_empty(),
        "{} of {total} handshakes failed, e.g. {}",
        errors.len(),
        errors[0]
    );
    Ok(completed)
}

/// The most handshakes in progress at one time, from the capture's records
/// (each from its ClientHello for `duration_ms`).
fn peak_in_progress(records: &[Record]) -> Result<usize> {
    let mut edges = Vec::new();
    for r in records {
        let duration = r
            .fields
            .get("duration_ms")
            .and_then(serde_json::Value::as_f64)
            .with_context(|| format!("no duration: {}", r.line()))?;
        edges.push((r.ts, 1i64));
        edges.push((r.ts + Duration::from_secs_f64(duration / 1000.0), -1i64));
    }
    // Ends sort before starts at the same instant.
    edges.sort();
    let (mut now, mut peak) = (0i64, 0i64);
    for (_, step) in edges {
        now += step;
        peak = peak.max(now);
    }
    Ok(usize::try_from(peak)?)
}

/// Hundreds of rustls handshakes at once from four client addresses against
/// haproxy terminating TLS (it serves connections concurrently).
#[test]
fn hundreds_of_concurrent_handshakes_from_several_clients() -> Result<()> {
    const PER_SOURCE: usize = 75;
    let Some((tlsmon, _serial)) = setup("concurrent")? else {
        return Ok(());
    };
    let mut scratch = Scratch::new("concurrent")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let link = VethLink::new(152);
    let mut sources = vec![link.client_ip.parse::<Ipv4Addr>()?];
    for host in 3..=5 {
        let ip = Ipv4Addr::new(10, 77, 152, host);
        link.client.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            &link.client_if,
        ]);
        sources.push(ip);
    }
    // haproxy wants the certificate and its key in one file.
    let pem = dir.join("haproxy.pem");
    std::fs::write(
        &pem,
        [std::fs::read(&pki.cert)?, std::fs::read(&pki.key)?].concat(),
    )?;
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 4096\ndefaults\n  mode http\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\n  timeout http-request 30s\n\
             frontend tls\n  bind {}:{TLS_PORT} ssl crt {}\n  \
             http-request return status 200\n",
            link.server_ip,
            pem.display()
        ),
    )?;
    let mut haproxy = {
        let mut cmd = link.server.command("haproxy");
        cmd.arg("-db").arg("-f").arg(&config);
        Background::spawn("haproxy", cmd, &dir)?
    };
    wait_listening(&link.server, TLS_PORT, &mut haproxy)?;
    let target = server_addr(&link)?;
    let client_config = rustls_config(&pki.ca)?;
    let total = sources.len() * PER_SOURCE;
    let (seen, completed) = observe(&tlsmon, &link.server, &[&link.server_if], &dir, || {
        let sources = sources.clone();
        link.client
            .run_inside(move || concurrent_handshakes(&sources, PER_SOURCE, target, client_config))
    })?;
    ensure!(
        completed == total,
        "{completed} of {total} handshakes completed"
    );
    let view = seen.device(&link.server_if)?;
    let peak = peak_in_progress(&view.offline)?;
    eprintln!(
        "concurrent: {total} handshakes from {} addresses, at most {peak} in progress at once",
        sources.len()
    );
    let clients: std::collections::BTreeSet<&str> = view
        .offline
        .iter()
        .map(|r| r.connection.client_ip.as_str())
        .collect();
    ensure!(
        clients.len() == sources.len(),
        "client addresses in the capture: {clients:?}"
    );
    ensure!(
        peak >= 100,
        "only {peak} handshakes were in progress at once"
    );
    seen.check("concurrent", &[(&link.server_if, total)])?;
    scratch.passed();
    Ok(())
}

/// Ephemeral ports of the failure mix's client: few, so that connections after
/// failures of every kind reuse 4-tuples too.
const MIX_PORTS: (u16, u16) = (40_000, 40_015);

/// Server ports of the failure mix.
const PORT_OK: u16 = 4431;
const PORT_TLS13_ONLY: u16 = 4432;
const PORT_ONE_CIPHER: u16 = 4433;
const PORT_RESET: u16 = 4434;

/// How a case's handshake must end, as the capture records it.
#[derive(Debug, Clone, Copy)]
struct Ending {
    outcome: &'static str,
    failure_reason: Option<&'static str>,
    /// `None` where the alert's name depends on the OpenSSL build (see the case).
    alert: Option<&'static str>,
    alert_sender: Option<&'static str>,
}

const ESTABLISHED: Ending = Ending {
    outcome: "established",
    failure_reason: None,
    alert: None,
    alert_sender: None,
};

const fn alert(name: &'static str, sender: &'static str) -> Ending {
    Ending {
        outcome: "failed",
        failure_reason: Some("alert"),
        alert: Some(name),
        alert_sender: Some(sender),
    }
}

struct Case {
    what: &'static str,
    times: usize,
    args: Vec<String>,
    succeeds: bool,
    ending: Ending,
}

fn failure_cases(pki: &Pki, server: &str) -> Vec<Case> {
    let s_client = |port: u16, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["openssl", "s_client", "-connect"].map(String::from).into();
        v.push(format!("{server}:{port}"));
        v.extend(["-servername", SERVER_NAME].map(String::from));
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let ca = pki.ca.display().to_string();
    let other_ca = pki.other_ca.display().to_string();
    let verify = |ca: &str| ["-CAfile", ca, "-verify_return_error"].map(String::from);
    let with = |mut v: Vec<String>, tail: [String; 3]| {
        v.extend(tail);
        v
    };
    vec![
        Case {
            what: "openssl TLS 1.3",
            times: 3,
            args: with(s_client(PORT_OK, &["-tls1_3"]), verify(&ca)),
            succeeds: true,
            ending: ESTABLISHED,
        },
        Case {
            what: "openssl TLS 1.2",
            times: 3,
            args: with(s_client(PORT_OK, &["-tls1_2"]), verify(&ca)),
            succeeds: true,
            ending: ESTABLISHED,
        },
        Case {
            what: "gnutls TLS 1.3",
            times: 2,
            args: vec![
                "gnutls-cli".into(),
                format!("--x509cafile={ca}"),
                "--priority=NORMAL:-VERS-ALL:+VERS-TLS1.3".into(),
                format!("--port={PORT_OK}"),
                format!("--sni-hostname={SERVER_NAME}"),
                format!("--verify-hostname={SERVER_NAME}"),
                server.to_owned(),
            ],
            succeeds: true,
            ending: ESTABLISHED,
        },
        Case {
            what: "version mismatch: TLS 1.2 client, TLS 1.3-only server",
            times: 3,
            args: s_client(PORT_TLS13_ONLY, &["-tls1_2"]),
            succeeds: false,
            ending: alert("protocol_version", "server"),
        },
        Case {
            what: "cipher mismatch: no shared TLS 1.2 suite",
            times: 3,
            args: s_client(
                PORT_ONE_CIPHER,
                &["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"],
            ),
            succeeds: false,
            ending: alert("handshake_failure", "server"),
        },
        Case {
            what: "reset after the ClientHello",
            times: 3,
            args: s_client(
                PORT_RESET,
                &[
                    "-min_protocol",
                    "TLSv1",
                    "-max_protocol",
                    "TLSv1.3",
                    "-cipher",
                    "DEFAULT@SECLEVEL=0",
                ],
            ),
            succeeds: false,
            ending: Ending {
                outcome: "failed",
                failure_reason: Some("reset"),
                alert: None,
                alert_sender: None,
            },
        },
        Case {
            what: "client rejects the certificate (TLS 1.2)",
            times: 3,
            args: with(s_client(PORT_OK, &["-tls1_2"]), verify(&other_ca)),
            succeeds: false,
            ending: alert("unknown_ca", "client"),
        },
        Case {
            what: "client rejects the certificate (TLS 1.3, alert in the clear)",
            times: 3,
            args: with(s_client(PORT_OK, &["-tls1_3"]), verify(&other_ca)),
            succeeds: false,
            ending: alert("unknown_ca", "client"),
        },
        Case {
            // Which alert the server sends depends on the OpenSSL build's
            // security level (protocol_version, or internal_error when TLS 1.0
            // has no usable signature algorithm left): only its sender is fixed.
            what: "TLS 1.0-only client",
            times: 3,
            args: s_client(PORT_OK, &["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]),
            succeeds: false,
            ending: Ending {
                outcome: "failed",
                failure_reason: Some("alert"),
                alert: None,
                alert_sender: Some("server"),
            },
        },
    ]
}

/// How a capture record says the handshake ended. The alert's name is blanked
/// for a ClientHello offering only TLS 1.0 (the case whose alert depends on the
/// OpenSSL build).
fn ending_of(r: &Record) -> (String, String, String, String) {
    let f = |name: &str| r.text(name).unwrap_or("").to_owned();
    let tls10_only = r.fields.get("offered_versions") == Some(&serde_json::json!(["TLSv1.0"]));
    let alert = if tls10_only {
        String::new()
    } else {
        f("alert")
    };
    (f("outcome"), f("failure_reason"), alert, f("alert_sender"))
}

/// Every failure kind of the two-path scenario, and successes, on one link.
#[test]
fn every_failure_kind() -> Result<()> {
    let Some((tlsmon, _serial)) = setup("failures")? else {
        return Ok(());
    };
    let mut scratch = Scratch::new("failures")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let link = VethLink::new(153);
    restrict_ports(&link.client, MIX_PORTS.0, MIX_PORTS.1)?;
    let (cert, key) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
    );
    let s_server = |port: u16, extra: &[&str]| {
        let mut cmd = link.server.command("openssl");
        cmd.args(["s_server", "-quiet", "-accept", &port.to_string()])
            .args(["-cert", &cert, "-key", &key])
            .args(extra);
        cmd
    };
    let mut servers = vec![
        (
            PORT_OK,
            Background::spawn(
                "s_server-ok",
                s_server(
                    PORT_OK,
                    &[
                        "-ciphersuites",
                        "TLS_AES_128_GCM_SHA256",
                        "-cipher",
                        "ECDHE-RSA-AES128-GCM-SHA256",
                    ],
                ),
                &dir,
            )?,
        ),
        (
            PORT_TLS13_ONLY,
            Background::spawn(
                "s_server-tls13",
                s_server(PORT_TLS13_ONLY, &["-tls1_3"]),
                &dir,
            )?,
        ),
        (
            PORT_ONE_CIPHER,
            Background::spawn(
                "s_server-one-cipher",
                s_server(
                    PORT_ONE_CIPHER,
                    &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-GCM-SHA256"],
                ),
                &dir,
            )?,
        ),
    ];
    for (port, server) in &mut servers {
        wait_listening(&link.server, *port, server)?;
    }
    let reset_server = ResetServer::start(
        &link.server,
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT_RESET)),
    )?;
    let cases = failure_cases(&pki, &link.server_ip);
    let total: usize = cases.iter().map(|c| c.times).sum();
    let (seen, ()) = observe(&tlsmon, &link.server, &[&link.server_if], &dir, || {
        // Round-robin over the cases, so failures of every kind interleave.
        let rounds = cases.iter().map(|c| c.times).max().unwrap_or(0);
        for round in 0..rounds {
            for case in cases.iter().filter(|c| c.times > round) {
                let mut cmd = link.client.command(&case.args[0]);
                cmd.args(&case.args[1..]);
                let (status, output) = run_bounded(cmd, Duration::from_secs(20))?;
                ensure!(
                    status.success() == case.succeeds,
                    "{}: client exited {status}; output:\n{output}",
                    case.what
                );
            }
        }
        Ok(())
    })?;
    let resets = cases
        .iter()
        .filter(|c| c.ending.failure_reason == Some("reset"))
        .map(|c| c.times as u64)
        .sum::<u64>();
    ensure!(
        reset_server.resets() == resets,
        "the reset server reset {} connections",
        reset_server.resets()
    );
    // The capture shows exactly the endings the cases make.
    let mut want: Vec<(String, String, String, String)> = cases
        .iter()
        .flat_map(|c| {
            let e = c.ending;
            let t = (
                e.outcome.to_owned(),
                e.failure_reason.unwrap_or("").to_owned(),
                e.alert.unwrap_or("").to_owned(),
                e.alert_sender.unwrap_or("").to_owned(),
            );
            std::iter::repeat_n(t, c.times)
        })
        .collect();
    let view = seen.device(&link.server_if)?;
    let mut got: Vec<_> = view.offline.iter().map(ending_of).collect();
    want.sort();
    got.sort();
    ensure!(
        got == want,
        "endings in the capture:\n{got:?}\nwanted:\n{want:?}"
    );
    let (connections, ports) = port_reuse(&view.offline);
    eprintln!("failures: {connections} connections from {ports} distinct client ports");
    ensure!(connections > ports, "no client port was reused");
    seen.check("failures", &[(&link.server_if, total)])?;
    scratch.passed();
    Ok(())
}

/// Session resumption in TLS 1.2 (session id or ticket) and TLS 1.3 (PSK), as
/// `s_time -reuse` makes it: one full handshake, then resumed ones.
#[test]
fn resumption_in_tls_1_2_and_1_3() -> Result<()> {
    let Some((tlsmon, _serial)) = setup("resumption")? else {
        return Ok(());
    };
    let mut scratch = Scratch::new("resumption")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let link = VethLink::new(154);
    let _server = s_server_www(&link.server, &pki, &dir, &[])?;
    let target = server_addr(&link)?;
    let (seen, runs) = observe(&tlsmon, &link.server, &[&link.server_if], &dir, || {
        ["-tls1_2", "-tls1_3"]
            .into_iter()
            .map(|version| {
                // -www: reading the page also reads TLS 1.3's session tickets.
                s_time(&link.client, target, 1, &["-reuse", "-www", "/", version])
            })
            .collect::<Result<Vec<_>>>()
    })?;
    // s_time -reuse makes one full handshake before its timed loop.
    let total: usize = runs.iter().map(|r| r.connections + 1).sum();
    let resumed: usize = runs.iter().map(|r| r.resumed).sum();
    let view = seen.device(&link.server_if)?;
    let resumed_seen = view
        .offline
        .iter()
        .filter(|r| r.fields.get("resumed") == Some(&serde_json::Value::Bool(true)))
        .count();
    eprintln!("resumption: {total} connections, s_time says {resumed} resumed, the capture {resumed_seen}");
    ensure!(resumed > 0, "s_time resumed no session");
    ensure!(
        resumed_seen == resumed,
        "the capture shows {resumed_seen} resumed handshakes, s_time made {resumed}"
    );
    for version in ["TLSv1.2", "TLSv1.3"] {
        ensure!(
            view.offline
                .iter()
                .any(|r| r.text("version") == Some(version)
                    && r.fields.get("resumed") == Some(&serde_json::Value::Bool(true))),
            "no resumed {version} handshake"
        );
    }
    seen.check("resumption", &[(&link.server_if, total)])?;
    scratch.passed();
    Ok(())
}

/// haproxy in TCP mode between clients and server, both sides limited to 200
/// ephemeral ports: the client reuses its ports towards the proxy, and the
/// proxy its ports towards the server. Both proxy interfaces are compared.
#[test]
fn proxy_reusing_backend_ports() -> Result<()> {
    let Some((tlsmon, _serial)) = setup("proxy")? else {
        return Ok(());
    };
    let mut scratch = Scratch::new("proxy")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let net = TwoPaths::build()?;
    restrict_ports(&net.client, CLIENT_PORTS.0, CLIENT_PORTS.1)?;
    restrict_ports(&net.proxy, PROXY_PORTS.0, PROXY_PORTS.1)?;
    let _server = s_server_www(&net.server, &pki, &dir, &[])?;
    // nolinger: haproxy resets instead of closing, so its backend ports do not
    // wait in TIME_WAIT and 200 of them suffice for thousands of connections.
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 1024\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 30s\n  timeout server 30s\nlisten tls\n  \
             bind {PROXY_FRONT}:{TLS_PORT}\n  option nolinger\n  \
             server backend {SERVER_B}:{TLS_PORT}\n"
        ),
    )?;
    let mut haproxy = {
        let mut cmd = net.proxy.command("haproxy");
        cmd.arg("-db").arg("-f").arg(&config);
        Background::spawn("haproxy", cmd, &dir)?
    };
    wait_listening(&net.proxy, TLS_PORT, &mut haproxy)?;
    let target = SocketAddr::from((PROXY_FRONT, TLS_PORT));
    let seconds = burst_seconds()?;
    let interfaces = [PROXY_CLIENT_SIDE, PROXY_SERVER_SIDE];
    let (seen, made) = observe(&tlsmon, &net.proxy, &interfaces, &dir, || {
        s_time(&net.client, target, seconds, &["-new"])
    })?;
    eprintln!(
        "proxy: s_time made {} connections in {seconds} s",
        made.connections
    );
    ensure_ports_reused(
        "proxy, client side",
        &seen.device(PROXY_CLIENT_SIDE)?.offline,
        CLIENT_PORTS,
    )?;
    ensure_ports_reused(
        "proxy, server side",
        &seen.device(PROXY_SERVER_SIDE)?.offline,
        PROXY_PORTS,
    )?;
    seen.check(
        "proxy",
        &[
            (PROXY_CLIENT_SIDE, made.connections),
            (PROXY_SERVER_SIDE, made.connections),
        ],
    )?;
    scratch.passed();
    Ok(())
}
