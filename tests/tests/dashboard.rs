//! The Grafana dashboard (deploy/grafana/tlsmon.json) and the Prometheus rules
//! (deploy/prometheus/tlsmon-rules.yml) against real data (issue 11).
//!
//! The two-path scenario runs with `tlsmon run` on both server NICs and Debian's
//! Prometheus scraping it every second from before the first handshake, with the
//! rules loaded. The connection mix runs several rounds, plus a rustls client and
//! server that negotiate X25519MLKEM768 on NIC A. Then:
//!
//! - every query of every panel, with the dashboard's variables set to "All" as
//!   Grafana would send them, is evaluated by Prometheus and must return at least
//!   one sample with a number; the one exception is the diagnosis panel, while the
//!   daemon does not export `tlsmon_handshake_diagnoses_total`;
//! - the variable queries list the scraped instance and both NICs;
//! - the failure-ratio panel says 0 on NIC A and the case table's share on NIC B,
//!   the old-versions panel shows the legacy client on NIC B, the post-quantum
//!   panel shows X25519MLKEM768 offered and negotiated on NIC A;
//! - the rules' failure-ratio and outlier alerts are pending for NIC B only.
//!
//! `TLSMON_DASHBOARD_ROUNDS` (default 3) and `TLSMON_DASHBOARD_PAUSE_SECS`
//! (default 0) stretch the traffic over time, and `TLSMON_DASHBOARD_KEEP=DIR`
//! keeps Prometheus's data in DIR afterwards: docs/make-picture.sh uses them to
//! draw the README's graph from the same run.
//!
//! Needs root (namespaces, BPF) and openssl, gnutls-cli, haproxy, prometheus and
//! iproute2. Without root it is skipped, unless `CI` is set: then it fails.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tlsmon_tests::in_scratch_dir;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use tlsmon_tests::{
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get::{encode_query_value, get},
    netns::Netns,
    pki::Pki,
    process::{poll, run_bounded, run_checked, Background},
    topology::{TwoPaths, NIC_A, NIC_B, SERVER_A},
    two_path_scenario::{cases, device_of, make_connections, wait_listening, Servers, SERVER_NAME},
};

const TLSMON_LISTEN: &str = "127.0.0.1:9808";
const PROMETHEUS_LISTEN: &str = "127.0.0.1:9090";
/// The rustls server that negotiates X25519MLKEM768 (OpenSSL 3.0 lacks it).
const PORT_PQ: u16 = 4435;
const PQ_GROUP: &str = "X25519MLKEM768";
/// The only panel allowed to be empty, and only while tlsmon lacks the metric.
const DIAGNOSES: &str = "tlsmon_handshake_diagnoses_total";
/// What Grafana's `$__rate_interval` and `$__range` become: long enough to hold
/// the whole run.
const RATE_INTERVAL: &str = "5m";
const RANGE: &str = "15m";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn env_u32(name: &str, default: u32) -> Result<u32> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v}")),
        Err(_) => Ok(default),
    }
}

/// Prometheus's HTTP API inside the server namespace.
struct Prometheus<'a> {
    ns: &'a Netns,
    addr: SocketAddr,
}

impl Prometheus<'_> {
    /// GETs an API path; the `data` member of a successful answer.
    fn api(&self, path: String) -> Result<Value> {
        let addr = self.addr;
        let resp = self.ns.run_inside(move || get(addr, &path))?;
        ensure!(
            resp.status == 200,
            "Prometheus answered {}: {}",
            resp.status,
            resp.body
        );
        let v: Value = serde_json::from_str(&resp.body)?;
        ensure!(v["status"] == "success", "{}", resp.body);
        Ok(v["data"].clone())
    }

    /// The samples of an instant query at the current time.
    fn query(&self, q: &str) -> Result<Vec<Value>> {
        let data = self.api(format!("/api/v1/query?query={}", encode_query_value(q)))?;
        Ok(data["result"].as_array().context("no result list")?.clone())
    }
}

