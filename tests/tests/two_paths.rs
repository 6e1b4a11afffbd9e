//! The scenario tlsmon exists for (issue 4): a server host with two NICs,
//! clients reaching it directly over NIC A and through a TCP proxy (haproxy)
//! over NIC B, a known mix of handshakes from real TLS stacks (OpenSSL, GnuTLS;
//! successes, protocol_version and handshake_failure alerts, a reset after the
//! ClientHello, a client rejecting the certificate), and `tlsmon run` on both
//! NICs with part of its settings from a config file.
//!
//! Checked, exactly, against what the case table says was generated: handshakes
//! and failures per device, direction, version, cipher, outcome, reason, alert
//! and sender; diagnoses per device; alerts; offered versions; SNI breakdown;
//! ClientHellos per NIC; the JSON events file (every failure's diagnosis with what
//! it must name, `null` for every established one); no ring buffer drops.
//! `tlsmon watch`, next to the daemon, prints one line per handshake, each
//! failure with its diagnosis's sentence. Then Debian's Prometheus scrapes
//! the daemon and instant queries must show the failures, and the one client
//! offering TLS 1.0, on NIC B. Also: a second daemon on the taken address
//! refuses to start, and SIGTERM ends the daemon cleanly.
//!
//! Needs root (namespaces, BPF) and openssl, gnutls-cli, haproxy, prometheus
//! and iproute2. Without root it is skipped, unless `CI` is set: then it fails.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};
use tlsmon_tests::in_scratch_dir;

use anyhow::{ensure, Context, Result};
use tlsmon_tests::{
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::{encode_query_value, get},
    netns::Netns,
    pki::Pki,
    process::{poll, run_bounded, Background},
    topology::{TwoPaths, NIC_A, NIC_B},
    two_path_scenario::{cases, device_of, make_connections, Case, Route, Servers, SERVER_NAME},
};

const TLSMON_LISTEN: &str = "127.0.0.1:9808";
const PROMETHEUS_LISTEN: &str = "127.0.0.1:9090";

type Series = BTreeMap<Vec<(String, String)>, f64>;

fn key(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
    k.sort();
    k
}

/// The exact `tlsmon_handshake_diagnoses_total` series the cases must produce.
fn expected_diagnoses(cases: &[Case]) -> Series {
    let mut diagnoses = Series::new();
    for c in cases {
        if let Some(f) = c.failure {
            *diagnoses
                .entry(key(&[
                    ("device", device_of(c.route)),
                    ("direction", "inbound"),
                    ("diagnosis", f.diagnosis),
                ]))
                .or_default() += f64::from(c.times);
        }
    }
    diagnoses
}

/// The exact `tlsmon_handshakes_total` and `tlsmon_handshake_failures_total`
/// series the cases must produce.
fn expected(cases: &[Case]) -> (Series, Series) {
    let (mut handshakes, mut failures) = (Series::new(), Series::new());
    for c in cases {
        let device = device_of(c.route);
        let outcome = if c.failure.is_some() {
            "failed"
        } else {
            "established"
        };
        *handshakes
            .entry(key(&[
                ("device", device),
                ("direction", "inbound"),
                ("transport", "tcp"),
                ("version", c.version),
                ("cipher", c.cipher),
                ("outcome", outcome),
            ]))
            .or_default() += f64::from(c.times);
        if let Some(f) = c.failure {
            *failures
                .entry(key(&[
                    ("device", device),
                    ("direction", "inbound"),
                    ("transport", "tcp"),
                    ("reason", f.reason),
                    ("alert", f.alert),
                    ("alert_sender", f.alert_sender),
                    ("closed_by", f.closed_by),
                    ("stage", f.stage),
                ]))
                .or_default() += f64::from(c.times);
        }
    }
    (handshakes, failures)
}

fn series(scrape: &Scrape, name: &str) -> Series {
    scrape
        .select(name, &[])
        .map(|s| {
            let k = s
                .labels
                .iter()
                .map(|(a, b)| (a.clone(), b.clone()))
                .collect();
            (k, s.value)
        })
        .collect()
}

fn scrape(server: &Netns) -> Result<Scrape> {
    let addr: SocketAddr = TLSMON_LISTEN.parse()?;
    let resp = server.run_inside(move || get(addr, "/metrics"))?;
    ensure!(
        resp.status == 200,
        "/metrics answered {}: {}",
        resp.status,
        resp.body
    );
    Ok(Scrape::parse(&resp.body)?)
}

fn prometheus_config(dir: &Path) -> Result<std::path::PathBuf> {
    let path = dir.join("prometheus.yml");
    std::fs::write(
        &path,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: tlsmon\n    static_configs:\n      - targets: ['{TLSMON_LISTEN}']\n"
        ),
    )?;
    Ok(path)
}

