//! The same handshake on two NICs (issue 12, part 3) and the daemon's recent events
//! (part 4): a host in the middle of a chain of three namespaces,
//!
//! ```text
//!  client ns                    middle ns (tlsmon on fw-in and fw-out)          server ns
//!  fw-cli 10.N.1.2 ──── fw-in 10.N.1.1  [router | haproxy | meddler]  fw-out 10.N.2.1 ──── fw-srv 10.N.2.2
//! ```
//!
//! - a router (IP forwarding between the two veths): every handshake is linked,
//!   `changed="false"`;
//! - haproxy in TCP mode between the two NICs: the same;
//! - a meddling proxy (`meddling-proxy`, this crate) that drops TLS 1.3 from
//!   supported_versions and TLS_AES_256_GCM_SHA384 from the cipher suites:
//!   `changed="true"`, `changes` names exactly those two, and the TLS 1.3-only server
//!   refuses the rewritten ClientHello with protocol_version.
//!
//! Counts are exact, from connections made here with OpenSSL. Then
//! `/api/v1/events` with its filters and limit, `tlsmon compare --from` against
//! the running daemon, and a ClientHello that arrives on the proxy's path after its
//! server is gone and never leaves (`out_device: null`).
//!
//! Needs root (namespaces, BPF), openssl and haproxy. Without root it is skipped,
//! unless `CI` is set: then it fails.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tlsmon_tests::{
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::{get, Response},
    in_scratch_dir,
    netns::Netns,
    pki::Pki,
    process::{poll, run_bounded, run_checked, Background},
    topology::veth,
    two_path_scenario::wait_listening,
};

const TLSMON_LISTEN: &str = "127.0.0.1:9808";
const SERVER_NAME: &str = "server.test";
const IN_DEVICE: &str = "fw-in";
const OUT_DEVICE: &str = "fw-out";
/// Accepts TLS 1.2 and 1.3.
const PORT_OK: u16 = 4433;
/// TLS 1.3 only (behind the meddling proxy).
const PORT_TLS13_ONLY: u16 = 4434;
/// TLS 1.3 as the meddling proxy removes it from supported_versions.
const TLS13: &str = "0x0304";
/// TLS_AES_256_GCM_SHA384, which the meddling proxy removes.
const AES256: &str = "0x1302";

/// Three namespaces in a row; the middle one has `fw-in` toward the client and
/// `fw-out` toward the server.
struct Chain {
    client: Netns,
    middle: Netns,
    server: Netns,
    /// 10.`subnet`.x.x
    subnet: u8,
}

impl Chain {
    fn build(subnet: u8) -> Result<Chain> {
        let chain = Chain {
            client: Netns::new("tmfc"),
            middle: Netns::new("tmfm"),
            server: Netns::new("tmfs"),
            subnet,
        };
        veth(
            (&chain.client, "fw-cli", &format!("10.{subnet}.1.2/24")),
            (&chain.middle, IN_DEVICE, &format!("10.{subnet}.1.1/24")),
        )?;
        veth(
            (&chain.middle, OUT_DEVICE, &format!("10.{subnet}.2.1/24")),
            (&chain.server, "fw-srv", &format!("10.{subnet}.2.2/24")),
        )?;
        Ok(chain)
    }

    /// The middle namespace forwards IP between its NICs.
    fn route_through_middle(&self) -> Result<()> {
        let s = self.subnet;
        self.middle
            .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        run_checked(self.client.command("ip").args([
            "route",
            "add",
            &format!("10.{s}.2.0/24"),
            "via",
            &format!("10.{s}.1.1"),
        ]))?;
        run_checked(self.server.command("ip").args([
            "route",
            "add",
            &format!("10.{s}.1.0/24"),
            "via",
            &format!("10.{s}.2.1"),
        ]))?;
        Ok(())
    }

    /// The middle's address toward the client.
    fn front(&self) -> String {
        format!("10.{}.1.1", self.subnet)
    }

    /// The server's address.
    fn server_addr(&self) -> String {
        format!("10.{}.2.2", self.subnet)
    }
}

/// `openssl s_server` on `port` in the server namespace, listening.
fn s_server(chain: &Chain, pki: &Pki, port: u16, extra: &[&str], dir: &Path) -> Result<Background> {
    let mut cmd = chain.server.command("openssl");
    cmd.args(["s_server", "-quiet", "-accept", &port.to_string()])
        .arg("-cert")
        .arg(&pki.cert)
        .arg("-key")
        .arg(&pki.key)
        .args(extra);
    let mut server = Background::spawn(&format!("s_server-{port}"), cmd, dir)?;
    wait_listening(&chain.server, port, &mut server)?;
    Ok(server)
}