/// Numeric value of a sample of an instant-query answer (NaN if unreadable).
fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Every panel that queries something, rows' nested panels included.
fn query_panels(panels: &[Value], out: &mut Vec<Value>) {
    for p in panels {
        if let Some(nested) = p["panels"].as_array() {
            query_panels(nested, out);
        }
        if p["type"] != "row" {
            out.push(p.clone());
        }
    }
}

/// What Grafana sends for a query with every variable at "All".
fn substitute(expr: &str, all_values: &[(String, String)]) -> String {
    let mut e = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", RANGE);
    for (name, value) in all_values {
        e = e
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    e
}

/// `label_values(SELECTOR, LABEL)` of a variable, as Grafana resolves it.
fn label_values(
    prom: &Prometheus,
    query: &str,
    all_values: &[(String, String)],
) -> Result<BTreeSet<String>> {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .with_context(|| format!("not a label_values query: {query}"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .with_context(|| format!("no label in {query}"))?;
    let selector = substitute(selector.trim(), all_values);
    let data = prom.api(format!(
        "/api/v1/series?match[]={}",
        encode_query_value(&selector)
    ))?;
    Ok(data
        .as_array()
        .context("series is not a list")?
        .iter()
        .filter_map(|s| s[label.trim()].as_str().map(str::to_owned))
        .collect())
}

fn scrape(server: &Netns) -> Result<Scrape> {
    let addr: SocketAddr = TLSMON_LISTEN.parse()?;
    let resp = server.run_inside(move || get(addr, "/metrics"))?;
    ensure!(resp.status == 200, "/metrics answered {}", resp.status);
    Ok(Scrape::parse(&resp.body)?)
}

#[test]
fn every_dashboard_panel_has_data_from_the_two_path_scenario() -> Result<()> {
    in_scratch_dir("dashboard", |dir| scenario(&tlsmon_binary()?, dir))
}

fn scenario(tlsmon: &Path, dir: &Path) -> Result<()> {
    let rounds = env_u32("TLSMON_DASHBOARD_ROUNDS", 3)?;
    let pause = Duration::from_secs(env_u32("TLSMON_DASHBOARD_PAUSE_SECS", 0)?.into());
    // The rules' alerts want 10 handshakes per NIC within 5 minutes; NIC A makes
    // 6 per round.
    ensure!(
        rounds >= 3,
        "TLSMON_DASHBOARD_ROUNDS: at least 3 rounds, for the alert rules' volume"
    );
    let pki = Pki::generate(dir, SERVER_NAME)?;
    // Declared first, so it is dropped last: every process below is stopped
    // before the namespaces go away.
    let net = TwoPaths::build()?;
    let _servers = Servers::start(&net, &pki, dir)?;
    let peer = env!("CARGO_BIN_EXE_rustls-peer");
    let mut pq_server = {
        let mut cmd = net.server.command(peer);
        cmd.arg("server")
            .arg(format!("--listen={SERVER_A}:{PORT_PQ}"))
            .arg("--cert")
            .arg(&pki.cert)
            .arg("--key")
            .arg(&pki.key)
            .arg(format!("--accept={rounds}"))
            .arg(format!("--groups={PQ_GROUP}"));
        Background::spawn("rustls-server", cmd, dir)?
    };
    wait_listening(&net.server, PORT_PQ, &mut pq_server)?;

    let mut daemon = {
        let mut cmd = net.server.command(&tlsmon.display().to_string());
        cmd.args([
            "run",
            "--interface",
            NIC_A,
            "--interface",
            NIC_B,
            "--listen",
            TLSMON_LISTEN,
        ]);
        Background::spawn("tlsmon", cmd, dir)?
    };
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

    let rules = repo_root().join("deploy/prometheus/tlsmon-rules.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules:?}\nscrape_configs:\n  - job_name: tlsmon\n    static_configs:\n      - targets: ['{TLSMON_LISTEN}']\n",
        ),
    )?;
    let data_dir = dir.join("prometheus-data");
    let mut prometheus = {
        let mut cmd = net.server.command("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data_dir.display()))
            .arg(format!("--web.listen-address={PROMETHEUS_LISTEN}"))
            .arg("--log.level=warn");
        Background::spawn("prometheus", cmd, dir)?
    };
    let prom = Prometheus {
        ns: &net.server,
        addr: PROMETHEUS_LISTEN.parse()?,
    };
    // Scraped before the first handshake, so every rate starts from a sample.
    poll(
        "Prometheus scraped tlsmon",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            prometheus.check_running()?;
            let up = prom.query(r#"up{job="tlsmon"} == 1"#)?;
            Ok((!up.is_empty()).then_some(()))
        },
    )
    .with_context(|| format!("Prometheus output:\n{}", prometheus.log()))?;
    let started = unix_now();

    let cases = cases(&pki);
    for round in 0..rounds {
        if round > 0 {
            std::thread::sleep(pause);
        }
        make_connections(&net, &cases)?;
        let mut client = net.client.command(peer);
        client
            .arg("client")
            .arg(format!("--connect={SERVER_A}:{PORT_PQ}"))
            .arg(format!("--sni={SERVER_NAME}"))
            .arg("--ca")
            .arg(&pki.ca)
            .arg(format!("--groups={PQ_GROUP},x25519"));
        let (status, output) = run_bounded(client, Duration::from_secs(20))?;
        ensure!(status.success(), "rustls client: {status}\n{output}");
        ensure!(output.contains(PQ_GROUP), "not negotiated: {output}");
    }
    let per_round: u32 = cases.iter().map(|c| c.times).sum::<u32>() + 1;
    let total = f64::from(per_round * rounds);
    poll(
        "tlsmon reported every handshake",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            daemon.check_running()?;
            let s = scrape(&net.server)?;
            let seen = s.sum("tlsmon_handshakes_total", &[]);
            ensure!(
                seen <= total,
                "{seen} handshakes counted, only {total} made"
            );
            let idle = s.value("tlsmon_flows_tracked", &[]) == Some(0.0);
            Ok((seen == total && idle).then_some(()))
        },
    )
    .with_context(|| format!("tlsmon output:\n{}", daemon.log()))?;
    poll(
        "Prometheus has scraped every handshake",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            prometheus.check_running()?;
            let r = prom.query("sum(tlsmon_handshakes_total)")?;
            Ok((r.first().map(sample_value) == Some(total)).then_some(()))
        },
    )?;
    let exports_diagnoses = scrape(&net.server)?.types.contains_key(DIAGNOSES);

    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(
        repo_root().join("deploy/grafana/tlsmon.json"),
    )?)?;
    let all_values = check_variables(&prom, &dashboard)?;
    check_panels(&prom, &dashboard, &all_values, exports_diagnoses)?;
    check_what_the_panels_say(&prom, &dashboard, &all_values, &cases, rounds)?;
    check_alerts_pending(&prom)?;

    if let Some(keep) = std::env::var_os("TLSMON_DASHBOARD_KEEP") {
        let ended = unix_now();
        prometheus.stop()?;
        keep_data(&data_dir, Path::new(&keep), started, ended)?;
    }
    let status = daemon.stop()?;
    ensure!(status.success(), "tlsmon exit: {status}\n{}", daemon.log());
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The variables resolve like Grafana's: `instance` to the one scraped target,
/// `device` to both NICs. Returns each variable's "All" value.
fn check_variables(prom: &Prometheus, dashboard: &Value) -> Result<Vec<(String, String)>> {
    let vars = dashboard["templating"]["list"]
        .as_array()
        .context("no templating list")?;
    let mut all_values = Vec::new();
    let mut resolved = Vec::new();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().context("variable without name")?;
        let all = v["allValue"]
            .as_str()
            .context("variable without allValue")?;
        all_values.push((name.to_owned(), all.to_owned()));
        let query = v["query"]["query"]
            .as_str()
            .or_else(|| v["query"].as_str())
            .context("variable without query")?;
        resolved.push((name.to_owned(), query.to_owned()));
    }
    let names: Vec<&str> = all_values.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["instance", "device"], "the dashboard's variables");
    let want: [(&str, BTreeSet<String>); 2] = [
        ("instance", [TLSMON_LISTEN.to_owned()].into()),
        ("device", [NIC_A.to_owned(), NIC_B.to_owned()].into()),
    ];
    for ((name, query), (want_name, want_values)) in resolved.iter().zip(want) {
        assert_eq!(name, want_name);
        let got = label_values(prom, query, &all_values)?;
        assert_eq!(got, want_values, "values of ${name} ({query})");
    }
    Ok(all_values)
}