#[test]
fn two_paths_failures_are_counted_exactly_on_the_right_nic() -> Result<()> {
    in_scratch_dir("two_paths", |dir| scenario(&tlsmon_binary()?, dir))
}

fn scenario(tlsmon: &Path, dir: &Path) -> Result<()> {
    let pki = Pki::generate(dir, SERVER_NAME)?;
    // Declared first, so it is dropped last: every process below is stopped
    // before the namespaces go away.
    let net = TwoPaths::build()?;
    let servers = Servers::start(&net, &pki, dir)?;

    // Part of the settings come from a config file, to check that it is read and
    // that a flag wins over it (the file's listen address is not the one used).
    let events_path = dir.join("events.jsonl");
    let config_path = dir.join("tlsmon.toml");
    std::fs::write(
        &config_path,
        format!(
            "listen = \"127.0.0.1:9999\"\nevents_file = {:?}\n[labels]\nsni = true\n",
            events_path.display().to_string()
        ),
    )?;
    let tlsmon_cmd = |listen: &str| {
        let mut cmd = net.server.command(&tlsmon.display().to_string());
        cmd.args(["run", "--config"])
            .arg(&config_path)
            .args([
                "--interface",
                NIC_A,
                "--interface",
                NIC_B,
                "--listen",
                listen,
            ])
            .env("RUST_LOG", "info");
        cmd
    };
    let mut daemon = Background::spawn("tlsmon", tlsmon_cmd(TLSMON_LISTEN), dir)?;
    poll(
        "tlsmon attached to both NICs",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            daemon.check_running()?;
            let s = scrape(&net.server)?;
            let attached =
                |dev| s.value("tlsmon_interface_attached", &[("device", dev)]) == Some(1.0);
            Ok((attached(NIC_A) && attached(NIC_B)).then_some(()))
        },
    )
    .with_context(|| format!("tlsmon output:\n{}", daemon.log()))?;
    let tlsmon_addr: SocketAddr = TLSMON_LISTEN.parse()?;
    let health = net
        .server
        .run_inside(move || get(tlsmon_addr, "/healthz"))?;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    // A second daemon on the same address must refuse to start, saying why.
    let (status, output) = run_bounded(tlsmon_cmd(TLSMON_LISTEN), Duration::from_secs(20))?;
    assert!(
        !status.success(),
        "a second tlsmon on a taken address must fail"
    );
    assert!(
        output.contains(&format!("cannot listen on {TLSMON_LISTEN}"))
            && output.contains("Address already in use"),
        "unclear refusal: {output}"
    );

    // `tlsmon watch` runs next to the daemon (it takes no interface lock), as an
    // operator would, to show each failure with its sentence.
    let mut watch = {
        let mut cmd = net.server.command(&tlsmon.display().to_string());
        cmd.args([
            "watch",
            "--color",
            "never",
            "--interface",
            NIC_A,
            "--interface",
            NIC_B,
        ]);
        Background::spawn("watch", cmd, dir)?
    };
    poll(
        "tlsmon watch attached to both NICs",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            watch.check_running()?;
            Ok(watch.log().contains("watching ").then_some(()))
        },
    )?;

    // Generate the mix, one connection at a time.
    let cases = cases(&pki);
    make_connections(&net, &cases)?;
    assert_eq!(
        servers.reset_server.resets(),
        1,
        "the reset server saw one ClientHello"
    );

    // Every handshake reported, nothing still pending: after this no more
    // records can come, so exact comparisons below are final.
    let total: u32 = cases.iter().map(|c| c.times).sum();
    let scraped = poll(
        "tlsmon reported every handshake",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            daemon.check_running()?;
            let s = scrape(&net.server)?;
            let seen = s.sum("tlsmon_handshakes_total", &[]);
            ensure!(
                seen <= f64::from(total),
                "{seen} handshakes counted, only {total} made"
            );
            let idle = s.value("tlsmon_flows_tracked", &[]) == Some(0.0);
            Ok((seen == f64::from(total) && idle).then_some(s))
        },
    )
    .with_context(|| format!("tlsmon output:\n{}", daemon.log()))?;

    let (want_handshakes, want_failures) = expected(&cases);
    assert_eq!(series(&scraped, "tlsmon_handshakes_total"), want_handshakes);
    assert_eq!(
        series(&scraped, "tlsmon_handshake_failures_total"),
        want_failures
    );
    assert_eq!(
        series(&scraped, "tlsmon_handshake_diagnoses_total"),
        expected_diagnoses(&cases)
    );
    // Alerts by sender, derived from the same cases.
    let mut want_alerts = Series::new();
    for c in &cases {
        if let Some(f) = c.failure.filter(|f| !f.alert.is_empty()) {
            *want_alerts
                .entry(key(&[
                    ("device", device_of(c.route)),
                    ("direction", "inbound"),
                    ("alert", f.alert),
                    ("sender", f.alert_sender),
                ]))
                .or_default() += f64::from(c.times);
        }
    }
    assert_eq!(series(&scraped, "tlsmon_alerts_total"), want_alerts);
    // One ClientHello per handshake, on the NIC it crossed.
    for route in [Route::Direct, Route::Proxied] {
        let device = device_of(route);
        let made: u32 = cases
            .iter()
            .filter(|c| c.route == route)
            .map(|c| c.times)
            .sum();
        assert_eq!(
            scraped.value("tlsmon_client_hello_segments_count", &[("device", device)]),
            Some(f64::from(made)),
            "ClientHellos on {device}"
        );
    }
    // Who offers what, per NIC: one count per ClientHello per offered version.
    let mut want_offers = Series::new();
    for c in &cases {
        for version in c.offers {
            *want_offers
                .entry(key(&[("device", device_of(c.route)), ("version", version)]))
                .or_default() += f64::from(c.times);
        }
    }
    assert_eq!(
        series(&scraped, "tlsmon_client_hello_offered_versions_total"),
        want_offers
    );
    assert_eq!(
        scraped.sum("tlsmon_capture_ringbuf_dropped_total", &[]),
        0.0
    );
    assert_eq!(scraped.sum("tlsmon_reassembly_evictions_total", &[]), 0.0);

    // The config file's [labels] sni = true: every client sent SNI server.test.
    let mut want_sni = Series::new();
    for c in &cases {
        let outcome = if c.failure.is_some() {
            "failed"
        } else {
            "established"
        };
        *want_sni
            .entry(key(&[
                ("device", device_of(c.route)),
                ("sni", SERVER_NAME),
                ("outcome", outcome),
            ]))
            .or_default() += f64::from(c.times);
    }
    assert_eq!(series(&scraped, "tlsmon_handshakes_by_sni_total"), want_sni);

    check_events_file(&events_path, &cases)?;
    check_watch(&mut watch, &cases, total)?;
    check_with_prometheus(&net.server, dir, &want_failures)?;

    let status = daemon.stop()?;
    assert!(
        status.success(),
        "tlsmon exit on SIGTERM: {status}\n{}",
        daemon.log()
    );
    Ok(())
}

