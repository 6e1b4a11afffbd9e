//! Which local service a handshake belongs to.
//!
//! The kernel tags each tracked connection with the cgroup v2 id of its local
//! socket, taken from the connection's first egress packet that has one
//! (`bpf_skb_cgroup_id`); forwarded traffic has no local socket and no id. Here
//! that id becomes a path and a service name:
//!
//! - [`mounts`] finds the cgroup v2 hierarchy in the mount table (it is not always
//!   at `/sys/fs/cgroup`: hybrid systems mount it at `/sys/fs/cgroup/unified`);
//! - [`resolver`] maps an id to its directory (the id is the directory's inode
//!   number) through a bounded cache that walks the hierarchy again on a miss,
//!   and reports a cgroup removed before it was looked up as vanished;
//! - [`service`] derives the name operators think in from the path: a systemd
//!   unit, a container, a Kubernetes pod's container, or the path itself.
//!
//! No input from the network reaches this room: ids come from the kernel's view
//! of local sockets only.

pub mod mounts;
pub mod resolver;
pub mod service;

use std::path::Path;

pub use resolver::{CgroupResolver, Resolution, ResolverStats};

/// `service` of a handshake whose cgroup was removed before tlsmon looked it up.
pub const VANISHED: &str = "(vanished)";
/// `service` of a handshake whose cgroup could not be looked up (no cgroup v2
/// hierarchy in tlsmon's mount namespace, it could not be read, or the cgroup is
/// outside the part of it tlsmon can see).
pub const UNRESOLVED: &str = "(unresolved)";

/// What a handshake's record says about its local service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attribution {
    /// The cgroup's path in the hierarchy ("/system.slice/nginx.service").
    pub cgroup: Option<String>,
    /// The derived service name, [`VANISHED`] or [`UNRESOLVED`].
    pub service: Option<String>,
}

/// Turns kernel cgroup ids into [`Attribution`]s.
#[derive(Debug)]
pub struct Attributor {
    resolver: CgroupResolver,
}

impl Attributor {
    /// An attributor over the cgroup v2 hierarchy this process sees
    /// (`/proc/self/mountinfo`); without one every id is [`UNRESOLVED`], and the
    /// reason is logged once.
    pub fn from_mount_table() -> Self {
        let hierarchy = match mounts::cgroup2_of_this_process() {
            Ok(Some(mount)) => {
                tracing::debug!(
                    mount_point = %mount.mount_point.display(),
                    "cgroup v2 hierarchy for service attribution"
                );
                Some(mount)
            }
            Ok(None) => {
                tracing::warn!(
                    "no cgroup v2 hierarchy is mounted here: handshakes of local sockets are \
                     reported with service \"{UNRESOLVED}\""
                );
                None
            }
            Err(err) => {
                tracing::warn!(
                    "cannot read the mount table ({err}): handshakes of local sockets are \
                     reported with service \"{UNRESOLVED}\""
                );
                None
            }
        };
        let sees_everything = hierarchy.as_ref().is_some_and(|m| m.root == "/")
            && mounts::in_initial_cgroup_namespace();
        if hierarchy.is_some() && !sees_everything {
            tracing::warn!(
                "only part of the cgroup v2 hierarchy is visible here (a cgroup namespace or \
                 a mounted subtree): sockets of cgroups outside it are reported with service \
                 \"{UNRESOLVED}\""
            );
        }
        Attributor {
            resolver: CgroupResolver::new(
                hierarchy,
                sees_everything,
                resolver::DEFAULT_CACHE_CAPACITY,
            ),
        }
    }

    /// An attributor over the hierarchy mounted at `mount_point` (tests).
    pub fn at(mount_point: &Path) -> Self {
        Attributor {
            resolver: CgroupResolver::new(
                Some(mounts::Cgroup2Mount {
                    mount_point: mount_point.to_path_buf(),
                    root: "/".to_string(),
                }),
                true,
                resolver::DEFAULT_CACHE_CAPACITY,
            ),
        }
    }

    /// The attribution of a connection whose local socket had cgroup `id`
    /// (`None`: no local socket seen, both fields null).
    pub fn attribute(&mut self, id: Option<u64>) -> Attribution {
        let Some(id) = id else {
            return Attribution::default();
        };
        match self.resolver.resolve(id) {
            Resolution::Found { path, service } => Attribution {
                cgroup: Some(path.to_string()),
                service: Some(service.to_string()),
            },
            Resolution::Vanished => Attribution {
                cgroup: None,
                service: Some(VANISHED.to_string()),
            },
            Resolution::Unresolved => Attribution {
                cgroup: None,
                service: Some(UNRESOLVED.to_string()),
            },
        }
    }

    /// The resolver's counters so far.
    pub fn stats(&self) -> &ResolverStats {
        self.resolver.stats()
    }
}

#[cfg(test)]
mod tests;
