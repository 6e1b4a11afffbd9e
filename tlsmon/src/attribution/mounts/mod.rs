//! Where the cgroup v2 hierarchy is mounted, from the mount table.
//!
//! Unified systems mount it at `/sys/fs/cgroup`, hybrid ones (v1 controllers next
//! to v2) at `/sys/fs/cgroup/unified`, containers wherever their runtime chose; the
//! mount table (`/proc/self/mountinfo`) is the only reliable source. Its lines are
//! split by procfs-core; the octal escapes the kernel writes for blanks and
//! backslashes in paths (`\040`) it leaves alone, so they are decoded here.

use std::path::PathBuf;

use procfs_core::process::MountInfo;

/// A cgroup v2 mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// Where it is mounted ("/sys/fs/cgroup").
    pub mount_point: PathBuf,
    /// Which directory of the hierarchy is mounted there: "/" for all of it, a
    /// deeper path when only a subtree is visible (a cgroup namespace's view is
    /// its own root, "/").
    pub root: String,
}

/// The cgroup v2 mount of the mount table `mountinfo` (the text of a
/// `/proc/PID/mountinfo`): one that shows the whole hierarchy (root "/") if any
/// does, else the first one. Lines that do not parse are skipped.
pub fn cgroup2_in(mountinfo: &str) -> Option<Cgroup2Mount> {
    let mounts: Vec<Cgroup2Mount> = mountinfo
        .lines()
        .filter_map(|line| MountInfo::from_line(line).ok())
        .filter(|m| m.fs_type == "cgroup2")
        .map(|m| Cgroup2Mount {
            mount_point: PathBuf::from(unescape_octal(&m.mount_point.to_string_lossy())),
            root: unescape_octal(&m.root),
        })
        .collect();
    let whole = mounts.iter().position(|m| m.root == "/");
    mounts.into_iter().nth(whole.unwrap_or(0))
}

/// The cgroup v2 mount this process sees (`None` when there is none).
pub fn cgroup2_of_this_process() -> std::io::Result<Option<Cgroup2Mount>> {
    Ok(cgroup2_in(&std::fs::read_to_string(
        "/proc/self/mountinfo",
    )?))
}

/// Inode number of the initial cgroup namespace (`PROC_CGROUP_INIT_INO`, fixed in
/// the kernel's ABI): a process in another one sees only its own subtree.
const INITIAL_CGROUP_NAMESPACE_INO: u64 = 0xEFFF_FFFB;

/// True when this process is in the initial cgroup namespace (or when that
/// cannot be told: kernels without cgroup namespaces have only that one).
pub fn in_initial_cgroup_namespace() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/cgroup")
        .map_or(true, |ns| ns.ino() == INITIAL_CGROUP_NAMESPACE_INO)
}

/// Decodes the kernel's `\NNN` octal escapes (mountinfo writes blank, tab,
/// newline and backslash that way); anything else is kept as it is.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
