//! The world of the two-path scenario (issue 4), shared by the tests that need
//! real traffic through it: TLS servers from OpenSSL on the server host, a reset
//! server, haproxy in the proxy namespace, and a known mix of client connections
//! from real TLS stacks (OpenSSL, GnuTLS; successes, protocol_version and
//! handshake_failure alerts, a reset after the ClientHello, a client rejecting the
//! certificate, a TLS 1.1-only client), direct over NIC A and proxied over NIC B,
//! each failure with the diagnosis tlsmon must give it.
//!
//! `tests/tests/two_paths.rs` checks tlsmon's counts against [`cases`];
//! `tests/tests/dashboard.rs` lets Prometheus scrape the same traffic.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{ensure, Result};
use tlsmon::commands::capture_files::{analyze_file, AnalyzeOptions};
use tlsmon::event::Outcome;

use crate::{
    netns::Netns,
    pki::Pki,
    process::{poll, run_bounded, run_checked, Background},
    reset_server::ResetServer,
    topology::{TwoPaths, NIC_A, NIC_B, PROXY_FRONT, SERVER_A, SERVER_B},
};

/// The name every client sends (SNI) and the server certificate carries.
pub const SERVER_NAME: &str = "server.test";
/// Accepts TLS 1.2 and 1.3, one suite each, so the negotiated names are known.
pub const PORT_OK: u16 = 4431;
/// TLS 1.3 only: a TLS 1.2 client gets a protocol_version alert.
pub const PORT_TLS13_ONLY: u16 = 4432;
/// TLS 1.2 with one cipher suite: a client without it gets handshake_failure.
pub const PORT_ONE_CIPHER: u16 = 4433;
/// Resets the connection after reading the ClientHello.
pub const PORT_RESET: u16 = 4434;

/// The one TLS 1.3 suite the servers accept.
pub const TLS13_SUITE: &str = "TLS_AES_128_GCM_SHA256";
/// The one TLS 1.2 suite the servers accept.
pub const TLS12_SUITE: &str = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";

/// Which way a client reaches the server.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the server over NIC A.
    Direct,
    /// Through haproxy, reaching the server over NIC B.
    Proxied,
}

/// How a failed handshake must show up in `tlsmon_handshake_failures_total`.
#[derive(Clone, Copy)]
pub struct Failure {
    /// `reason` label.
    pub reason: &'static str,
    /// `alert` label.
    pub alert: &'static str,
    /// `alert_sender` label.
    pub alert_sender: &'static str,
    /// `closed_by` label.
    pub closed_by: &'static str,
    /// `stage` label.
    pub stage: &'static str,
    /// The diagnosis code the event and `tlsmon_handshake_diagnoses_total` carry.
    pub diagnosis: &'static str,
    /// Text its summary or evidence must contain (what it names).
    pub names: &'static str,
}

/// One kind of client connection, run `times` times.
pub struct Case {
    /// What the case is, for failure messages.
    pub what: &'static str,
    /// Direct or through the proxy.
    pub route: Route,
    /// How many connections of this kind.
    pub times: u32,
    /// The client program and its arguments (`{addr}` and `{port}` filled in).
    pub client: Vec<String>,
    /// The server port it connects to.
    pub port: u16,
    /// Whether the client must exit 0 (handshake done) or not.
    pub client_succeeds: bool,
    /// Versions its ClientHello offers.
    pub offers: &'static [&'static str],
    /// Expected `version` label ("" when never chosen).
    pub version: &'static str,
    /// Expected `cipher` label ("" when never chosen).
    pub cipher: &'static str,
    /// How it fails, if it does.
    pub failure: Option<Failure>,
}

fn openssl(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "openssl",
        "s_client",
        "-connect",
        "{addr}:{port}",
        "-servername",
        SERVER_NAME,
    ]
    .map(String::from)
    .into();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// The connection mix, in the order it is made.