/// Every query of every panel returns at least one sample with a number.
fn check_panels(
    prom: &Prometheus,
    dashboard: &Value,
    all_values: &[(String, String)],
    exports_diagnoses: bool,
) -> Result<()> {
    let mut panels = Vec::new();
    query_panels(
        dashboard["panels"].as_array().context("no panels")?,
        &mut panels,
    );
    let mut empty = Vec::new();
    let mut evaluated = 0;
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        let targets = p["targets"].as_array().context("panel without targets")?;
        ensure!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            let expr = t["expr"].as_str().context("target without expr")?;
            let q = substitute(expr, all_values);
            ensure!(!q.contains('$'), "unresolved variable in {title:?}: {q}");
            let result = prom
                .query(&q)
                .with_context(|| format!("panel {title:?}: {q}"))?;
            evaluated += 1;
            let has_number = result.iter().any(|s| !sample_value(s).is_nan());
            if !has_number {
                if expr.contains(DIAGNOSES) && !exports_diagnoses {
                    eprintln!(
                        "note: panel {title:?} has no data: this tlsmon does not export {DIAGNOSES} yet"
                    );
                } else {
                    empty.push(format!("{title}: {q}"));
                }
            }
        }
    }
    assert!(
        empty.is_empty(),
        "panel queries without data:\n{}",
        empty.join("\n")
    );
    assert!(evaluated >= 20, "only {evaluated} queries found");
    eprintln!("{evaluated} panel queries evaluated, all with data");
    Ok(())
}

