//! The header of a bench report: what machine, kernel and commit the figures are of.

use std::{path::Path, process::Command};

/// First line of `program args`' stdout, or "unknown".
fn first_line(program: &str, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The CPU model from /proc/cpuinfo.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The markdown header: date, machine (nproc, CPU, kernel), load, commit.
pub fn header(root: &Path) -> String {
    let commit = first_line("git", &["rev-parse", "--short", "HEAD"], root);
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(root)
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!(
        "### `cargo xtask bench`, {date}\n\n\
         - Machine: {nproc} CPUs ({cpu}), Linux {kernel}; load average at the start: {load}\n\
         - Commit: {commit}{dirty}\n",
        date = first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"], root),
        nproc = first_line("nproc", &[], root),
        cpu = cpu_model(),
        kernel = first_line("uname", &["-r"], root),
        dirty = if dirty {
            " (with uncommitted changes)"
        } else {
            ""
        },
    )
}
