//! `--web.config.file` (issue 11): the endpoint protected as node_exporter's is,
//! with a web config in the exporter-toolkit format (TLS certificate and key,
//! bcrypt `basic_auth_users`; relative paths taken from the file's directory).
//!
//! Checked with curl: no credentials, a wrong password and an unknown user get
//! `401`, the right ones `200` with the metrics; `/healthz` needs no password;
//! plain HTTP to the TLS listener gets no answer; a client trusting another CA
//! refuses the certificate. Then Debian's Prometheus scrapes it over TLS with
//! basic authentication (`up` 1 and tlsmon's series stored), while a second job
//! with a wrong password stays `up` 0. A web config with a plaintext password
//! stops the daemon at start, naming the file and the user.
//!
//! Needs root (namespace, BPF), openssl, curl and prometheus. Without root it is
//! skipped, unless `CI` is set: then it fails.

use std::{net::SocketAddr, path::Path, time::Duration};
use tlsmon_tests::in_scratch_dir;

use anyhow::{ensure, Context, Result};
use tlsmon_tests::{
    binary::tlsmon_binary,
    http_get::{encode_query_value, get},
    netns::Netns,
    pki::Pki,
    process::{poll, run_bounded, Background},
};

const SERVER_NAME: &str = "server.test";
const PORT: u16 = 9808;
const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse";
const PROMETHEUS_LISTEN: &str = "127.0.0.1:9090";

/// curl inside `ns` against the endpoint by its certificate's name; returns
/// curl's exit code and what it printed (see [`status_of`]).
fn curl(ns: &Netns, ca: &Path, url_path: &str, extra: &[&str]) -> Result<(i32, String)> {
    let mut cmd = ns.command("curl");
    cmd.args([
        "-sS",
        "--max-time",
        "10",
        "-w",
        "\nHTTP_STATUS=%{http_code}\n",
    ])
    .arg("--cacert")
    .arg(ca)
    .args(["--resolve", &format!("{SERVER_NAME}:{PORT}:127.0.0.1")])
    .args(extra)
    .arg(format!("https://{SERVER_NAME}:{PORT}{url_path}"));
    let (status, output) = run_bounded(cmd, Duration::from_secs(20))?;
    Ok((status.code().unwrap_or(-1), output))
}

/// The HTTP status curl reported (`-w` writes it on a line of its own; curl's
/// own error message, from standard error, may follow).
fn status_of(output: &str) -> &str {
    output
        .lines()
        .find_map(|l| l.strip_prefix("HTTP_STATUS="))
        .unwrap_or("")
        .trim()
}

#[test]
fn the_endpoint_wants_tls_and_a_password_like_node_exporter() -> Result<()> {
    in_scratch_dir("web_config", scenario)
}