/// The query of the first target of the panel titled `title`, variables filled in.
fn panel_query(
    dashboard: &Value,
    title: &str,
    target: usize,
    all: &[(String, String)],
) -> Result<String> {
    let mut panels = Vec::new();
    query_panels(
        dashboard["panels"].as_array().context("no panels")?,
        &mut panels,
    );
    let p = panels
        .iter()
        .find(|p| p["title"] == title)
        .with_context(|| format!("no panel {title:?}"))?;
    let expr = p["targets"][target]["expr"]
        .as_str()
        .with_context(|| format!("panel {title:?} has no target {target}"))?;
    Ok(substitute(expr, all))
}

/// (device, label) -> value of each sample.
fn by_device(result: &[Value], label: &str) -> Vec<(String, String, f64)> {
    let mut v: Vec<(String, String, f64)> = result
        .iter()
        .map(|s| {
            let l = |n: &str| s["metric"][n].as_str().unwrap_or("").to_owned();
            (l("device"), l(label), sample_value(s))
        })
        .collect();
    v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    v
}

/// The panels tell what the traffic was.
fn check_what_the_panels_say(
    prom: &Prometheus,
    dashboard: &Value,
    all: &[(String, String)],
    cases: &[tlsmon_tests::two_path_scenario::Case],
    rounds: u32,
) -> Result<()> {
    // Failure ratio per device: none of NIC A's handshakes fail; NIC B's share is
    // the case table's (a ratio of rates over the same window is exact in the
    // long run; allow for the edges of the window).
    let ratio = prom.query(&panel_query(dashboard, "Failure ratio per device", 0, all)?)?;
    let ratio = by_device(&ratio, "instance");
    let (mut failed_b, mut all_b) = (0u32, 0u32);
    for c in cases.iter().filter(|c| device_of(c.route) == NIC_B) {
        all_b += c.times;
        failed_b += if c.failure.is_some() { c.times } else { 0 };
    }
    let want_b = f64::from(failed_b) / f64::from(all_b);
    assert_eq!(ratio.len(), 2, "{ratio:?}");
    assert_eq!((ratio[0].0.as_str(), ratio[0].2), (NIC_A, 0.0), "{ratio:?}");
    assert_eq!(ratio[1].0, NIC_B, "{ratio:?}");
    assert!(
        (ratio[1].2 - want_b).abs() < 0.15,
        "failure ratio on {NIC_B}: {} (the cases make {want_b})",
        ratio[1].2
    );
    // Old versions: only the legacy client offers them, on NIC B.
    let old = prom.query(&panel_query(
        dashboard,
        "Who still offers old versions",
        0,
        all,
    )?)?;
    let old: Vec<(String, String)> = by_device(&old, "version")
        .into_iter()
        .map(|(d, v, _)| (d, v))
        .collect();
    assert_eq!(
        old,
        [
            (NIC_B.to_owned(), "TLSv1.0".to_owned()),
            (NIC_B.to_owned(), "TLSv1.1".to_owned())
        ],
        "who offers old versions"
    );
    // Post-quantum: offered and negotiated on NIC A, by the rustls pair alone.
    let title = "Post-quantum key exchange: offered and negotiated";
    for target in [0, 1] {
        let pq = prom.query(&panel_query(dashboard, title, target, all)?)?;
        let pq: Vec<(String, String)> = by_device(&pq, "group")
            .into_iter()
            .filter(|(_, _, v)| *v > 0.0)
            .map(|(d, g, _)| (d, g))
            .collect();
        assert_eq!(
            pq,
            [(NIC_A.to_owned(), PQ_GROUP.to_owned())],
            "{title}, query {target}"
        );
    }
    // The alerts table counts what was sent, per device and sender.
    let alerts = prom.query(&panel_query(dashboard, "Alerts and who sent them", 0, all)?)?;
    let alerts: BTreeSet<(String, String)> = by_device(&alerts, "alert")
        .into_iter()
        .map(|(d, a, _)| (d, a))
        .collect();
    let want: BTreeSet<(String, String)> = cases
        .iter()
        .filter_map(|c| c.failure.filter(|f| !f.alert.is_empty()).map(|f| (c, f)))
        .map(|(c, f)| (device_of(c.route).to_owned(), f.alert.to_owned()))
        .collect();
    assert_eq!(alerts, want, "alerts table after {rounds} rounds");
    Ok(())
}

