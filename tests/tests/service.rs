//! Which service: every handshake of a local socket is attributed to the cgroup of
//! the process that owns it, and forwarded traffic to none.
//!
//! The host namespace runs two OpenSSL servers, each started inside a cgroup this
//! test creates under the cgroup v2 hierarchy (`tlsmon-test-<pid>.slice/web-a.service`
//! and `.../web-b.service`); web-b only speaks TLS 1.2, so the TLS 1.3-only clients
//! of the peer namespace fail against it. A client in a third cgroup of the host
//! connects out to a server in the peer namespace, and a client in a third
//! namespace reaches that server through the host, which forwards it. A fourth
//! server's cgroup is removed (the server moved elsewhere first) before anyone
//! connects: its handshake is reported as vanished. tlsmon (the
//! daemon with an events file, and `watch`) runs in the host namespace with the
//! host's mount table, so it sees the hierarchy. Exact counts everywhere.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    binary::tlsmon_binary,
    exposition::Scrape,
    http_get,
    netns::{run, wait_listening, ChildGuard, Netns, TestCert, VethLink},
    poll,
    process::Background,
};

/// Where the daemon serves /metrics, inside the host namespace.
const LISTEN: &str = "127.0.0.1:9820";
/// The healthy server, web-a.
const PORT_A: u16 = 4433;
/// The misconfigured server, web-b (TLS 1.2 only).
const PORT_B: u16 = 4434;
/// The server in the peer namespace (outbound and forwarded handshakes).
const PORT_PEER: u16 = 4435;
/// The server whose cgroup is removed before its handshake is reported.
const PORT_GONE: u16 = 4436;
/// Handshakes made to web-a and to web-b.
const TO_A: usize = 3;
const TO_B: usize = 2;

/// A cgroup created for the test under the cgroup v2 hierarchy; on drop every
/// process in it is killed and the directory removed.
struct TestCgroup {
    dir: PathBuf,
    /// Its path in the hierarchy, as tlsmon reports it.
    path: String,
}

impl TestCgroup {
    fn new(root: &Path, relative: &str) -> TestCgroup {
        let dir = root.join(relative);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("creating cgroup {}: {e}", dir.display()));
        TestCgroup {
            dir,
            path: format!("/{relative}"),
        }
    }

    /// A command that runs `program args...` in namespace `ns`, inside this cgroup
    /// (the shell moves itself in, then becomes the program).
    fn command_in(&self, ns: &Netns, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", ns.name()))
            .args(["sh", "-c", "echo $$ > \"$0\" && exec \"$@\""])
            .arg(self.dir.join("cgroup.procs"))
            .arg(program)
            .args(args);
        c
    }

    fn kill_all(&self) {
        // cgroup.kill (Linux 5.14+) kills every process in the cgroup at once.
        let _ = std::fs::write(self.dir.join("cgroup.kill"), "1");
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.kill_all();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        // The directory can only go once its last process has been reaped.
        while self.dir.exists()
            && std::fs::remove_dir(&self.dir).is_err()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The slice holding the test's cgroups; created before them, removed after.
struct TestSlice(PathBuf);

impl Drop for TestSlice {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Where the cgroup v2 hierarchy is mounted here.
fn cgroup2_root() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    tlsmon::attribution::mounts::cgroup2_in(&mountinfo)
        .expect("these tests need a cgroup v2 hierarchy")
        .mount_point
}

/// A third namespace whose traffic to the peer namespace the host forwards.
struct Forwarded {
    ns: Netns,
    client_ip: String,
}

fn forwarded_network(link: &VethLink, subnet: u8) -> Forwarded {
    let ns = Netns::new("tmf");
    let host_if = tlsmon_tests::netns::unique_name("vf");
    let far_if = tlsmon_tests::netns::unique_name("vg");
    run(
        "ip",
        &[
            "link",
            "add",
            &host_if,
            "netns",
            link.server.name(),
            "type",
            "veth",
            "peer",
            "name",
            &far_if,
            "netns",
            ns.name(),
        ],
    );
    let host_ip = format!("10.79.{subnet}.1");
    let client_ip = format!("10.79.{subnet}.2");
    link.server.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{host_ip}/24"),
        "dev",
        &host_if,
    ]);
    link.server.exec(&["ip", "link", "set", &host_if, "up"]);
    link.server
        .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    ns.exec(&[
        "ip",
        "addr",
        "add",
        &format!("{client_ip}/24"),
        "dev",
        &far_if,
    ]);
    ns.exec(&["ip", "link", "set", &far_if, "up"]);
    ns.exec(&["ip", "route", "add", "default", "via", &host_ip]);
    link.client.exec(&[
        "ip",
        "route",
        "add",
        &format!("10.79.{subnet}.0/24"),
        "via",
        &link.server_ip,
    ]);
    Forwarded { ns, client_ip }
}