/// `tlsmon run` on both NICs of the middle namespace, attached.
fn start_tlsmon(chain: &Chain, dir: &Path) -> Result<Background> {
    let tlsmon = tlsmon_binary()?;
    let mut cmd = chain.middle.command(&tlsmon.display().to_string());
    cmd.args([
        "run",
        "--interface",
        IN_DEVICE,
        "--interface",
        OUT_DEVICE,
        "--listen",
        TLSMON_LISTEN,
    ])
    .env("RUST_LOG", "info");
    let mut daemon = Background::spawn("tlsmon", cmd, dir)?;
    poll(
        "tlsmon attached to both NICs",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            let s = scrape(&chain.middle)?;
            let attached =
                |dev| s.value("tlsmon_interface_attached", &[("device", dev)]) == Some(1.0);
            Ok((attached(IN_DEVICE) && attached(OUT_DEVICE)).then_some(()))
        },
    )
    .with_context(|| format!("tlsmon output:\n{}", daemon.log()))?;
    Ok(daemon)
}

fn http(ns: &Netns, path: &str) -> Result<Response> {
    let addr: SocketAddr = TLSMON_LISTEN.parse()?;
    let path = path.to_string();
    ns.run_inside(move || get(addr, &path))
}

fn scrape(ns: &Netns) -> Result<Scrape> {
    let resp = http(ns, "/metrics")?;
    ensure!(resp.status == 200, "/metrics answered {}", resp.status);
    Ok(Scrape::parse(&resp.body)?)
}

/// The daemon's recent events.
fn events(ns: &Netns, query: &str) -> Result<Vec<Value>> {
    let resp = http(ns, &format!("/api/v1/events{query}"))?;
    ensure!(
        resp.status == 200,
        "/api/v1/events{query} answered {}: {}",
        resp.status,
        resp.body
    );
    resp.body
        .lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

/// `times` s_client handshakes to `addr:port`; each must end as `succeeds` says.
fn connect(chain: &Chain, addr: &str, port: u16, times: u32, succeeds: bool) -> Result<()> {
    for i in 0..times {
        let mut cmd = chain.client.command("openssl");
        cmd.args(["s_client", "-connect", &format!("{addr}:{port}")])
            .args(["-servername", SERVER_NAME]);
        let (status, output) = run_bounded(cmd, Duration::from_secs(20))?;
        ensure!(
            status.success() == succeeds,
            "s_client #{i} to {addr}:{port} exited {status}, expected success={succeeds}:\n{output}"
        );
    }
    Ok(())
}

/// Waits until the daemon reported `total` events and follows no flow any more, and
/// returns them (after that no more can come, so comparisons are final).
fn all_events(chain: &Chain, daemon: &mut Background, total: usize) -> Result<Vec<Value>> {
    poll(
        "tlsmon reported every handshake on both NICs",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            daemon.check_running()?;
            let got = events(&chain.middle, "")?;
            ensure!(
                got.len() <= total,
                "{} events, only {total} expected",
                got.len()
            );
            let idle = scrape(&chain.middle)?.value("tlsmon_flows_tracked", &[]) == Some(0.0);
            Ok((got.len() == total && idle).then_some(got))
        },
    )
    .with_context(|| format!("tlsmon output:\n{}", daemon.log()))
}

/// The `forwarded` every event of a linked handshake must carry.
fn linked(changes: &[&str]) -> Value {
    serde_json::json!({
        "in_device": IN_DEVICE,
        "out_device": OUT_DEVICE,
        "changes": changes,
    })
}

