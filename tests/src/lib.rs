//! Shared helpers for tlsmon end-to-end tests: recorded corpus, tshark oracle,
//! synthetic frames and TLS payloads, namespaces, polling with deadlines, and for
//! the two-path scenario: background processes with logs, a test PKI, a reset
//! server, an HTTP client and a Prometheus text-format parser; and the differential
//! harness that compares the daemon's records with an offline analysis of a capture.

pub mod attached;
pub mod binary;
pub mod certificate_names;
pub mod corpus;
pub mod differential;
pub mod exposition;
pub mod flood;
pub mod frames;
pub mod hostile;
pub mod http_get;
pub mod netns;
pub mod pki;
pub mod poll;
pub mod process;
pub mod reset_server;
pub mod syn_ack_rewrite;
pub mod topology;
pub mod tshark;
pub mod two_path_scenario;

/// True when the tests run as root (the end-to-end tests need it: namespaces, BPF).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether an end-to-end test that needs root can run: true as root. Otherwise it
/// is an error under CI (which must run it) and, outside CI, `false` with a line
/// saying that `test` was skipped.
pub fn root_or_skip(test: &str) -> anyhow::Result<bool> {
    if is_root() {
        return Ok(true);
    }
    if std::env::var_os("CI").is_some() {
        anyhow::bail!("this end-to-end test needs root, and CI must run it");
    }
    eprintln!("SKIPPED {test}: needs root (namespaces, BPF)");
    Ok(false)
}

/// Runs `scenario` as root (see [`root_or_skip`]) in `$TMPDIR/tlsmon-<name>-<pid>`,
/// which is removed when the scenario passed and kept (its path printed) when it
/// failed or panicked, for its logs.
pub fn in_scratch_dir(
    name: &str,
    scenario: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if !root_or_skip(name)? {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("tlsmon-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut kept = KeptUnlessPassed(dir, false);
    let result = scenario(&kept.0);
    kept.1 = result.is_ok();
    result
}

/// A scratch directory removed on drop once its scenario passed, kept otherwise.
struct KeptUnlessPassed(std::path::PathBuf, bool);

impl Drop for KeptUnlessPassed {
    fn drop(&mut self) {
        if self.1 && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        } else {
            eprintln!("logs kept in {}", self.0.display());
        }
    }
}