pub fn cases(pki: &Pki) -> Vec<Case> {
    let ca = pki.ca.display().to_string();
    let other_ca = pki.other_ca.display().to_string();
    let verify = |ca: &str| {
        vec![
            "-CAfile".to_owned(),
            ca.to_owned(),
            "-verify_return_error".to_owned(),
        ]
    };
    let with = |base: &[&str], tail: Vec<String>| {
        let mut v = openssl(base);
        v.extend(tail);
        v
    };
    let gnutls = vec![
        "gnutls-cli".to_owned(),
        format!("--x509cafile={ca}"),
        "--priority=NORMAL:-VERS-ALL:+VERS-TLS1.3".to_owned(),
        "--port={port}".to_owned(),
        format!("--sni-hostname={SERVER_NAME}"),
        format!("--verify-hostname={SERVER_NAME}"),
        "{addr}".to_owned(),
    ];
    let mut all = Vec::new();
    for route in [Route::Direct, Route::Proxied] {
        all.push(Case {
            what: "openssl TLS 1.3, established",
            route,
            times: 2,
            client: with(&["-tls1_3"], verify(&ca)),
            port: PORT_OK,
            client_succeeds: true,
            offers: &["TLSv1.3"],
            version: "TLSv1.3",
            cipher: TLS13_SUITE,
            failure: None,
        });
        all.push(Case {
            what: "openssl TLS 1.2, established",
            route,
            times: 2,
            client: with(&["-tls1_2"], verify(&ca)),
            port: PORT_OK,
            client_succeeds: true,
            offers: &["TLSv1.2"],
            version: "TLSv1.2",
            cipher: TLS12_SUITE,
            failure: None,
        });
        all.push(Case {
            what: "gnutls TLS 1.3, established",
            route,
            times: 1,
            client: gnutls.clone(),
            port: PORT_OK,
            client_succeeds: true,
            offers: &["TLSv1.3"],
            version: "TLSv1.3",
            cipher: TLS13_SUITE,
            failure: None,
        });
    }
    let before = "before_server_hello";
    all.push(Case {
        what: "TLS 1.2 client, TLS 1.3-only server: protocol_version from server",
        route: Route::Proxied,
        times: 2,
        client: openssl(&["-tls1_2"]),
        port: PORT_TLS13_ONLY,
        client_succeeds: false,
        offers: &["TLSv1.2"],
        version: "",
        cipher: "",
        failure: Some(Failure {
            reason: "alert",
            alert: "protocol_version",
            alert_sender: "server",
            closed_by: "",
            stage: before,
            diagnosis: "no_shared_version",
            names: "at most TLSv1.2",
        }),
    });
    // The one-cipher server succeeds once first, so tlsmon learns which suite it
    // chooses and can name it when the next clients offer none of it.
    all.push(Case {
        what: "openssl TLS 1.2 with the one-cipher server's suite, established",
        route: Route::Proxied,
        times: 1,
        client: with(&["-tls1_2"], verify(&ca)),
        port: PORT_ONE_CIPHER,
        client_succeeds: true,
        offers: &["TLSv1.2"],
        version: "TLSv1.2",
        cipher: TLS12_SUITE,
        failure: None,
    });
    all.push(Case {
        what: "no shared cipher suite: handshake_failure from server",
        route: Route::Proxied,
        times: 3,
        client: openssl(&["-tls1_2", "-cipher", "ECDHE-RSA-CHACHA20-POLY1305"]),
        port: PORT_ONE_CIPHER,
        client_succeeds: false,
        offers: &["TLSv1.2"],
        version: "",
        cipher: "",
        failure: Some(Failure {
            reason: "alert",
            alert: "handshake_failure",
            alert_sender: "server",
            closed_by: "",
            stage: before,
            diagnosis: "no_shared_cipher",
            names: TLS12_SUITE,
        }),
    });
    all.push(Case {
        what: "TLS 1.1-only client: handshake_failure from server (no TLS 1.1 suite there)",
        route: Route::Proxied,
        times: 1,
        // TLS 1.1 needs security level 0 in OpenSSL 3.
        client: openssl(&["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
        port: PORT_OK,
        client_succeeds: false,
        offers: &["TLSv1.1"],
        version: "",
        cipher: "",
        failure: Some(Failure {
            reason: "alert",
            alert: "handshake_failure",
            alert_sender: "server",
            closed_by: "",
            stage: before,
            diagnosis: "no_shared_version",
            names: "at most TLSv1.1",
        }),
    });
    all.push(Case {
        what: "server resets after the ClientHello (a legacy client offering TLS 1.0 too)",
        route: Route::Proxied,
        times: 1,
        // Every version from TLS 1.0 up, whatever the system's openssl.cnf says.
        client: openssl(&[
            "-min_protocol",
            "TLSv1",
            "-max_protocol",
            "TLSv1.3",
            "-cipher",
            "DEFAULT@SECLEVEL=0",
        ]),
        port: PORT_RESET,
        client_succeeds: false,
        offers: &["TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1.0"],
        version: "",
        cipher: "",
        failure: Some(Failure {
            reason: "reset",
            alert: "",
            alert_sender: "",
            closed_by: "server",
            stage: before,
            diagnosis: "reset_after_client_hello",
            names: "without sending a byte",
        }),
    });
    all.push(Case {
        what: "client rejects the certificate (TLS 1.2): unknown_ca from client",
        route: Route::Proxied,
        times: 1,
        client: with(&["-tls1_2"], verify(&other_ca)),
        port: PORT_OK,
        client_succeeds: false,
        offers: &["TLSv1.2"],
        version: "TLSv1.2",
        cipher: TLS12_SUITE,
        failure: Some(Failure {
            reason: "alert",
            alert: "unknown_ca",
            alert_sender: "client",
            closed_by: "",
            stage: "after_server_hello",
            diagnosis: "client_rejected_certificate",
            names: "subject CN=server.test",
        }),
    });
    all
}

/// The server NIC a route arrives on.
pub fn device_of(route: Route) -> &'static str {
    match route {
        Route::Direct => NIC_A,
        Route::Proxied => NIC_B,
    }
}

/// Waits until `port` is in LISTEN state inside `ns` (without connecting, so no
/// probe connection shows up anywhere).
pub fn wait_listening(ns: &Netns, port: u16, who: &mut Background) -> Result<()> {
    poll(
        &format!("port {port} listening in {}", ns.name()),
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            who.check_running()?;
            let out = run_checked(
                ns.command("ss")
                    .args(["-Hltn", &format!("sport = :{port}")]),
            )?;
            Ok((!out.stdout.is_empty()).then_some(()))
        },
    )
}

