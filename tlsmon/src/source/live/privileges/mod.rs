//! Privilege checks and the memlock limit, done before touching the kernel so the
//! user gets a precise message instead of a bare EPERM.

use std::fs;

use super::CaptureError;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability mask of this process, from /proc/self/status.
fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

/// Names of the capabilities tlsmon needs that `caps` lacks. CAP_SYS_ADMIN stands
/// in for CAP_BPF and CAP_PERFMON (older kernels know only it).
fn missing_capabilities(caps: u64) -> Vec<&'static str> {
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    let mut missing = Vec::new();
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_SYS_ADMIN) {
        if !has(CAP_BPF) {
            missing.push("CAP_BPF");
        }
        if !has(CAP_PERFMON) {
            missing.push("CAP_PERFMON");
        }
    }
    missing
}

/// Fails with [`CaptureError::PermissionDenied`] when a needed capability is
/// missing. Unknown (no /proc) counts as fine: the kernel will say EPERM then.
pub(crate) fn check() -> Result<(), CaptureError> {
    let Some(caps) = effective_capabilities() else {
        return Ok(());
    };
    let missing = missing_capabilities(caps);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CaptureError::PermissionDenied {
            action: "loading the eBPF program".into(),
            missing: missing.join(", "),
        })
    }
}

/// Lifts RLIMIT_MEMLOCK as far as allowed: kernels before 5.11 charge BPF maps
/// against it (newer ones use memory cgroups). Without CAP_SYS_RESOURCE only the
/// soft limit can rise to the hard one; that is not an error here, since on a
/// current kernel it does not matter. Returns false when the limit stayed finite.
pub(crate) fn raise_memlock() -> bool {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads a valid rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return true;
    }
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut current) == 0 {
            current.rlim_cur = current.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &current);
        }
    }
    tracing::debug!(
        hard_limit = current.rlim_max,
        "RLIMIT_MEMLOCK stays finite (no CAP_SYS_RESOURCE); fine on Linux 5.11+"
    );
    current.rlim_max == libc::RLIM_INFINITY
}

#[cfg(test)]
mod tests;