/// The rules' failure-ratio and outlier alerts hold for NIC B (pending: their
/// `for` is 10 minutes), for nothing else.
fn check_alerts_pending(prom: &Prometheus) -> Result<()> {
    let want: BTreeSet<(String, String)> = [
        "TlsmonDeviceFailureRatioOutlier",
        "TlsmonHandshakeFailureRatioHigh",
    ]
    .iter()
    .map(|a| ((*a).to_owned(), NIC_B.to_owned()))
    .collect();
    poll(
        "the rules' alerts pending for NIC B",
        Duration::from_secs(30),
        Duration::from_millis(500),
        || {
            let data = prom.api("/api/v1/alerts".to_owned())?;
            let got: BTreeSet<(String, String)> = data["alerts"]
                .as_array()
                .context("no alerts list")?
                .iter()
                .map(|a| {
                    let l = |n: &str| a["labels"][n].as_str().unwrap_or("").to_owned();
                    (l("alertname"), l("device"))
                })
                .collect();
            ensure!(got.is_subset(&want), "unexpected alerts: {got:?}");
            ensure!(got == want, "active so far: {got:?}");
            Ok(Some(()))
        },
    )
}

/// Moves Prometheus's data (stopped, so the head is in its WAL) to `keep`, with
/// `range` holding the start and end of the traffic (Unix seconds).
fn keep_data(data: &Path, keep: &Path, started: u64, ended: u64) -> Result<()> {
    if keep.exists() {
        std::fs::remove_dir_all(keep)?;
    }
    if let Some(parent) = keep.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::rename(data, keep).is_err() {
        run_checked(Command::new("cp").arg("-a").arg(data).arg(keep))?;
    }
    std::fs::write(keep.join("range"), format!("{started} {ended}\n"))?;
    Ok(())
}
