//! `cargo xtask run -- ARGS` and `cargo xtask test`: build, then run as root.

use std::{os::unix::process::CommandExt, path::Path, process::Command};

use anyhow::{bail, Context, Result};

use crate::setup;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `command` as root: itself when already root, else through sudo (keeping the
/// environment so cargo and rustup are found).
pub(crate) fn as_root(mut command: Command) -> Result<Command> {
    if is_root() {
        return Ok(command);
    }
    if Command::new("sudo").arg("-n").arg("true").status().is_err() {
        bail!("tlsmon needs root (eBPF and tc): run this as root or install sudo");
    }
    let mut sudo = Command::new("sudo");
    sudo.arg("-E").arg(command.get_program());
    sudo.args(command.get_args());
    if let Some(dir) = command.get_current_dir() {
        sudo.current_dir(dir);
    }
    for (key, value) in command.get_envs() {
        match value {
            Some(v) => sudo.env(key, v),
            None => sudo.env_remove(key),
        };
    }
    command = sudo;
    Ok(command)
}

fn ensure_setup() -> Result<()> {
    if setup::working_bpf_linker().is_none() {
        setup::run()?;
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds tlsmon in release mode and replaces this process with it.
pub fn run(root: &Path, args: Vec<String>) -> Result<()> {
    ensure_setup()?;
    let status = cargo()
        .current_dir(root)
        .args([
            "build",
            "--release",
            "--package",
            "tlsmon",
            "--bin",
            "tlsmon",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building tlsmon failed ({status})");
    }
    let binary = root.join("target/release/tlsmon");
    let mut command = Command::new(&binary);
    command.args(&args);
    let mut command = as_root(command)?;
    // exec: signals (Ctrl-C, SIGTERM) reach tlsmon itself, which detaches cleanly.
    let error = command.exec();
    Err(error).with_context(|| format!("starting {}", binary.display()))
}

/// Runs the whole test suite as root. Test binaries that share kernel state
/// serialise their own tests; cargo runs the binaries one after another.
pub fn test(root: &Path, extra: Vec<String>) -> Result<()> {
    ensure_setup()?;
    crate::packages::ensure_test_packages(root)?;
    let mut command = cargo();
    command
        .current_dir(root)
        .args(["test", "--workspace"])
        .args(&extra);
    let status = as_root(command)?.status().context("running cargo test")?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
