//! `cargo xtask setup`: install bpf-linker, built against rustc's own LLVM.
//!
//! Idempotent: a working `bpf-linker --version` means there is nothing to do.
//! Otherwise a persistent LLVM prefix is made under `$CARGO_HOME/tlsmon-llvm-N`
//! (its `lib/` links to the active toolchain's `libLLVM.so.N.*-rust-*`), and
//! `cargo install bpf-linker --no-default-features --features llvm-N` builds against
//! it. The binary keeps that prefix as its runtime library path, so the prefix must
//! outlive the install (unlike a folder in /tmp).

use std::{
    env, fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// bpf-linker release line that supports the toolchain's LLVM 22.
const BPF_LINKER_VERSION: &str = "^0.13";

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// `bpf-linker` on PATH or in cargo's bin directory, if it runs.
pub fn working_bpf_linker() -> Option<(PathBuf, String)> {
    let mut candidates = vec![PathBuf::from("bpf-linker")];
    candidates.push(cargo_home().join("bin/bpf-linker"));
    candidates.into_iter().find_map(|candidate| {
        let output = Command::new(&candidate)
            .arg("--version")
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output.status.success().then(|| {
            let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            (candidate, version)
        })
    })
}

/// The toolchain's `libLLVM.so.<major>.<minor>-rust-*` and its major version.
fn toolchain_llvm() -> Result<(PathBuf, u32)> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running `rustc --print sysroot`")?;
    if !output.status.success() {
        bail!("`rustc --print sysroot` failed");
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let lib = sysroot.join("lib");
    let entries = fs::read_dir(&lib).with_context(|| format!("listing {}", lib.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name.strip_prefix("libLLVM.so.") else {
            continue;
        };
        if !version.contains("-rust-") {
            continue;
        }
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .with_context(|| format!("cannot read the LLVM version of {name}"))?;
        return Ok((entry.path(), major));
    }
    bail!(
        "no libLLVM.so.*-rust-* in {}: install a rustup toolchain (the distro rustc has no shared LLVM)",
        lib.display()
    )
}

/// Replaces whatever is at `link` by a symlink to `target`.
fn force_symlink(target: &Path, link: &Path) -> Result<()> {
    if fs::symlink_metadata(link).is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    symlink(target, link).with_context(|| format!("linking {}", link.display()))
}

/// Makes `$CARGO_HOME/tlsmon-llvm-N/lib/{libLLVM.so, libLLVM.so.N.*-rust-*}`.
fn make_llvm_prefix(library: &Path, major: u32) -> Result<PathBuf> {
    let prefix = cargo_home().join(format!("tlsmon-llvm-{major}"));
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let file_name = library
        .file_name()
        .context("toolchain LLVM library has no file name")?;
    force_symlink(library, &lib.join(file_name))?;
    force_symlink(Path::new(file_name), &lib.join("libLLVM.so"))?;
    Ok(prefix)
}

/// Installs bpf-linker unless a working one is already there.
pub fn run() -> Result<()> {
    if let Some((path, version)) = working_bpf_linker() {
        println!(
            "setup: {version} already works ({}); nothing to do",
            path.display()
        );
        return Ok(());
    }
    let (library, major) = toolchain_llvm()?;
    println!(
        "setup: bpf-linker missing or broken; building it against rustc's LLVM {major} ({})",
        library.display()
    );
    let prefix = make_llvm_prefix(&library, major)?;
    println!("setup: LLVM prefix {}", prefix.display());
    println!(
        "setup: cargo install bpf-linker {BPF_LINKER_VERSION} --features llvm-{major} \
         (compiles for several minutes, once)"
    );
    let status = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "bpf-linker",
            "--force",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features"])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .status()
        .context("running cargo install")?;
    if !status.success() {
        bail!("cargo install bpf-linker failed ({status}); see the output above");
    }
    match working_bpf_linker() {
        Some((path, version)) => {
            println!("setup: installed {version} at {}", path.display());
            Ok(())
        }
        None => bail!(
            "bpf-linker was installed but does not run; is {}/bin on PATH?",
            cargo_home().display()
        ),
    }
}
