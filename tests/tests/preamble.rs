//! Handshakes behind a preamble (issue 13): a PROXY protocol header from
//! haproxy, an HTTP CONNECT or SOCKS exchange with a forward proxy. Live tests
//! run real stacks in namespaces and check the daemon's records against
//! `tlsmon analyze` of a capture of the same traffic (the differential harness);
//! capture-file tests check what analyze makes of hand-built connections (a
//! PROXY header split across segments, preambles that never turn into TLS); a
//! BPF_PROG_TEST_RUN test checks which first payloads the kernel follows.
//!
//! Needs root (namespaces, BPF), openssl, haproxy, curl and tcpdump.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use anyhow::{ensure, Context, Result};
use tlsmon::source::live::{Capture, CaptureOptions};
use tlsmon::source::segment::PacketDirection;
use tlsmon_tests::{
    binary::tlsmon_binary,
    differential::{observe, Record, Scratch},
    frames::{self, ACK, FIN, PSH, SYN},
    hostile::write_capture,
    is_root,
    netns::VethLink,
    pki::Pki,
    process::{run_checked, Background},
    root_or_skip,
    topology::{TwoPaths, NIC_B, PROXY_BACK, PROXY_FRONT, SERVER_B},
    two_path_scenario::wait_listening,
};

/// One test at a time: they share the daemon's metrics address and tlsmon's
/// interface lock.
static SERIAL: Mutex<()> = Mutex::new(());

const SERVER_NAME: &str = "server.test";
/// haproxy sends a PROXY v1 header to the backend on this port, v2 on the next.
const PORT_PROXY_V1: u16 = 8441;
const PORT_PROXY_V2: u16 = 8442;
/// The forward proxy (CONNECT and SOCKS) in the proxy namespace.
const PORT_FORWARD_PROXY: u16 = 3128;
/// The TLS server behind the forward proxy.
const PORT_TLS: u16 = 8443;
/// Client address on the proxy link (topology::TwoPaths).
const CLIENT_P: &str = "10.77.2.2";

fn setup(name: &str) -> Result<Option<MutexGuard<'static, ()>>> {
    if !root_or_skip(&format!("preamble {name}"))? {
        return Ok(None);
    }
    Ok(Some(SERIAL.lock().unwrap_or_else(|p| p.into_inner())))
}

fn field<'a>(record: &'a Record, name: &str) -> &'a serde_json::Value {
    record.fields.get(name).unwrap_or(&serde_json::Value::Null)
}

