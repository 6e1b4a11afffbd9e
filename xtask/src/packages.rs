//! The Debian packages the test suite drives (real TLS stacks, a proxy, capture
//! tools, Prometheus), installed with apt when missing so that `cargo xtask test`
//! works on a fresh machine by itself. `.ci/run` relies on this list too.

use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// Packages the tests need: openssl and gnutls-bin (TLS peers), haproxy and socat
/// (the proxy path), tshark (cross-checks), tcpdump, bpftool, iproute2 (namespaces,
/// veth, tc), prometheus (the scrape test), tcpreplay (the flood memory test), procps
/// (sysctl, for the namespaces' settings).
pub const TEST_PACKAGES: &[&str] = &[
    "openssl",
    "gnutls-bin",
    "tshark",
    "haproxy",
    "socat",
    "bpftool",
    "prometheus",
    "iproute2",
    "tcpdump",
    "tcpreplay",
    "procps",
];

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("install ok installed"))
}

fn apt_get(args: &[&str]) -> Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Installs whichever of [`TEST_PACKAGES`] is missing (nothing to do when all are).
pub fn ensure_test_packages() -> Result<()> {
    let missing: Vec<&str> = TEST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing test dependencies with apt: {}",
        missing.join(" ")
    );
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the tests need these packages: {} (run as root, or `apt-get install` them)",
            missing.join(" ")
        );
    }
    apt_get(&["update", "-q"])?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend(&missing);
    apt_get(&install)
}