fn haproxy_config(dir: &Path) -> Result<PathBuf> {
    let mut cfg = String::from(
        "global\n  maxconn 256\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n",
    );
    for port in [PORT_OK, PORT_TLS13_ONLY, PORT_ONE_CIPHER, PORT_RESET] {
        cfg.push_str(&format!(
            "listen tls{port}\n  bind {PROXY_FRONT}:{port}\n  server backend {SERVER_B}:{port}\n"
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg)?;
    Ok(path)
}

/// The servers of the scenario, running and listening; stopped on drop.
pub struct Servers {
    _openssl: Vec<Background>,
    /// Resets each connection after its ClientHello.
    pub reset_server: ResetServer,
    _haproxy: Background,
}

impl Servers {
    /// Starts the OpenSSL servers and the reset server on the server host and
    /// haproxy in the proxy namespace, and waits until every port listens. Logs
    /// go to `dir`.
    pub fn start(net: &TwoPaths, pki: &Pki, dir: &Path) -> Result<Servers> {
        let cert = pki.cert.display().to_string();
        let key_path = pki.key.display().to_string();
        let s_server = |port: u16, extra: &[&str]| {
            let mut cmd = net.server.command("openssl");
            cmd.args([
                "s_server",
                "-quiet",
                "-accept",
                &port.to_string(),
                "-cert",
                &cert,
                "-key",
                &key_path,
            ]);
            cmd.args(extra);
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
                            TLS13_SUITE,
                            "-cipher",
                            "ECDHE-RSA-AES128-GCM-SHA256",
                        ],
                    ),
                    dir,
                )?,
            ),
            (
                PORT_TLS13_ONLY,
                Background::spawn(
                    "s_server-tls13",
                    s_server(PORT_TLS13_ONLY, &["-tls1_3"]),
                    dir,
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
                    dir,
                )?,
            ),
        ];
        let reset_server = ResetServer::start(
            &net.server,
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT_RESET)),
        )?;
        let mut haproxy = {
            let mut cmd = net.proxy.command("haproxy");
            cmd.arg("-db").arg("-f").arg(haproxy_config(dir)?);
            Background::spawn("haproxy", cmd, dir)?
        };
        for (port, server) in &mut servers {
            wait_listening(&net.server, *port, server)?;
        }
        for port in [PORT_OK, PORT_TLS13_ONLY, PORT_ONE_CIPHER, PORT_RESET] {
            wait_listening(&net.proxy, port, &mut haproxy)?;
        }
        Ok(Servers {
            _openssl: servers.into_iter().map(|(_, s)| s).collect(),
            reset_server,
            _haproxy: haproxy,
        })
    }
}