/// `openssl s_client` from `ns` with `args`, sending nothing; true when the
/// handshake completed (exit status 0).
fn s_client(ns: &tlsmon_tests::netns::Netns, args: &[&str]) -> Result<bool> {
    let status = ns
        .command("timeout")
        .args(["10", "openssl", "s_client", "-brief"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running openssl s_client")?;
    Ok(status.success())
}

/// haproxy as a load balancer (TCP mode) sending PROXY v1 and v2 headers to a
/// backend haproxy that accepts them and terminates TLS: every record on the
/// backend's interface names the real client, the balancer as the peer.
#[test]
fn proxy_protocol_v1_and_v2_from_haproxy() -> Result<()> {
    const PER_PORT: usize = 2;
    let Some(_serial) = setup("proxy_protocol")? else {
        return Ok(());
    };
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("preamble-proxy")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let net = TwoPaths::build()?;
    let pem = dir.join("haproxy.pem");
    std::fs::write(
        &pem,
        [std::fs::read(&pki.cert)?, std::fs::read(&pki.key)?].concat(),
    )?;
    let defaults = "defaults\n  timeout connect 5s\n  timeout client 30s\n  \
                    timeout server 30s\n  timeout http-request 30s\n";
    let backend_cfg = dir.join("backend.cfg");
    std::fs::write(
        &backend_cfg,
        format!(
            "global\n  maxconn 64\n{defaults}  mode http\nfrontend tls\n  \
             bind {SERVER_B}:{PORT_PROXY_V1} accept-proxy ssl crt {pem}\n  \
             bind {SERVER_B}:{PORT_PROXY_V2} accept-proxy ssl crt {pem}\n  \
             http-request return status 200\n",
            pem = pem.display()
        ),
    )?;
    let balancer_cfg = dir.join("balancer.cfg");
    std::fs::write(
        &balancer_cfg,
        format!(
            "global\n  maxconn 64\n{defaults}  mode tcp\n\
             listen v1\n  bind {PROXY_FRONT}:{PORT_PROXY_V1}\n  \
             server backend {SERVER_B}:{PORT_PROXY_V1} send-proxy\n\
             listen v2\n  bind {PROXY_FRONT}:{PORT_PROXY_V2}\n  \
             server backend {SERVER_B}:{PORT_PROXY_V2} send-proxy-v2\n"
        ),
    )?;
    let mut backend = {
        let mut cmd = net.server.command("haproxy");
        cmd.arg("-db").arg("-f").arg(&backend_cfg);
        Background::spawn("haproxy-backend", cmd, &dir)?
    };
    let mut balancer = {
        let mut cmd = net.proxy.command("haproxy");
        cmd.arg("-db").arg("-f").arg(&balancer_cfg);
        Background::spawn("haproxy-balancer", cmd, &dir)?
    };
    for port in [PORT_PROXY_V1, PORT_PROXY_V2] {
        wait_listening(&net.server, port, &mut backend)?;
        wait_listening(&net.proxy, port, &mut balancer)?;
    }
    let (seen, ()) = observe(&tlsmon, &net.server, &[NIC_B], &dir, || {
        for port in [PORT_PROXY_V1, PORT_PROXY_V2] {
            for _ in 0..PER_PORT {
                let target = format!("{PROXY_FRONT}:{port}");
                ensure!(
                    s_client(&net.client, &["-connect", &target])?,
                    "the handshake through {target} failed"
                );
            }
        }
        Ok(())
    })?;
    seen.check("proxy protocol", &[(NIC_B, 2 * PER_PORT)])?;
    let view = seen.device(NIC_B)?;
    for (name, records) in [("live", &view.live), ("offline", &view.offline)] {
        for (port, kind) in [(PORT_PROXY_V1, "proxy_v1"), (PORT_PROXY_V2, "proxy_v2")] {
            let of_port: Vec<&Record> = records
                .iter()
                .filter(|r| r.connection.server_port == port)
                .collect();
            ensure!(of_port.len() == PER_PORT, "{name}: {of_port:?}");
            for r in of_port {
                ensure!(
                    r.text("preamble") == Some(kind)
                        && r.text("outcome") == Some("established")
                        && r.connection.client_ip == CLIENT_P
                        && r.text("peer_ip") == Some(&PROXY_BACK.to_string())
                        && r.connection.server_ip == SERVER_B.to_string()
                        && field(r, "tunnel_target").is_null(),
                    "{name}: {}",
                    r.line()
                );
                // The client's port is its own, not the balancer's.
                ensure!(
                    field(r, "peer_port").as_u64() != Some(u64::from(r.connection.client_port)),
                    "{name}: {}",
                    r.line()
                );
            }
        }
    }
    scratch.passed();
    Ok(())
}

/// Clients going out through a forward proxy: OpenSSL's `s_client -proxy`
/// (HTTP CONNECT) and curl over SOCKS5 and SOCKS4, seen on the client's link.
#[test]
fn connect_and_socks_through_a_forward_proxy() -> Result<()> {
    let Some(_serial) = setup("forward_proxy")? else {
        return Ok(());
    };
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("preamble-forward")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let net = TwoPaths::build()?;
    let mut server = {
        let mut cmd = net.server.command("openssl");
        cmd.args(["s_server", "-quiet", "-www", "-accept"])
            .arg(PORT_TLS.to_string())
            .arg("-cert")
            .arg(&pki.cert)
            .arg("-key")
            .arg(&pki.key);
        Background::spawn("s_server", cmd, &dir)?
    };
    let mut proxy = {
        let mut cmd = net.proxy.command(env!("CARGO_BIN_EXE_tunnel-proxy"));
        cmd.arg("--listen")
            .arg(format!("{PROXY_FRONT}:{PORT_FORWARD_PROXY}"));
        Background::spawn("tunnel-proxy", cmd, &dir)?
    };
    wait_listening(&net.server, PORT_TLS, &mut server)?;
    wait_listening(&net.proxy, PORT_FORWARD_PROXY, &mut proxy)?;
    let proxy_addr = format!("{PROXY_FRONT}:{PORT_FORWARD_PROXY}");
    let target = format!("{SERVER_B}:{PORT_TLS}");
    let curl = |socks: &str| -> Result<()> {
        run_checked(
            net.client
                .command("timeout")
                .args([
                    "10",
                    "curl",
                    "-sS",
                    "-k",
                    "-o",
                    "/dev/null",
                    socks,
                    &proxy_addr,
                ])
                .arg(format!("https://{target}/")),
        )
        .map(|_| ())
    };
    let (seen, ()) = observe(&tlsmon, &net.client, &["cli-p"], &dir, || {
        ensure!(
            s_client(&net.client, &["-connect", &target, "-proxy", &proxy_addr])?,
            "the handshake through CONNECT failed"
        );
        curl("--socks5")?;
        curl("--socks4")?;
        Ok(())
    })?;
    seen.check("forward proxy", &[("cli-p", 3)])?;
    let view = seen.device("cli-p")?;
    for (name, records) in [("live", &view.live), ("offline", &view.offline)] {
        let mut kinds: Vec<&str> = records.iter().filter_map(|r| r.text("preamble")).collect();
        kinds.sort_unstable();
        ensure!(
            kinds == ["http_connect", "socks4", "socks5"],
            "{name}: preambles {kinds:?}"
        );
        for r in records.iter() {
            ensure!(
                r.text("tunnel_target") == Some(target.as_str())
                    && r.text("outcome") == Some("established")
                    && r.connection.client_ip == CLIENT_P
                    && r.connection.server_port == PORT_FORWARD_PROXY
                    && field(r, "peer_ip").is_null()
                    && r.text("direction").is_some(),
                "{name}: {}",
                r.line()
            );
        }
    }
    scratch.passed();
    Ok(())
}

/// `openssl s_client -starttls PROTO` against the scripted STARTTLS server on
/// each protocol's well-known port (the ports tlsmon follows by default), and
/// two servers that refuse the upgrade: every upgrade is a record with its
/// preamble, every refusal a `starttls_refused` failure.
#[test]
fn starttls_upgrades_and_refusals_with_openssl_s_client() -> Result<()> {
    const CASES: [(&str, u16, bool); 10] = [
        ("smtp", 25, false),
        ("imap", 143, false),
        ("pop3", 110, false),
        ("ftp", 21, false),
        ("xmpp", 5222, false),
        ("postgres", 5432, false),
        ("ldap", 389, false),
        ("mysql", 3306, false),
        ("smtp", 587, true),
        ("postgres", 5432, true),
    ];
    let Some(_serial) = setup("starttls")? else {
        return Ok(());
    };
    let tlsmon = tlsmon_binary()?;
    let mut scratch = Scratch::new("preamble-starttls")?;
    let dir = scratch.path().to_path_buf();
    let pki = Pki::generate(&dir, SERVER_NAME)?;
    let link = VethLink::new(213);
    let (seen, ()) = observe(&tlsmon, &link.server, &[&link.server_if], &dir, || {
        for (i, (protocol, port, refuse)) in CASES.iter().enumerate() {
            let mut server = {
                let mut cmd = link.server.command(env!("CARGO_BIN_EXE_starttls-server"));
                cmd.args(["--protocol", protocol, "--listen"])
                    .arg(format!("{}:{port}", link.server_ip))
                    .arg("--cert")
                    .arg(&pki.cert)
                    .arg("--key")
                    .arg(&pki.key);
                if *refuse {
                    cmd.arg("--refuse");
                }
                Background::spawn(&format!("starttls-{i}-{protocol}"), cmd, &dir)?
            };
            wait_listening(&link.server, *port, &mut server)?;
            let target = format!("{}:{port}", link.server_ip);
            let completed = s_client(&link.client, &["-starttls", protocol, "-connect", &target])?;
            ensure!(
                completed != *refuse,
                "s_client -starttls {protocol} completed={completed}"
            );
        }
        Ok(())
    })?;
    seen.check("starttls", &[(&link.server_if, CASES.len())])?;
    let view = seen.device(&link.server_if)?;
    for (name, records) in [("live", &view.live), ("offline", &view.offline)] {
        let mut got: Vec<(u16, String, String, String)> = records
            .iter()
            .map(|r| {
                (
                    r.connection.server_port,
                    r.text("preamble").unwrap_or("-").to_owned(),
                    r.text("outcome").unwrap_or("-").to_owned(),
                    r.text("failure_reason").unwrap_or("-").to_owned(),
                )
            })
            .collect();
        got.sort();
        let mut want: Vec<(u16, String, String, String)> = CASES
            .iter()
            .map(|(protocol, port, refuse)| {
                let (outcome, reason) = if *refuse {
                    ("failed", "starttls_refused")
                } else {
                    ("established", "-")
                };
                (
                    *port,
                    format!("starttls_{protocol}"),
                    outcome.to_owned(),
                    reason.to_owned(),
                )
            })
            .collect();
        want.sort();
        ensure!(got == want, "{name}: {got:?}");
        for r in records.iter() {
            ensure!(
                r.connection.client_ip == link.client_ip && r.text("direction") != Some("outbound"),
                "{name}: {}",
                r.line()
            );
        }
    }
    scratch.passed();
    Ok(())
}

/// One side's turn in a hand-built connection.
enum Turn<'a> {
    Client(&'a [u8]),
    Server(&'a [u8]),
}

/// Frames of a whole connection: handshake, the turns, FIN from both sides.
fn connection(client: SocketAddr, server: SocketAddr, turns: &[Turn<'_>]) -> Vec<Vec<u8>> {
    let (mut cseq, mut sseq) = (1000u32, 5000u32);
    let mut out = vec![
        frames::tcp(client, server, cseq, SYN, &[]),
        frames::syn_ack(server, client, sseq, cseq + 1, Default::default()),
    ];
    cseq += 1;
    sseq += 1;
    for turn in turns {
        match turn {
            Turn::Client(bytes) => {
                out.push(frames::tcp(client, server, cseq, ACK | PSH, bytes));
                cseq += bytes.len() as u32;
            }
            Turn::Server(bytes) => {
                out.push(frames::tcp(server, client, sseq, ACK | PSH, bytes));
                sseq += bytes.len() as u32;
            }
        }
    }
    out.push(frames::tcp(client, server, cseq, FIN | ACK, &[]));
    out.push(frames::tcp(server, client, sseq, FIN | ACK, &[]));
    out
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// What the capture test compares of a record: the TCP client port, preamble,
/// reported client, peer, tunnel target and alert.
type CaptureRow<'a> = (
    u16,
    Option<&'a str>,
    String,
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
);

/// What the STARTTLS capture test compares: client port, preamble, failure
/// reason and alert.
type StarttlsRow<'a> = (u16, Option<&'a str>, Option<&'a str>, Option<&'a str>);

/// `tlsmon analyze --format json` of `pcap`: its records and its summary.
fn analyze(pcap: &Path) -> Result<(Vec<Record>, String)> {
    let out = Command::new(tlsmon_binary()?)
        .args(["analyze", "--format", "json"])
        .arg(pcap)
        .stdin(Stdio::null())
        .output()
        .context("running tlsmon analyze")?;
    ensure!(out.status.success(), "analyze failed: {out:?}");
    let records = tlsmon_tests::differential::parse_lines(&String::from_utf8(out.stdout)?)?;
    Ok((records, String::from_utf8(out.stderr)?))
}

/// PROXY v1 split in the middle of an address, v2 in the ClientHello's segment,
/// CONNECT and SOCKS5 with their answers: each record names its preamble and
/// what it said. A CONNECT tunnel carrying plain HTTP, a refused CONNECT and a
/// PROXY line that never ends make no record and are counted.
#[test]
fn capture_files_through_analyze() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tlsmon-preamble-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let hello = frames::client_hello(300);
    // The server turns each ClientHello down with a fatal handshake_failure alert.
    let server_hello: &[u8] = &[21, 3, 3, 0, 2, 2, 40];
    let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.2 51000 443\r\n";
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 10, 0, 0, 2, 0xc7, 0x38, 0x01, 0xbb]);
    let v2_and_hello = [&v2[..], &hello].concat();
    let connect = b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n";
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let socks5_request = [
        &[5, 1, 0, 5, 1, 0, 3, 11][..],
        b"origin.test",
        &[0x01, 0xbb],
    ]
    .concat();
    let socks5_reply = [5, 0, 5, 0, 0, 1, 10, 0, 0, 3, 0x04, 0x38];
    let endless = [&b"PROXY TCP4 "[..], &[b'7'; 200]].concat();
    let balancer = "10.0.0.1";
    let mut frames = Vec::new();
    // 1. PROXY v1 cut after "PROXY TCP4 192.0", then the rest and the ClientHello.
    frames.extend(connection(
        sock(&format!("{balancer}:40001")),
        sock("10.0.0.2:443"),
        &[
            Turn::Client(&v1[..16]),
            Turn::Client(&[&v1[16..], &hello[..]].concat()),
            Turn::Server(server_hello),
        ],
    ));
    // 2. PROXY v2 and the ClientHello in one segment.
    frames.extend(connection(
        sock(&format!("{balancer}:40002")),
        sock("10.0.0.2:443"),
        &[Turn::Client(&v2_and_hello), Turn::Server(server_hello)],
    ));
    // 3. CONNECT, 200, ClientHello.
    frames.extend(connection(
        sock("10.0.0.9:40003"),
        sock("10.0.0.3:3128"),
        &[
            Turn::Client(connect),
            Turn::Server(established),
            Turn::Client(&hello),
            Turn::Server(server_hello),
        ],
    ));
    // 4. SOCKS5 greeting and request in one segment, both answers in one.
    frames.extend(connection(
        sock("10.0.0.9:40004"),
        sock("10.0.0.3:1080"),
        &[
            Turn::Client(&socks5_request),
            Turn::Server(&socks5_reply),
            Turn::Client(&hello),
            Turn::Server(server_hello),
        ],
    ));
    // 5. A CONNECT tunnel that carries plain HTTP: no TLS, no record.
    frames.extend(connection(
        sock("10.0.0.9:40005"),
        sock("10.0.0.3:3128"),
        &[
            Turn::Client(connect),
            Turn::Server(established),
            Turn::Client(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n"),
            Turn::Server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        ],
    ));
    // 6. A refused CONNECT.
    frames.extend(connection(
        sock("10.0.0.9:40006"),
        sock("10.0.0.3:3128"),
        &[
            Turn::Client(connect),
            Turn::Server(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"),
        ],
    ));
    // 7. A PROXY line that never ends (past the 107 bytes the specification allows).
    frames.extend(connection(
        sock(&format!("{balancer}:40007")),
        sock("10.0.0.2:443"),
        &[Turn::Client(&endless), Turn::Client(&hello)],
    ));
    let pcap = dir.join("preambles.pcap");
    write_capture(&pcap, &frames, Duration::from_secs(1_700_000_000))?;
    let (records, summary) = analyze(&pcap)?;
    let got: Vec<CaptureRow<'_>> = records
        .iter()
        .map(|r| {
            (
                r.tcp_connection().client_port,
                r.text("preamble"),
                format!("{}:{}", r.connection.client_ip, r.connection.client_port),
                r.text("peer_ip"),
                r.text("tunnel_target"),
                r.text("alert"),
            )
        })
        .collect();
    let refused = Some("handshake_failure");
    assert_eq!(
        got,
        vec![
            (
                40001,
                Some("proxy_v1"),
                "192.0.2.7:51000".into(),
                Some(balancer),
                None,
                refused
            ),
            (
                40002,
                Some("proxy_v2"),
                "198.51.100.9:51000".into(),
                Some(balancer),
                None,
                refused
            ),
            (
                40003,
                Some("http_connect"),
                "10.0.0.9:40003".into(),
                None,
                Some("origin.test:443"),
                refused
            ),
            (
                40004,
                Some("socks5"),
                "10.0.0.9:40004".into(),
                None,
                Some("origin.test:443"),
                refused
            ),
        ],
        "{summary}"
    );
    for r in &records {
        assert_eq!(r.fields["client_hello_bytes"], 295, "{}", r.line());
        assert_eq!(r.fields["client_hello_segments"], 1, "{}", r.line());
    }
    assert!(
        summary.contains("3 preambles without TLS"),
        "the three preambles without TLS must be counted: {summary}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// STARTTLS in a capture: an SMTP upgrade (the server speaks first), a refused
/// PostgreSQL SSLRequest (a `starttls_refused` record), and an SMTP session that
/// never upgrades (counted, no record).
#[test]
fn starttls_capture_files_through_analyze() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("tlsmon-starttls-capture-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let hello = frames::client_hello(300);
    let alert: &[u8] = &[21, 3, 3, 0, 2, 2, 40];
    let mut frames = Vec::new();
    frames.extend(connection(
        sock("10.0.0.9:40101"),
        sock("10.0.0.5:25"),
        &[
            Turn::Server(b"220 mx.test ESMTP\r\n"),
            Turn::Client(b"EHLO client.test\r\n"),
            Turn::Server(b"250-mx.test\r\n250 STARTTLS\r\n"),
            Turn::Client(b"STARTTLS\r\n"),
            Turn::Server(b"220 Ready to start TLS\r\n"),
            Turn::Client(&hello),
            Turn::Server(alert),
        ],
    ));
    frames.extend(connection(
        sock("10.0.0.9:40102"),
        sock("10.0.0.5:5432"),
        &[
            Turn::Client(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]),
            Turn::Server(b"N"),
        ],
    ));
    frames.extend(connection(
        sock("10.0.0.9:40103"),
        sock("10.0.0.5:25"),
        &[
            Turn::Server(b"220 mx.test ESMTP\r\n"),
            Turn::Client(b"HELO client.test\r\n"),
            Turn::Server(b"250 mx.test\r\n"),
            Turn::Client(b"QUIT\r\n"),
            Turn::Server(b"221 Bye\r\n"),
        ],
    ));
    let pcap = dir.join("starttls.pcap");
    write_capture(&pcap, &frames, Duration::from_secs(1_700_000_000))?;
    let (records, summary) = analyze(&pcap)?;
    let got: Vec<StarttlsRow<'_>> = records
        .iter()
        .map(|r| {
            (
                r.connection.client_port,
                r.text("preamble"),
                r.text("failure_reason"),
                r.text("alert"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                40101,
                Some("starttls_smtp"),
                Some("alert"),
                Some("handshake_failure")
            ),
            (
                40102,
                Some("starttls_postgres"),
                Some("starttls_refused"),
                None
            ),
        ],
        "{summary}"
    );
    assert_eq!(records[0].fields["client_hello_segments"], 1);
    assert_eq!(records[1].text("detail"), Some("the server answered \"N\""));
    assert_eq!(
        records[1].fields["diagnosis"]["code"],
        "starttls_refused",
        "{}",
        records[1].line()
    );
    assert!(summary.contains("1 preambles without TLS"), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The kernel follows a connection whose first client payload begins a PROXY
/// header, a CONNECT or a SOCKS request (counted as candidates) exactly as one
/// that begins a ClientHello, and nothing else that is not a ClientHello.
#[test]
fn the_kernel_follows_connections_that_begin_with_a_preamble() {
    if !is_root() {
        assert!(std::env::var_os("CI").is_none(), "CI must run this as root");
        eprintln!("SKIPPED: needs root (BPF)");
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let mut capture = Capture::load(CaptureOptions::default()).expect("loading the classifier");
    let server = sock("10.1.0.2:443");
    let firsts: [(&[u8], bool); 7] = [
        (b"PROXY TCP4 10.9.9.9 10.1.0.2 1234 443\r\n", true),
        (b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", true),
        (b"CONNECT a.test:443 HTTP/1.1\r\n\r\n", true),
        (&[5, 1, 0], true),
        (&[4, 1, 1, 187, 10, 0, 0, 1, 0], true),
        (b"GET / HTTP/1.1\r\n\r\n", false),
        (&[5, 1, 0, 0], false),
    ];
    for (i, (payload, followed)) in firsts.iter().enumerate() {
        let client = sock(&format!("10.1.0.1:{}", 41000 + i));
        let syn_ack = frames::syn_ack(server, client, 0, 100, Default::default());
        capture
            .test_run()
            .run_on_frame(&syn_ack, PacketDirection::Egress)
            .unwrap();
        let first = frames::tcp(client, server, 100, ACK | PSH, payload);
        capture
            .test_run()
            .run_on_frame(&first, PacketDirection::Ingress)
            .unwrap();
        let mut segments = Vec::new();
        capture.drain_segments(&mut segments);
        // The daemon's stand-in for the client's SYN carries no bytes.
        let copied: Vec<&[u8]> = segments
            .iter()
            .map(|s| s.payload.as_slice())
            .filter(|p| !p.is_empty())
            .collect();
        if *followed {
            assert_eq!(copied, vec![*payload], "case {i}");
        } else {
            assert!(copied.is_empty(), "case {i}: {copied:?}");
        }
    }
    let counters = capture.counters().unwrap();
    assert_eq!(
        (counters.preamble_candidates, counters.flows_started),
        (5, 5)
    );
}