#[test]
fn a_routed_handshake_is_linked_across_the_two_nics() -> Result<()> {
    in_scratch_dir("forwarding-router", |dir| {
        let pki = Pki::generate(dir, SERVER_NAME)?;
        let chain = Chain::build(81)?;
        chain.route_through_middle()?;
        let _server = s_server(&chain, &pki, PORT_OK, &[], dir)?;
        let mut daemon = start_tlsmon(&chain, dir)?;

        let made = 3;
        connect(&chain, &chain.server_addr(), PORT_OK, made, true)?;
        let got = all_events(&chain, &mut daemon, 2 * made as usize)?;
        for event in &got {
            assert_eq!(event["outcome"], "established", "{event}");
            assert_eq!(event["forwarded"], linked(&[]), "{event}");
        }
        let on = |device: &str, direction: &str| {
            got.iter()
                .filter(|e| e["device"] == device && e["direction"] == direction)
                .count()
        };
        assert_eq!(on(IN_DEVICE, "inbound"), made as usize);
        assert_eq!(on(OUT_DEVICE, "outbound"), made as usize);

        let s = scrape(&chain.middle)?;
        let forwarded = |changed| {
            s.value(
                "tlsmon_forwarded_handshakes_total",
                &[
                    ("in_device", IN_DEVICE),
                    ("out_device", OUT_DEVICE),
                    ("changed", changed),
                ],
            )
        };
        assert_eq!(forwarded("false"), Some(f64::from(made)));
        assert_eq!(forwarded("true"), None);
        assert_eq!(s.sum("tlsmon_forwarding_unlinked_total", &[]), 0.0);
        assert_eq!(s.sum("tlsmon_handshakes_not_forwarded_total", &[]), 0.0);
        Ok(())
    })
}

fn haproxy_config(chain: &Chain, dir: &Path) -> Result<std::path::PathBuf> {
    let cfg = format!(
        "global\n  maxconn 64\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         listen tls\n  bind {}:{PORT_OK}\n  server backend {}:{PORT_OK}\n",
        chain.front(),
        chain.server_addr()
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg)?;
    Ok(path)
}