/// The events file (from the config file) holds one JSON object per handshake,
/// on the right device with the right outcome and reason.
fn check_events_file(path: &Path, cases: &[Case]) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut got: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    for line in text.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        let field = |name: &str| event[name].as_str().unwrap_or("").to_owned();
        assert_eq!(field("direction"), "inbound", "{line}");
        assert_eq!(field("sni"), SERVER_NAME, "{line}");
        // Every failure is diagnosed as its case says, naming what it must; every
        // established handshake has `diagnosis: null`.
        if field("outcome") == "established" {
            assert!(event["diagnosis"].is_null(), "{line}");
        } else {
            let port = event["server_port"].as_u64().unwrap_or(0);
            let case = cases
                .iter()
                .filter_map(|c| Some((c, c.failure?)))
                .find(|(c, f)| {
                    device_of(c.route) == field("device")
                        && u64::from(c.port) == port
                        && f.reason == field("failure_reason")
                        && f.alert == field("alert")
                })
                .with_context(|| format!("no case fails like this: {line}"))?;
            let diagnosis = &event["diagnosis"];
            assert_eq!(
                diagnosis["code"], case.1.diagnosis,
                "{}: {line}",
                case.0.what
            );
            let words = diagnosis.to_string();
            assert!(
                words.contains(case.1.names),
                "{}: the diagnosis must name {:?}: {line}",
                case.0.what,
                case.1.names
            );
        }
        *got.entry((field("device"), field("outcome"), field("failure_reason")))
            .or_default() += 1;
    }
    let mut want: BTreeMap<(String, String, String), u32> = BTreeMap::new();
    for c in cases {
        let (outcome, reason) = match c.failure {
            Some(f) => ("failed", f.reason),
            None => ("established", ""),
        };
        *want
            .entry((
                device_of(c.route).to_owned(),
                outcome.to_owned(),
                reason.to_owned(),
            ))
            .or_default() += c.times;
    }
    assert_eq!(got, want, "events file by device, outcome and reason");
    Ok(())
}

