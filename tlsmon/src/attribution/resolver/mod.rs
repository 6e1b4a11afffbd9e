//! cgroup id to path, through a bounded cache.
//!
//! A cgroup v2 id is the inode number of the cgroup's directory, and the kernel
//! never hands the same id to two cgroups, so a cached answer never goes stale:
//! a cgroup removed later still was that path. A miss walks the hierarchy
//! (directory entries carry their inode numbers, so the walk reads directories and
//! stats nothing) and caches what it found, or that the id is gone: the socket
//! outlived its cgroup's directory, which is reported as vanished rather than
//! guessed. That conclusion needs the whole hierarchy in view: where only a
//! subtree is (a bind-mounted subtree, a cgroup namespace's view inside a
//! container), an id not found is unresolved instead. The cache keeps at most `capacity` ids, dropping the oldest entry
//! first; every eviction, walk and outcome is counted ([`ResolverStats`]).

use std::{
    collections::{HashMap, VecDeque},
    os::unix::fs::DirEntryExt,
    path::PathBuf,
    sync::Arc,
};

use super::{mounts::Cgroup2Mount, service::service_name};

/// Ids a resolver remembers by default (about 200 bytes each).
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;

/// Most directories one walk reads: far more cgroups than a busy Kubernetes node
/// has, and a bound on the time a walk can take.
pub const MAX_WALK_DIRECTORIES: usize = 200_000;

/// What an id resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The cgroup's path in the hierarchy and the service derived from it.
    Found {
        /// "/system.slice/nginx.service".
        path: Arc<str>,
        /// "nginx.service".
        service: Arc<str>,
    },
    /// No directory has this id: the cgroup was removed before it was looked up.
    Vanished,
    /// It could not be looked up: no hierarchy is mounted, reading it failed, or
    /// it has more directories than one walk reads.
    Unresolved,
}

/// Counters of a resolver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolverStats {
    /// Lookups answered from the cache.
    pub cache_hits: u64,
    /// Walks of the hierarchy (one per cache miss).
    pub walks: u64,
    /// Lookups that found their cgroup by walking.
    pub found: u64,
    /// Lookups of ids no directory has any more.
    pub vanished: u64,
    /// Lookups that could not be answered.
    pub unresolved: u64,
    /// Cache entries dropped to stay within the capacity.
    pub evicted: u64,
}

/// Resolves cgroup ids of one hierarchy.
#[derive(Debug)]
pub struct CgroupResolver {
    hierarchy: Option<Cgroup2Mount>,
    /// The whole hierarchy is visible: an id not in it is gone, not elsewhere.
    sees_everything: bool,
    capacity: usize,
    cache: HashMap<u64, Resolution>,
    /// Cached ids, oldest first.
    order: VecDeque<u64>,
    stats: ResolverStats,
}

impl CgroupResolver {
    /// A resolver over `hierarchy` (`None`: every id is unresolved) keeping at
    /// most `capacity` ids (at least one). `sees_everything` says that the mount
    /// shows every cgroup of the host (its root is the hierarchy's, and this
    /// process is in the initial cgroup namespace).
    pub fn new(hierarchy: Option<Cgroup2Mount>, sees_everything: bool, capacity: usize) -> Self {
        CgroupResolver {
            hierarchy,
            sees_everything,
            capacity: capacity.max(1),
            cache: HashMap::new(),
            order: VecDeque::new(),
            stats: ResolverStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> &ResolverStats {
        &self.stats
    }

    /// Ids cached now.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// What cgroup `id` is.
    pub fn resolve(&mut self, id: u64) -> Resolution {
        if let Some(known) = self.cache.get(&id) {
            self.stats.cache_hits += 1;
            return known.clone();
        }
        let Some(hierarchy) = &self.hierarchy else {
            // Nothing to look in: not cached, not walked.
            self.stats.unresolved += 1;
            return Resolution::Unresolved;
        };
        self.stats.walks += 1;
        let resolution = match find(hierarchy, id) {
            Walk::Found(relative) => {
                self.stats.found += 1;
                let path = in_hierarchy(&hierarchy.root, &relative);
                let service = service_name(&path);
                Resolution::Found {
                    path: Arc::from(path),
                    service: Arc::from(service),
                }
            }
            Walk::Absent if self.sees_everything => {
                self.stats.vanished += 1;
                Resolution::Vanished
            }
            // Outside the part of the hierarchy we can see; that does not change,
            // so it is cached like any answer.
            Walk::Absent => {
                self.stats.unresolved += 1;
                Resolution::Unresolved
            }
            Walk::Failed(err) => {
                // Not cached: the next lookup tries again.
                self.stats.unresolved += 1;
                tracing::debug!("looking up cgroup {id}: {err}");
                return Resolution::Unresolved;
            }
        };
        self.remember(id, resolution.clone());
        resolution
    }

    fn remember(&mut self, id: u64, resolution: Resolution) {
        while self.cache.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if self.cache.remove(&oldest).is_some() {
                self.stats.evicted += 1;
            }
        }
        self.cache.insert(id, resolution);
        self.order.push_back(id);
    }
}

/// What a walk of the hierarchy found.
enum Walk {
    /// The directory, relative to the mount point ("" for the mount point itself).
    Found(String),
    /// No directory has the id.
    Absent,
    /// The walk could not finish.
    Failed(String),
}

/// Looks for the directory whose inode number is `id`, breadth first (cgroups
/// that hold sockets are rarely deep). A directory that disappears during the
/// walk is skipped; the walk's own failures are errors.
fn find(hierarchy: &Cgroup2Mount, id: u64) -> Walk {
    let top = &hierarchy.mount_point;
    match std::fs::metadata(top) {
        Ok(meta) if std::os::unix::fs::MetadataExt::ino(&meta) == id => {
            return Walk::Found(String::new())
        }
        Ok(_) => {}
        Err(err) => return Walk::Failed(format!("{}: {err}", top.display())),
    }
    let mut queue: VecDeque<PathBuf> = VecDeque::from([PathBuf::new()]);
    let mut read = 0usize;
    while let Some(relative) = queue.pop_front() {
        read += 1;
        let entries = match std::fs::read_dir(top.join(&relative)) {
            Ok(entries) => entries,
            // Removed while we walked: its children went with it.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && read > 1 => continue,
            Err(err) => return Walk::Failed(format!("{}: {err}", top.display())),
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let child = relative.join(entry.file_name());
            if entry.ino() == id {
                return Walk::Found(child.to_string_lossy().into_owned());
            }
            if read + queue.len() >= MAX_WALK_DIRECTORIES {
                return Walk::Failed(format!(
                    "{} has more than {MAX_WALK_DIRECTORIES} directories",
                    top.display()
                ));
            }
            queue.push_back(child);
        }
    }
    Walk::Absent
}

/// The path of `relative` (below the mount point) in the whole hierarchy, given
/// the hierarchy directory `root` that is mounted there.
fn in_hierarchy(root: &str, relative: &str) -> String {
    let root = root.trim_end_matches('/');
    if relative.is_empty() {
        return if root.is_empty() {
            "/".to_string()
        } else {
            root.to_string()
        };
    }
    format!("{root}/{relative}")
}

#[cfg(test)]
mod tests;