#[test]
fn proxied_handshakes_are_linked_and_a_meddled_client_hello_shows_what_was_removed() -> Result<()> {
    in_scratch_dir("forwarding-proxy", |dir| {
        let pki = Pki::generate(dir, SERVER_NAME)?;
        let chain = Chain::build(82)?;
        let mut ok_server = s_server(&chain, &pki, PORT_OK, &[], dir)?;
        let _tls13 = s_server(&chain, &pki, PORT_TLS13_ONLY, &["-tls1_3"], dir)?;
        let mut haproxy = {
            let mut cmd = chain.middle.command("haproxy");
            cmd.arg("-db").arg("-f").arg(haproxy_config(&chain, dir)?);
            Background::spawn("haproxy", cmd, dir)?
        };
        wait_listening(&chain.middle, PORT_OK, &mut haproxy)?;
        let mut meddler = {
            let mut cmd = chain.middle.command(env!("CARGO_BIN_EXE_meddling-proxy"));
            cmd.args([
                "--listen",
                &format!("{}:{PORT_TLS13_ONLY}", chain.front()),
                "--connect",
                &format!("{}:{PORT_TLS13_ONLY}", chain.server_addr()),
                "--drop-version",
                TLS13,
                "--drop-cipher",
                AES256,
            ]);
            Background::spawn("meddling-proxy", cmd, dir)?
        };
        wait_listening(&chain.middle, PORT_TLS13_ONLY, &mut meddler)?;
        let mut daemon = start_tlsmon(&chain, dir)?;

        let (through_haproxy, meddled) = (20u32, 2u32);
        connect(&chain, &chain.front(), PORT_OK, through_haproxy, true)?;
        connect(&chain, &chain.front(), PORT_TLS13_ONLY, meddled, false)?;
        let total = 2 * (through_haproxy + meddled) as usize;
        let got = all_events(&chain, &mut daemon, total)?;

        let removed = [
            "offered version TLSv1.3 removed",
            "cipher suite TLS_AES_256_GCM_SHA384 removed",
        ];
        for event in &got {
            let inbound = event["device"] == IN_DEVICE && event["direction"] == "inbound";
            let outbound = event["device"] == OUT_DEVICE && event["direction"] == "outbound";
            assert!(inbound || outbound, "{event}");
            if event["server_port"] == PORT_OK {
                assert_eq!(event["outcome"], "established", "{event}");
                assert_eq!(event["forwarded"], linked(&[]), "{event}");
            } else {
                assert_eq!(event["server_port"], PORT_TLS13_ONLY, "{event}");
                assert_eq!(event["forwarded"], linked(&removed), "{event}");
                // The server saw no TLS 1.3 and refused; the meddler relayed its alert.
                assert_eq!(event["outcome"], "failed", "{event}");
                assert_eq!(event["failure_reason"], "alert", "{event}");
                assert_eq!(event["alert"], "protocol_version", "{event}");
                assert_eq!(event["alert_sender"], "server", "{event}");
                let offers_tls13 = event["offered_versions"]
                    .as_array()
                    .is_some_and(|v| v.contains(&Value::from("TLSv1.3")));
                assert_eq!(offers_tls13, inbound, "{event}");
                // And it is said why, on both sides of the meddler.
                assert_eq!(event["diagnosis"]["code"], "no_shared_version", "{event}");
            }
        }

        let s = scrape(&chain.middle)?;
        let forwarded = |changed| {
            s.value(
                "tlsmon_forwarded_handshakes_total",
                &[
                    ("in_device", IN_DEVICE),
                    ("out_device", OUT_DEVICE),
                    ("changed", changed),
                ],
            )
        };
        assert_eq!(forwarded("false"), Some(f64::from(through_haproxy)));
        assert_eq!(forwarded("true"), Some(f64::from(meddled)));
        for (device, direction) in [(IN_DEVICE, "inbound"), (OUT_DEVICE, "outbound")] {
            assert_eq!(
                s.value(
                    "tlsmon_handshake_diagnoses_total",
                    &[
                        ("device", device),
                        ("direction", direction),
                        ("diagnosis", "no_shared_version"),
                    ],
                ),
                Some(f64::from(meddled)),
                "{device}"
            );
        }
        assert_eq!(s.sum("tlsmon_forwarding_unlinked_total", &[]), 0.0);

        // The endpoint's filters and limit.
        let failed = events(&chain.middle, "?failed=true")?;
        assert_eq!(failed.len(), 2 * meddled as usize);
        assert!(failed.iter().all(|e| e["outcome"] == "failed"));
        let others = events(&chain.middle, "?failed=false")?;
        assert_eq!(others.len(), 2 * through_haproxy as usize);
        let newest = events(&chain.middle, "?limit=3")?;
        assert_eq!(newest, got[got.len() - 3..]);
        for bad in ["?limit=0", "?limit=ten", "?failed=maybe", "?device=fw-in"] {
            let resp = http(&chain.middle, &format!("/api/v1/events{bad}"))?;
            assert_eq!(resp.status, 400, "{bad}: {}", resp.body);
            assert!(
                resp.body.starts_with("bad request: "),
                "{bad}: {}",
                resp.body
            );
        }

        // compare reads the running daemon's devices.
        let mut cmd = chain
            .middle
            .command(&tlsmon_binary()?.display().to_string());
        cmd.args(["compare", "--color", "never", "--from"])
            .arg(format!("http://{TLSMON_LISTEN}"));
        let (status, output) = run_bounded(cmd, Duration::from_secs(30))?;
        ensure!(status.success(), "compare --from failed: {output}");
        assert!(
            output.contains(IN_DEVICE) && output.contains(OUT_DEVICE),
            "compare --from does not show both devices:\n{output}"
        );
        // And says why when there is no daemon.
        let mut cmd = chain
            .middle
            .command(&tlsmon_binary()?.display().to_string());
        cmd.args(["compare", "--from", "http://127.0.0.1:1"]);
        let (status, output) = run_bounded(cmd, Duration::from_secs(30))?;
        assert!(!status.success());
        assert!(
            output.contains("http://127.0.0.1:1: cannot connect"),
            "{output}"
        );

        // The server behind haproxy is gone: the next ClientHello arrives on a path
        // that forwarded before and never leaves (haproxy cannot connect).
        ok_server.stop()?;
        connect(&chain, &chain.front(), PORT_OK, 1, false)?;
        let got = all_events(&chain, &mut daemon, total + 1)?;
        let last = &got[total];
        assert_eq!(last["device"], IN_DEVICE, "{last}");
        assert_eq!(last["outcome"], "failed", "{last}");
        assert_eq!(
            last["forwarded"],
            serde_json::json!({"in_device": IN_DEVICE, "out_device": null, "changes": []}),
            "{last}"
        );
        let s = scrape(&chain.middle)?;
        assert_eq!(
            s.value(
                "tlsmon_handshakes_not_forwarded_total",
                &[("device", IN_DEVICE)]
            ),
            Some(1.0)
        );
        assert_eq!(
            s.sum("tlsmon_forwarded_handshakes_total", &[]),
            f64::from(through_haproxy + meddled)
        );
        Ok(())
    })
}