/// Makes the connections of `cases` from the client namespace, one at a time,
/// and checks that each client ended as its case says.
pub fn make_connections(net: &TwoPaths, cases: &[Case]) -> Result<()> {
    for case in cases {
        let addr = match case.route {
            Route::Direct => SERVER_A,
            Route::Proxied => PROXY_FRONT,
        };
        for i in 0..case.times {
            let args: Vec<String> = case
                .client
                .iter()
                .map(|a| {
                    a.replace("{addr}", &addr.to_string())
                        .replace("{port}", &case.port.to_string())
                })
                .collect();
            let mut cmd = net.client.command(&args[0]);
            cmd.args(&args[1..]);
            let (status, output) = run_bounded(cmd, Duration::from_secs(20))?;
            ensure!(
                status.success() == case.client_succeeds,
                "{} (#{i}): client exited {status}, expected success={}; output:\n{output}",
                case.what,
                case.client_succeeds
            );
        }
    }
    Ok(())
}

/// tcpdump on both server NICs, writing `dir/<NIC>.pcap`; stopped (and the files
/// complete) by [`PathCaptures::finish`], or on drop.
pub struct PathCaptures {
    tcpdumps: Vec<(Background, PathBuf)>,
}

impl PathCaptures {
    /// Starts the captures and waits until both listen.
    pub fn start(net: &TwoPaths, dir: &Path) -> Result<PathCaptures> {
        let mut tcpdumps = Vec::new();
        for nic in [NIC_A, NIC_B] {
            let path = dir.join(format!("{nic}.pcap"));
            let mut cmd = net.server.command("tcpdump");
            // -U: each packet written at once, so stopping loses nothing.
            cmd.args(["-U", "-n", "-i", nic, "-w"])
                .arg(&path)
                .arg("tcp");
            let mut tcpdump = Background::spawn(&format!("tcpdump-{nic}"), cmd, dir)?;
            poll(
                &format!("tcpdump listening on {nic}"),
                Duration::from_secs(20),
                Duration::from_millis(50),
                || {
                    tcpdump.check_running()?;
                    Ok(tcpdump.log().contains("listening on").then_some(()))
                },
            )?;
            tcpdumps.push((tcpdump, path));
        }
        Ok(PathCaptures { tcpdumps })
    }

    /// Waits until the files of NIC A and NIC B hold `handshakes[0]` and
    /// `handshakes[1]` decided handshakes (tcpdump drops what it has not written
    /// yet when stopped), stops both captures, and returns the two files.
    pub fn finish(mut self, handshakes: [u32; 2]) -> Result<(PathBuf, PathBuf)> {
        let mut paths = Vec::new();
        for ((tcpdump, path), want) in self.tcpdumps.iter_mut().zip(handshakes) {
            poll(
                &format!("{} holding {want} handshakes", path.display()),
                Duration::from_secs(20),
                Duration::from_millis(100),
                || {
                    tcpdump.check_running()?;
                    // A packet being written makes the file end early: try again.
                    let Ok((records, _)) = analyze_file(path, &AnalyzeOptions::default()) else {
                        return Ok(None);
                    };
                    let decided = records
                        .iter()
                        .filter(|r| r.outcome != Outcome::Incomplete)
                        .count();
                    Ok((decided == want as usize).then_some(()))
                },
            )?;
            tcpdump.stop()?;
            paths.push(path.clone());
        }
        ensure!(paths.len() == 2, "two captures");
        Ok((paths[0].clone(), paths[1].clone()))
    }
}
