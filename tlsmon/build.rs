//! Builds the kernel program and leaves `tlsmon.bpf.o` in OUT_DIR for embedding.
//!
//! The stable-Rust route (ARCHITECTURE.md, "Building the kernel program"): compile `tlsmon-ebpf` for the host target as a
//! staticlib of LLVM bitcode (`-C linker-plugin-lto`), then let bpf-linker retarget
//! that bitcode to BPF. No nightly, no rust-src.

use std::{
    env,
    path::{Path, PathBuf},
    process::{exit, Command},
};

use tlsmon_common as common;

const FIX: &str = "run `cargo xtask setup` (installs bpf-linker) and build again";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("tlsmon/ lives in the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for watched in [
        "tlsmon-ebpf/src",
        "tlsmon-ebpf/Cargo.toml",
        "tlsmon-ebpf/rustc-wrapper.sh",
        "tlsmon-common/src",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    println!("cargo:rerun-if-env-changed=BPF_LINKER");

    let Some(linker) = find_bpf_linker() else {
        fail(&format!(
            "bpf-linker not found (needed to build the eBPF program): {FIX}"
        ));
    };
    let ebpf_target_dir = match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir).join("ebpf"),
        None => workspace.join("target").join("ebpf"),
    };
    build_bitcode(&workspace, &ebpf_target_dir);
    let archive = ebpf_target_dir.join("release").join("libtlsmon_ebpf.a");
    link_object(&linker, &archive, &out_dir.join("tlsmon.bpf.o"));
}

/// `BPF_LINKER` if set, else `bpf-linker` on PATH or in cargo's bin directory.
fn find_bpf_linker() -> Option<PathBuf> {
    if let Some(explicit) = env::var_os("BPF_LINKER") {
        return Some(PathBuf::from(explicit));
    }
    let mut candidates: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).map(|d| d.join("bpf-linker")).collect())
        .unwrap_or_default();
    if let Some(cargo_home) = env::var_os("CARGO_HOME") {
        candidates.push(PathBuf::from(cargo_home).join("bin/bpf-linker"));
    }
    if let Some(home) = env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cargo/bin/bpf-linker"));
    }
    candidates.into_iter().find(|c| c.is_file())
}

fn build_bitcode(workspace: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--package",
            "tlsmon-ebpf",
            "--release",
            "--target-dir",
        ])
        .arg(target_dir)
        // Flags of the outer build (and clippy's wrapper) must not leak into the
        // kernel crate: it needs exactly these, plus the one cfg aya-log-ebpf
        // needs on this route, which the wrapper adds for that crate alone.
        .env_remove("RUSTFLAGS")
        .env(
            "RUSTC_WRAPPER",
            workspace.join("tlsmon-ebpf").join("rustc-wrapper.sh"),
        )
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "-Clinker-plugin-lto",
                "-Cpanic=abort",
                "-Cdebuginfo=2",
                "--cfg=tlsmon_bpf",
            ]
            .join("\x1f"),
        )
        .env("CARGO_PROFILE_RELEASE_DEBUG", "2")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort");
    run(&mut cmd, "building tlsmon-ebpf bitcode");
}

fn link_object(linker: &Path, archive: &Path, object: &Path) {
    let mut cmd = Command::new(linker);
    cmd.args(["--target", "bpfel", "--cpu", "v3", "--btf"]);
    let exported = [
        common::INGRESS_PROGRAM,
        common::EGRESS_PROGRAM,
        common::CONTROL_PROGRAM,
        common::EVENTS_MAP,
        common::FLOWS_MAP,
        common::COUNTERS_MAP,
        common::CONFIG_MAP,
        common::SCRATCH_MAP,
        common::HINTS_MAP,
        common::OPENINGS_MAP,
        common::preamble::STARTTLS_PORTS_MAP,
        // aya-log's ring buffer, and its level, which the daemon sets at load.
        "AYA_LOGS",
        "AYA_LOG_LEVEL",
        // The reports of rare events (tlsmon-ebpf/src/diag.rs): exported to stay
        // global functions, which the verifier checks once each.
        "tlsmon_diag_ringbuf_full",
        "tlsmon_diag_flow_table_full",
        "tlsmon_diag_parse_bound",
        "tlsmon_diag_cut",
        // The payload copy and its record walk (tlsmon-ebpf/src/records.rs):
        // global functions, verified once each rather than on every path.
        "tlsmon_walk_step",
        "tlsmon_take",
        "tlsmon_emit_chunk",
    ];
    // bpf-linker internalises every symbol not exported: programs and maps too.
    for symbol in exported {
        cmd.args(["--export", symbol]);
    }
    cmd.arg("-o").arg(object).arg(archive);
    run(&mut cmd, "linking tlsmon.bpf.o with bpf-linker");
}

fn run(cmd: &mut Command, what: &str) {
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!("{what} failed ({status}); see the output above")),
        Err(err) => fail(&format!(
            "{what}: cannot start {:?}: {err}; {FIX}",
            cmd.get_program()
        )),
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    exit(1);
}
