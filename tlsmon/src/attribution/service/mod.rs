//! The service name of a cgroup path: what an operator calls the thing that
//! owns a socket.
//!
//! In order of precedence:
//!
//! 1. **Kubernetes** (a `kubepods` level above a pod level, cgroupfs or systemd
//!    driver, any QoS class): `pod:<uid>/<runtime>:<id>` for a container, where
//!    `<runtime>` is `containerd`, `cri-o` or `docker`, or `pod:<uid>/<id>` when
//!    the path does not tell the runtime (cgroupfs driver); `pod:<uid>` for the
//!    pod's own cgroup. The systemd driver writes the UID with `_` for `-`; the
//!    name always has `-`.
//! 2. **Containers**: `docker:<id>` (`docker-<id>.scope`, `/docker/<id>`),
//!    `containerd:<id>` (`cri-containerd-<id>.scope`, `nerdctl-<id>.scope`),
//!    `cri-o:<id>` (`crio-<id>.scope`, `crio-<id>`), `podman:<id>`
//!    (`libpod-<id>.scope`), `container:<id>` for a bare 64-digit id elsewhere.
//!    `<id>` is the first 12 hex digits, as `docker ps` shows them.
//! 3. **systemd**: the outermost `.service` or `.scope` unit, the one `systemctl
//!    status PID` names: `nginx.service`, `session-3.scope`, and
//!    `user@1000.service` for everything a user's service manager runs.
//! 4. Otherwise the path itself ("/", "/my-group/worker").

/// Hex digits of a container id kept in names.
pub const SHORT_ID_LEN: usize = 12;

/// The service name of the cgroup at `path` (a path in the hierarchy, "/..." ).
pub fn service_name(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if let Some(name) = kubernetes(&parts) {
        return name;
    }
    if let Some(name) = parts
        .iter()
        .enumerate()
        .find_map(|(i, part)| container(part, i.checked_sub(1).map(|p| parts[p])))
    {
        return match name.runtime {
            Some(_) => name.to_string(),
            None => format!("container:{}", name.id),
        };
    }
    if let Some(unit) = parts
        .iter()
        .find(|p| p.ends_with(".service") || p.ends_with(".scope"))
    {
        return (*unit).to_string();
    }
    if parts.is_empty() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// A container's runtime (as named in service names) and short id.
#[derive(Debug, PartialEq, Eq)]
struct Container<'a> {
    runtime: Option<&'static str>,
    id: &'a str,
}

impl std::fmt::Display for Container<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.runtime {
            Some(runtime) => write!(f, "{runtime}:{}", self.id),
            None => f.write_str(self.id),
        }
    }
}

/// Scope prefixes of container runtimes (systemd driver), longest first where
/// one is a prefix of another.
const SCOPE_PREFIXES: &[(&str, &str)] = &[
    ("cri-containerd-", "containerd"),
    ("nerdctl-", "containerd"),
    ("crio-conmon-", "cri-o"),
    ("crio-", "cri-o"),
    ("docker-", "docker"),
    ("libpod-conmon-", "podman"),
    ("libpod-", "podman"),
];

/// The container a path component stands for, if it is one; `parent` is the
/// component above it.
fn container<'a>(part: &'a str, parent: Option<&str>) -> Option<Container<'a>> {
    let bare = part.strip_suffix(".scope").unwrap_or(part);
    for (prefix, runtime) in SCOPE_PREFIXES {
        if let Some(id) = bare.strip_prefix(prefix) {
            // Only a scope, or CRI-O's cgroupfs directory, is a container.
            if (part.ends_with(".scope") || *runtime == "cri-o") && is_hex(id, SHORT_ID_LEN) {
                return Some(Container {
                    runtime: Some(runtime),
                    id: &id[..SHORT_ID_LEN],
                });
            }
        }
    }
    if part.len() == 64 && is_hex(part, 64) {
        let runtime = match parent {
            Some("docker") => Some("docker"),
            _ => None,
        };
        return Some(Container {
            runtime,
            id: &part[..SHORT_ID_LEN],
        });
    }
    None
}

/// The name of a path in a Kubernetes pod, if it is one.
fn kubernetes(parts: &[&str]) -> Option<String> {
    let kubepods = parts.iter().position(|p| p.contains("kubepods"))?;
    let (pod_index, uid) = parts
        .iter()
        .enumerate()
        .skip(kubepods)
        .find_map(|(i, p)| pod_uid(p).map(|uid| (i, uid)))?;
    let mut name = format!("pod:{uid}");
    if let Some(part) = parts.get(pod_index + 1) {
        match container(part, None) {
            Some(c) => {
                name.push('/');
                name.push_str(&c.to_string());
            }
            None => return Some(format!("{name}/{part}")),
        }
    }
    Some(name)
}

/// The pod UID of a pod-level component: `pod<uid>` (cgroupfs driver) or
/// `kubepods[-<qos>]-pod<uid with _ for ->.slice` (systemd driver).
fn pod_uid(part: &str) -> Option<String> {
    let raw = match part.strip_suffix(".slice") {
        Some(slice) => &slice[slice.rfind("-pod")? + "-pod".len()..],
        None => part.strip_prefix("pod")?,
    };
    let uid = raw.replace('_', "-");
    let plausible = uid.len() >= 32
        && uid.len() <= 36
        && uid.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    plausible.then_some(uid)
}

/// True when `s` is at least `min` hex digits and nothing else.
fn is_hex(s: &str, min: usize) -> bool {
    s.len() >= min && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests;