/// An `openssl s_server` for `naccept` connections with `extra` flags, started by
/// `command` (stdin kept open: s_server ends when it closes).
fn openssl_server(mut command: Command, cert: &TestCert, port: u16, extra: &[&str]) -> ChildGuard {
    command
        .args(["s_server", "-accept", &port.to_string(), "-quiet"])
        .args(["-cert", &cert.cert(), "-key", &cert.key()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ChildGuard(
        command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start openssl s_server: {e}")),
    )
}

/// One TLS 1.3-only `openssl s_client` to `target` run by `command` (bounded at
/// 10 s); true when the handshake succeeded.
fn openssl_client(mut command: Command, target: &str) -> bool {
    command
        .args(["-connect", target, "-tls1_3"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run openssl s_client: {e}"))
        .success()
}

fn events_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON event"))
        .collect()
}

/// One scrape of /metrics, fetched inside the host namespace.
fn scrape(ns: &Netns) -> Option<Scrape> {
    let addr: SocketAddr = LISTEN.parse().unwrap();
    let response = ns
        .run_inside(move || http_get::get(addr, "/metrics"))
        .ok()?;
    (response.status == 200).then(|| Scrape::parse(&response.body).expect("a valid exposition"))
}

/// A directory for the daemon's files, removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn handshakes_are_attributed_to_the_service_that_owns_the_local_socket() {
    let root = cgroup2_root();
    let link = VethLink::new(110);
    let forwarded = forwarded_network(&link, 110);
    let cert = TestCert::new();
    let files =
        TempDir(std::env::temp_dir().join(format!("tlsmon-service-{}", std::process::id())));
    std::fs::create_dir_all(&files.0).unwrap();
    let events = files.0.join("events.jsonl");

    let slice_name = format!("tlsmon-test-{}.slice", std::process::id());
    let _slice = TestSlice(root.join(&slice_name));
    let web_a = TestCgroup::new(&root, &format!("{slice_name}/web-a.service"));
    let web_b = TestCgroup::new(&root, &format!("{slice_name}/web-b.service"));
    let client = TestCgroup::new(&root, &format!("{slice_name}/client.service"));
    // A server started in `short-lived.service`, then moved to `moved.service`
    // before the first handshake, and its first cgroup removed: its sockets still
    // carry the removed cgroup's id.
    let short_lived = TestCgroup::new(&root, &format!("{slice_name}/short-lived.service"));
    let moved = TestCgroup::new(&root, &format!("{slice_name}/moved.service"));
    // Distinct cgroups, so distinct ids: what the kernel will report.
    let ids: Vec<u64> = [&web_a, &web_b, &client]
        .iter()
        .map(|c| std::fs::metadata(&c.dir).unwrap().ino())
        .collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");

    // tlsmon in the host namespace, with the host's mounts (nsenter, unlike
    // `ip netns exec`, leaves /sys and so the cgroup hierarchy in place).
    let tlsmon = tlsmon_binary().unwrap();
    let in_host = |args: &[&str]| {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", link.server.name()))
            .arg(&tlsmon)
            .args(args);
        c
    };
    let mut daemon_cmd = in_host(&["run", "--interface", &link.server_if, "--listen", LISTEN]);
    daemon_cmd.arg("--events-file").arg(&events);
    let mut daemon = Background::spawn("tlsmon-run", daemon_cmd, &files.0).unwrap();
    let mut watch = Background::spawn(
        "tlsmon-watch",
        in_host(&["watch", "--interface", &link.server_if]),
        &files.0,
    )
    .unwrap();
    poll::until("both tlsmons to attach", Duration::from_secs(30), || {
        daemon.check_running().unwrap();
        watch.check_running().unwrap();
        (tcx_programs_of_ours(&link.server, &link.server_if) == (2, 2)).then_some(())
    });

    // Servers: web-a and web-b on the host, each in its cgroup; one in the peer.
    let _a = openssl_server(
        web_a.command_in(&link.server, "openssl", &[]),
        &cert,
        PORT_A,
        &[],
    );
    let _b = openssl_server(
        web_b.command_in(&link.server, "openssl", &[]),
        &cert,
        PORT_B,
        &["-tls1_2"],
    );
    let _peer = openssl_server(link.client.command("openssl"), &cert, PORT_PEER, &[]);
    wait_listening(&link.server, PORT_A);
    wait_listening(&link.server, PORT_B);
    wait_listening(&link.client, PORT_PEER);
    let gone = openssl_server(
        short_lived.command_in(&link.server, "openssl", &[]),
        &cert,
        PORT_GONE,
        &[],
    );
    wait_listening(&link.server, PORT_GONE);
    std::fs::write(moved.dir.join("cgroup.procs"), gone.0.id().to_string()).unwrap();
    std::fs::remove_dir(&short_lived.dir).expect("the emptied cgroup can be removed");

    let s_client = |ns: &Netns| {
        let mut c = ns.command("timeout");
        c.args(["10", "openssl", "s_client"]);
        c
    };
    let host = |port: u16| format!("{}:{port}", link.server_ip);
    for _ in 0..TO_A {
        assert!(
            openssl_client(s_client(&link.client), &host(PORT_A)),
            "web-a refused a client"
        );
    }
    for _ in 0..TO_B {
        assert!(
            !openssl_client(s_client(&link.client), &host(PORT_B)),
            "web-b accepted TLS 1.3"
        );
    }
    let peer = format!("{}:{PORT_PEER}", link.client_ip);
    assert!(
        openssl_client(
            client.command_in(&link.server, "timeout", &["10", "openssl", "s_client"]),
            &peer
        ),
        "the outbound client failed"
    );
    assert!(
        openssl_client(s_client(&forwarded.ns), &peer),
        "the forwarded client failed"
    );

    assert!(
        openssl_client(s_client(&link.client), &host(PORT_GONE)),
        "the server whose cgroup went failed"
    );

    let total = TO_A + TO_B + 3;
    let records = poll::until(
        &format!("{total} events in {}", events.display()),
        Duration::from_secs(30),
        || {
            daemon.check_running().unwrap();
            let records = events_of(&events);
            (records.len() >= total).then_some(records)
        },
    );
    assert_eq!(records.len(), total, "{records:#?}");

    // (service, cgroup, server port, direction, outcome) -> handshakes.
    type Key = (Option<String>, Option<String>, u64, String, String);
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let mut seen: BTreeMap<Key, usize> = BTreeMap::new();
    for r in &records {
        let key = (
            text(&r["service"]),
            text(&r["cgroup"]),
            r["server_port"].as_u64().unwrap(),
            r["direction"].as_str().unwrap().to_owned(),
            r["outcome"].as_str().unwrap().to_owned(),
        );
        *seen.entry(key).or_default() += 1;
    }
    let local = |service: &str, cgroup: &TestCgroup, port: u16, direction: &str, outcome: &str| {
        (
            Some(service.to_owned()),
            Some(cgroup.path.clone()),
            u64::from(port),
            direction.to_owned(),
            outcome.to_owned(),
        )
    };
    let expected = BTreeMap::from([
        (
            local("web-a.service", &web_a, PORT_A, "inbound", "established"),
            TO_A,
        ),
        (
            local("web-b.service", &web_b, PORT_B, "inbound", "failed"),
            TO_B,
        ),
        (
            local(
                "client.service",
                &client,
                PORT_PEER,
                "outbound",
                "established",
            ),
            1,
        ),
        // Its cgroup is gone: said so, not guessed (and not its new cgroup).
        (
            (
                Some("(vanished)".to_owned()),
                None,
                u64::from(PORT_GONE),
                "inbound".to_owned(),
                "established".to_owned(),
            ),
            1,
        ),
        // Forwarded: no local socket, so neither a cgroup nor a service.
        (
            (
                None,
                None,
                u64::from(PORT_PEER),
                "outbound".to_owned(),
                "established".to_owned(),
            ),
            1,
        ),
    ]);
    assert_eq!(seen, expected, "{records:#?}");
    // The failures are web-b's alone, and are what its configuration makes them.
    for r in records.iter().filter(|r| r["outcome"] == "failed") {
        assert_eq!(r["service"], "web-b.service");
        assert_eq!(
            (&r["failure_reason"], &r["alert"], &r["alert_sender"]),
            (
                &Value::from("alert"),
                &Value::from("protocol_version"),
                &Value::from("server")
            )
        );
    }
    let forwarded_record = records.iter().find(|r| r["service"].is_null()).unwrap();
    assert_eq!(forwarded_record["client_ip"], forwarded.client_ip.as_str());

    // The same on /metrics.
    // The resolver's counters are exported once a second, the handshake counters
    // at once: wait for a tick after the last lookup.
    let resolved = |s: &Scrape| {
        s.sum("tlsmon_cgroup_lookups_total", &[("result", "found")])
            + s.sum("tlsmon_cgroup_lookups_total", &[("result", "cached")])
    };
    let scrape = poll::until(
        "a scrape with every handshake and lookup",
        Duration::from_secs(10),
        || {
            scrape(&link.server).filter(|s| {
                s.sum("tlsmon_handshakes_by_service_total", &[]) == total as f64
                    && resolved(s) >= (total - 2) as f64
                    && s.sum("tlsmon_cgroup_lookups_total", &[("result", "vanished")]) >= 1.0
            })
        },
    );
    // (service, version, outcome) -> handshakes; one sample each.
    let mut by_service: BTreeMap<[String; 3], f64> = BTreeMap::new();
    for s in scrape.select("tlsmon_handshakes_by_service_total", &[]) {
        assert_eq!(s.labels["device"], link.server_if);
        // An empty label value is no label at all in the exposition.
        let key =
            ["service", "version", "outcome"].map(|l| s.labels.get(l).cloned().unwrap_or_default());
        assert_eq!(by_service.insert(key, s.value), None, "{s:?} repeats");
    }
    let key = |service: &str, version: &str, outcome: &str| {
        [service, version, outcome].map(str::to_owned)
    };
    assert_eq!(
        by_service,
        BTreeMap::from([
            (key("web-a.service", "TLSv1.3", "established"), TO_A as f64),
            // web-b never chose a version: it refused TLS 1.3.
            (key("web-b.service", "", "failed"), TO_B as f64),
            (key("client.service", "TLSv1.3", "established"), 1.0),
            (key("", "TLSv1.3", "established"), 1.0),
            (key("(vanished)", "TLSv1.3", "established"), 1.0),
        ])
    );
    assert_eq!(
        resolved(&scrape),
        (total - 2) as f64,
        "one lookup per local handshake whose cgroup exists"
    );
    assert_eq!(
        (
            scrape.sum("tlsmon_cgroup_lookups_total", &[("result", "found")]),
            scrape.sum("tlsmon_cgroup_lookups_total", &[("result", "vanished")]),
            scrape.sum("tlsmon_cgroup_lookups_total", &[("result", "unresolved")]),
        ),
        (3.0, 1.0, 0.0),
        "three cgroups, each walked for once, and the removed one"
    );

    // watch names the service on its lines.
    let lines = poll::until(
        "watch to print every handshake",
        Duration::from_secs(10),
        || {
            let log = watch.log();
            (log.lines().filter(|l| l.contains(" -> ")).count() >= total).then_some(log)
        },
    );
    let count = |needle: &str| lines.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count("service=web-a.service "), TO_A, "{lines}");
    assert_eq!(count("service=web-b.service "), TO_B, "{lines}");
    assert_eq!(count("service=client.service "), 1, "{lines}");
    assert_eq!(count("service=(vanished) "), 1, "{lines}");
    assert_eq!(count("service="), total - 1, "{lines}");

    watch.stop().unwrap();
    daemon.stop().unwrap();
}
