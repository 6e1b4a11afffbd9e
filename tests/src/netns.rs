//! Network namespaces, veth pairs and processes for end-to-end tests, each behind
//! a guard that removes it on drop, so a failing test leaves nothing behind.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use crate::poll;

static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// A short name unique to this process and call: `tm<pid % 100000><n>`-style,
/// short enough for an interface name (15 bytes) with a suffix.
pub fn unique_name(prefix: &str) -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// Runs a command to completion; panics with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Stdout of a command that must succeed.
pub fn stdout(program: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&run(program, args).stdout).into_owned()
}

/// A network namespace (`ip netns add`), deleted on drop with everything in it.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates a namespace with loopback up and IPv6 off (no router solicitations
    /// or other unsolicited traffic that would make packet counts inexact).
    pub fn new(prefix: &str) -> Netns {
        let name = unique_name(prefix);
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME args...`, which must succeed; returns stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        stdout("ip", &full)
    }

    /// Like [`Netns::exec`] but returns the output whatever the exit status.
    pub fn exec_unchecked(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec: {e}"))
    }

    /// A command to run inside the namespace (not started).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a new thread that has joined this namespace, and returns its
    /// result (a panic in `f` fails the caller with the same message).
    pub fn run_inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let handle = std::thread::spawn(move || {
            enter(&path);
            f()
        });
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Makes the calling thread join this namespace for good.
    pub fn enter_current_thread(&self) {
        enter(&format!("/run/netns/{}", self.name));
    }
}

fn enter(path: &str) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a valid namespace fd; only the calling thread moves.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace also deletes the veth ends inside it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Two namespaces joined by a veth pair with IPv4 addresses 10.77.N.1 (server side)
/// and 10.77.N.2 (client side), both ends up.
pub struct VethLink {
    /// The server's namespace (where tlsmon attaches, to `server_if`).
    pub server: Netns,
    /// The client's namespace.
    pub client: Netns,
    /// Interface name of the server's end.
    pub server_if: String,
    /// Interface name of the client's end.
    pub client_if: String,
    /// Server address.
    pub server_ip: String,
    /// Client address.
    pub client_ip: String,
}

impl VethLink {
    /// Creates the namespaces and the link; `subnet` picks 10.77.`subnet`.0/24.
    pub fn new(subnet: u8) -> VethLink {
        let server = Netns::new("tms");
        let client = Netns::new("tmc");
        let server_if = unique_name("vs");
        let client_if = unique_name("vc");
        run(
            "ip",
            &[
                "link",
                "add",
                &server_if,
                "netns",
                server.name(),
                "type",
                "veth",
                "peer",
                "name",
                &client_if,
                "netns",
                client.name(),
            ],
        );
        let server_ip = format!("10.77.{subnet}.1");
        let client_ip = format!("10.77.{subnet}.2");
        server.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{server_ip}/24"),
            "dev",
            &server_if,
        ]);
        client.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{client_ip}/24"),
            "dev",
            &client_if,
        ]);
        server.exec(&["ip", "link", "set", &server_if, "up"]);
        client.exec(&["ip", "link", "set", &client_if, "up"]);
        VethLink {
            server,
            client,
            server_if,
            client_if,
            server_ip,
            client_ip,
        }
    }
}

/// Port of the OpenSSL server the tests start on the server side.
pub const TLS_PORT: u16 = 4433;

impl VethLink {
    /// Starts `openssl s_server` on [`TLS_PORT`] of the server side for `naccept`
    /// connections, with `extra` flags, and returns once it listens. Its stdin is
    /// kept open: s_server ends when its stdin closes.
    pub fn openssl_server(&self, cert: &TestCert, naccept: u32, extra: &[&str]) -> ChildGuard {
        let guard = ChildGuard(
            self.server
                .command("openssl")
                .args(["s_server", "-accept", &TLS_PORT.to_string(), "-quiet"])
                .args(["-naccept", &naccept.to_string()])
                .args(["-cert", &cert.cert(), "-key", &cert.key()])
                .args(extra)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start openssl s_server: {e}")),
        );
        wait_listening(&self.server, TLS_PORT);
        guard
    }

    /// One `openssl s_client` from the client side that sends nothing and closes
    /// after the handshake (or its failure), with `extra` flags; bounded at 10 s
    /// (a hang shows as timeout's exit status 124).
    pub fn openssl_handshake(&self, extra: &[&str]) -> ExitStatus {
        self.client
            .command("timeout")
            .args(["10", "openssl", "s_client", "-connect"])
            .arg(format!("{}:{TLS_PORT}", self.server_ip))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run openssl s_client: {e}"))
    }
}

/// A child process killed (SIGKILL) and reaped on drop.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    /// Waits up to `timeout` for the process to exit; true when it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(_)) = self.0.try_wait() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something in `ns` listens on TCP `port`.
pub fn wait_listening(ns: &Netns, port: u16) {
    let filter = format!("sport = :{port}");
    poll::until(
        &format!("a listener on port {port}"),
        Duration::from_secs(10),
        || {
            let out = ns.exec_unchecked(&["ss", "-Htln", &filter]);
            (!String::from_utf8_lossy(&out.stdout).trim().is_empty()).then_some(())
        },
    );
}

/// A self-signed P-256 certificate and key made by openssl in a temp directory
/// (removed on drop).
pub struct TestCert {
    /// Directory holding cert.pem and key.pem.
    pub dir: std::path::PathBuf,
}

impl TestCert {
    /// Generates the pair.
    pub fn new() -> TestCert {
        let dir = std::env::temp_dir().join(unique_name("tlsmon-cert-"));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=tlsmon.test",
                "-days",
                "2",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
        );
        TestCert { dir }
    }

    /// Path of the certificate.
    pub fn cert(&self) -> String {
        self.dir.join("cert.pem").to_string_lossy().into_owned()
    }

    /// Path of the key.
    pub fn key(&self) -> String {
        self.dir.join("key.pem").to_string_lossy().into_owned()
    }
}

impl Default for TestCert {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
