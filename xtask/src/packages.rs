//! The Debian packages the test suite drives (real TLS stacks, a proxy, capture
//! tools, Prometheus), installed with apt when missing, and the Python packages it
//! runs (the Kubernetes schema validator), installed with pip into a virtual
//! environment of the project's own, so that `cargo xtask test` works on a fresh
//! machine by itself. `.ci/run` relies on these lists too.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// Packages the tests need: openssl and gnutls-bin (TLS peers), haproxy and socat
/// (the proxy path), tshark (cross-checks), tcpdump, bpftool, iproute2 (namespaces,
/// veth, tc), prometheus (the scrape test, promtool for the alert rules),
/// tcpreplay (the flood memory test), procps (sysctl, for the namespaces'
/// settings), python3-venv (the environment for [`PIP_PACKAGES`]), curl (the
/// SOCKS4/SOCKS5 clients of the preamble test).
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
    "python3-venv",
    "procps",
    "curl",
];

/// PyPI packages the tests run: kubernetes-validate checks the manifests of
/// deploy/kubernetes/ against the Kubernetes schema (tests/tests/deploy.rs).
pub const PIP_PACKAGES: &[&str] = &["kubernetes-validate"];

/// Where the tests find the virtual environment with [`PIP_PACKAGES`]
/// (tests/tests/deploy.rs looks for `bin/` here).
pub fn test_venv(root: &Path) -> PathBuf {
    root.join("target").join("test-tools").join("venv")
}

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

/// Installs whichever of [`TEST_PACKAGES`] is missing (nothing to do when all
/// are), then [`PIP_PACKAGES`] into [`test_venv`].
pub fn ensure_test_packages(root: &Path) -> Result<()> {
    ensure_apt_packages()?;
    ensure_pip_packages(root)
}

fn ensure_apt_packages() -> Result<()> {
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

/// Creates [`test_venv`] if needed and installs [`PIP_PACKAGES`] into it when
/// one of their commands is missing there.
fn ensure_pip_packages(root: &Path) -> Result<()> {
    let venv = test_venv(root);
    let bin = venv.join("bin");
    if PIP_PACKAGES.iter().all(|p| bin.join(p).is_file()) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing {} with pip into {}",
        PIP_PACKAGES.join(" "),
        venv.display()
    );
    if !bin.join("python3").is_file() {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("running python3 -m venv")?;
        if !status.success() {
            bail!("python3 -m venv {} failed ({status})", venv.display());
        }
    }
    let status = Command::new(bin.join("python3"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PIP_PACKAGES)
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install {} failed ({status})", PIP_PACKAGES.join(" "));
    }
    Ok(())
}