fn scenario(dir: &Path) -> Result<()> {
    let pki = Pki::generate(dir, SERVER_NAME)?;
    let hash = bcrypt::hash(PASSWORD, 6)?;
    // Relative paths: the files sit next to the web config.
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  min_version: TLS12\nbasic_auth_users:\n  {USER}: '{hash}'\n"
        ),
    )?;
    let ns = Netns::new("tmw");
    let tlsmon = tlsmon_binary()?;
    let mut daemon = {
        let mut cmd = ns.command(&tlsmon.display().to_string());
        cmd.args(["run", "--interface", "lo", "--listen"])
            .arg(format!("127.0.0.1:{PORT}"))
            .arg("--web.config.file")
            .arg(&web);
        Background::spawn("tlsmon", cmd, dir)?
    };
    poll(
        "tlsmon serving /healthz over TLS",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            daemon.check_running()?;
            let (code, out) = curl(&ns, &pki.ca, "/healthz", &[])?;
            Ok((code == 0 && status_of(&out) == "200").then_some(out))
        },
    )
    .with_context(|| daemon.log())
    .map(|out| assert!(out.starts_with("ok\n"), "{out}"))?;

    let wrong = format!("{USER}:wrong");
    let right = format!("{USER}:{PASSWORD}");
    let stranger = format!("nobody:{PASSWORD}");
    for (what, extra, want) in [
        ("no credentials", vec![], "401"),
        ("a wrong password", vec!["-u", wrong.as_str()], "401"),
        ("an unknown user", vec!["-u", stranger.as_str()], "401"),
        (
            "the right user and password",
            vec!["-u", right.as_str()],
            "200",
        ),
    ] {
        let (code, out) = curl(&ns, &pki.ca, "/metrics", &extra)?;
        assert_eq!(code, 0, "{what}: curl failed: {out}");
        assert_eq!(status_of(&out), want, "{what}: {out}");
        if want == "200" {
            assert!(out.contains("tlsmon_build_info"), "{what}: {out}");
        } else {
            assert!(!out.contains("tlsmon_build_info"), "{what}: {out}");
        }
    }
    // The challenge names the scheme.
    let (_, headers) = curl(&ns, &pki.ca, "/metrics", &["-D", "-", "-o", "/dev/null"])?;
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("www-authenticate: basic"),
        "{headers}"
    );
    // Plain HTTP to the TLS listener: no HTTP answer at all.
    let (status, plain) = run_bounded(
        {
            let mut cmd = ns.command("curl");
            cmd.args([
                "-sS",
                "--max-time",
                "10",
                "-w",
                "\nHTTP_STATUS=%{http_code}\n",
                "-u",
                &right,
            ])
            .arg(format!("http://127.0.0.1:{PORT}/metrics"));
            cmd
        },
        Duration::from_secs(20),
    )?;
    assert!(!status.success(), "plain HTTP was answered: {plain}");
    assert_eq!(status_of(&plain), "000", "{plain}");
    assert!(!plain.contains("tlsmon_build_info"), "{plain}");
    // A client that trusts another CA refuses the server's certificate (curl 60).
    let (code, out) = curl(&ns, &pki.other_ca, "/healthz", &[])?;
    assert_eq!(code, 60, "{out}");

    check_prometheus(&ns, &pki, dir)?;

    let status = daemon.stop()?;
    ensure!(status.success(), "tlsmon exit: {status}\n{}", daemon.log());

    // A plaintext password: the daemon refuses to start, saying where.
    std::fs::write(&web, format!("basic_auth_users:\n  {USER}: {PASSWORD}\n"))?;
    let mut cmd = ns.command(&tlsmon.display().to_string());
    cmd.args(["run", "--interface", "lo", "--listen"])
        .arg(format!("127.0.0.1:{PORT}"))
        .arg("--web.config.file")
        .arg(&web);
    let (status, output) = run_bounded(cmd, Duration::from_secs(20))?;
    assert!(!status.success(), "started with a plaintext password");
    assert!(
        output.contains(&web.display().to_string())
            && output.contains("not a bcrypt hash")
            && output.contains(USER),
        "{output}"
    );
    Ok(())
}

/// Prometheus scrapes tlsmon over TLS with basic auth; a job with the wrong
/// password gets `up` 0.
fn check_prometheus(ns: &Netns, pki: &Pki, dir: &Path) -> Result<()> {
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {ca}\n      server_name: {SERVER_NAME}\n    basic_auth:\n      username: {USER}\n      password: '{password}'\n    static_configs:\n      - targets: ['127.0.0.1:{PORT}']\n",
            ca = pki.ca.display()
        )
    };
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
            job("tlsmon", PASSWORD),
            job("tlsmon-wrong-password", "wrong")
        ),
    )?;
    let mut prometheus = {
        let mut cmd = ns.command("prometheus");
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS_LISTEN}"))
            .arg("--log.level=warn");
        Background::spawn("prometheus", cmd, dir)?
    };
    let addr: SocketAddr = PROMETHEUS_LISTEN.parse()?;
    let query = |q: &str| -> Result<Vec<(String, String)>> {
        let path = format!("/api/v1/query?query={}", encode_query_value(q));
        let resp = ns.run_inside(move || get(addr, &path))?;
        ensure!(
            resp.status == 200,
            "Prometheus: {} {}",
            resp.status,
            resp.body
        );
        let v: serde_json::Value = serde_json::from_str(&resp.body)?;
        Ok(v["data"]["result"]
            .as_array()
            .context("no result")?
            .iter()
            .map(|s| {
                (
                    s["metric"]["job"].as_str().unwrap_or("").to_owned(),
                    s["value"][1].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect())
    };
    poll(
        "Prometheus scraped both jobs",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            prometheus.check_running()?;
            let mut up = query("up")?;
            up.sort();
            let want = [
                ("tlsmon".to_owned(), "1".to_owned()),
                ("tlsmon-wrong-password".to_owned(), "0".to_owned()),
            ];
            Ok((up == want).then_some(()))
        },
    )
    .with_context(|| prometheus.log())?;
    // What was scraped over TLS is tlsmon's.
    let build = query("tlsmon_build_info")?;
    assert_eq!(build, [("tlsmon".to_owned(), "1".to_owned())]);
    prometheus.stop()?;
    Ok(())
}