/// `tlsmon watch` printed one line per handshake; each failure's line ends with
/// its diagnosis's sentence after ` => `, and no established one has one.
fn check_watch(watch: &mut Background, cases: &[Case], total: u32) -> Result<()> {
    let handshake_lines = |log: &str| -> Vec<String> {
        log.lines()
            .filter(|l| l.contains(" -> "))
            .map(str::to_owned)
            .collect()
    };
    let lines = poll(
        "tlsmon watch printed every handshake",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            watch.check_running()?;
            let lines = handshake_lines(&watch.log());
            Ok((lines.len() >= total as usize).then_some(lines))
        },
    )?;
    assert_eq!(lines.len(), total as usize, "{lines:#?}");
    let failed: u32 = cases
        .iter()
        .filter(|c| c.failure.is_some())
        .map(|c| c.times)
        .sum();
    let mut sentences = 0;
    for line in &lines {
        if line.contains(" FAILED ") {
            let (_, sentence) = line
                .split_once(" => ")
                .with_context(|| format!("a failure without its sentence: {line}"))?;
            assert!(
                sentence.starts_with("The ") && sentence.ends_with('.'),
                "not a sentence: {line}"
            );
            sentences += 1;
        } else {
            assert!(!line.contains(" => "), "{line}");
        }
    }
    assert_eq!(sentences, failed, "{lines:#?}");
    watch.stop()?;
    Ok(())
}

/// Lets Debian's Prometheus scrape the daemon, then asks it, with instant
/// queries, where the failures are.
fn check_with_prometheus(server: &Netns, dir: &Path, want_failures: &Series) -> Result<()> {
    let mut prometheus = {
        let mut cmd = server.command("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            prometheus_config(dir)?.display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prometheus-data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS_LISTEN}"))
        .arg("--log.level=warn");
        Background::spawn("prometheus", cmd, dir)?
    };
    let prom: SocketAddr = PROMETHEUS_LISTEN.parse()?;
    let query = |q: &str| -> Result<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", encode_query_value(q));
        let resp = server.run_inside(move || get(prom, &path))?;
        ensure!(
            resp.status == 200,
            "Prometheus answered {}: {}",
            resp.status,
            resp.body
        );
        let v: serde_json::Value = serde_json::from_str(&resp.body)?;
        ensure!(v["status"] == "success", "query {q} failed: {}", resp.body);
        Ok(v["data"]["result"].clone())
    };
    let want_total: f64 = want_failures.values().sum();
    let result = poll(
        "Prometheus has scraped the failures",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            prometheus.check_running()?;
            let result = query("tlsmon_handshake_failures_total")?;
            let total: f64 = result
                .as_array()
                .context("result is not a list")?
                .iter()
                .filter_map(|s| s["value"][1].as_str()?.parse::<f64>().ok())
                .sum();
            Ok((total == want_total).then_some(result))
        },
    )
    .with_context(|| format!("Prometheus output:\n{}", prometheus.log()))?;
    let mut got = Series::new();
    for s in result.as_array().context("result is not a list")? {
        let labels = s["metric"].as_object().context("metric is not an object")?;
        let k: Vec<(String, String)> = labels
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "__name__" | "job" | "instance"))
            .map(|(a, b)| (a.clone(), b.as_str().unwrap_or_default().to_owned()))
            .collect();
        let v: f64 = s["value"][1].as_str().context("value")?.parse()?;
        got.insert(k, v);
    }
    // Prometheus stores a label with an empty value as no label at all.
    let want_stored: Series = want_failures
        .iter()
        .map(|(k, v)| {
            (
                k.iter()
                    .filter(|(_, value)| !value.is_empty())
                    .cloned()
                    .collect(),
                *v,
            )
        })
        .collect();
    assert_eq!(got, want_stored, "failures as Prometheus stored them");
    let by_device = query("sum by (device) (tlsmon_handshake_failures_total)")?;
    let devices: Vec<&str> = by_device
        .as_array()
        .context("result is not a list")?
        .iter()
        .filter_map(|s| s["metric"]["device"].as_str())
        .collect();
    assert_eq!(devices, [NIC_B], "every failure is on the proxied NIC");
    // The README's "who still offers TLS 1.0": the one legacy client, on NIC B.
    let legacy = query(
        r#"sum by (device) (tlsmon_client_hello_offered_versions_total{version="TLSv1.0"})"#,
    )?;
    let legacy: Vec<(&str, &str)> = legacy
        .as_array()
        .context("result is not a list")?
        .iter()
        .filter_map(|s| Some((s["metric"]["device"].as_str()?, s["value"][1].as_str()?)))
        .collect();
    assert_eq!(legacy, [(NIC_B, "1")], "ClientHellos offering TLS 1.0");
    prometheus.stop()?;
    Ok(())
}
