//! One daemon per interface: a lock file per watched interface, held with
//! flock(2) for as long as tlsmon is attached there.
//!
//! Two daemons on one interface would each count every handshake, so a scrape of
//! both doubles the numbers. The lock is a file under [`LOCK_DIR`] named after the
//! network namespace and the interface index (so a rename keeps it, and equal
//! names in different namespaces do not collide). The kernel drops a flock when
//! its holder dies, even by `kill -9`, so a crashed daemon never blocks the next
//! start, and the stale clsact filters it may have left are then known to be
//! stale and can be replaced.
//!
//! The exclusive holder writes its pid into the file so that a refused start can
//! name it. Files are removed by their last holder (while still holding the lock;
//! whoever opened the old file then sees that it was unlinked and retries on a new
//! one), so interfaces that come and go do not pile up files; the files of
//! holders that died (`kill -9`) are swept by the next daemon that takes a lock.

use std::{
    fs::{self, File, OpenOptions, TryLockError},
    io::{self, Read, Seek, SeekFrom, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use super::interfaces::Interface;

/// Where the lock files live (a tmpfs, emptied at boot).
pub const LOCK_DIR: &str = "/run/tlsmon";

/// Pause before looking at a held lock again (see [`claim`]); a refusal takes
/// [`MAX_OPEN_ATTEMPTS`] times this.
const RECHECK_AFTER: std::time::Duration = std::time::Duration::from_millis(2);

/// Directory entries a sweep for stale lock files looks at, at most.
const MAX_SWEPT: usize = 4096;

/// Looks at the lock before concluding: the file may be replaced under us (its
/// holder released it meanwhile), or held for an instant by a sweep or probe.
const MAX_OPEN_ATTEMPTS: usize = 8;

/// How an attach takes the interface's lock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InterfaceLocking {
    /// Hold nothing, refuse nothing; only look whether a daemon holds the
    /// interface, so that its clsact filters are not taken for stale ones
    /// (`tlsmon watch`, library use).
    #[default]
    Observe,
    /// Hold the lock alone; refuse when another tlsmon holds it (`tlsmon run`).
    Exclusive,
    /// Share the lock with other daemons that allow sharing, and attach even
    /// next to an exclusive holder (`tlsmon run --allow-shared-interface`).
    Shared,
}

/// Errors taking an interface's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another tlsmon daemon watches the interface.
    #[error(
        "interface {interface} is already watched by another tlsmon ({holder}); \
         stop it, or pass --allow-shared-interface to attach anyway (both then count every handshake)",
        holder = describe_holder(*pid)
    )]
    InUse {
        /// Interface name.
        interface: String,
        /// The exclusive holder's pid, when it could be read.
        pid: Option<u32>,
    },
    /// The lock file could not be created or locked.
    #[error(
        "cannot lock interface {interface} against a second tlsmon: {path}: {error} \
         (tlsmon needs a writable {LOCK_DIR}; with systemd: RuntimeDirectory=tlsmon)"
    )]
    Io {
        /// Interface name.
        interface: String,
        /// The file or directory concerned.
        path: PathBuf,
        /// What the OS said.
        error: io::Error,
    },
}

fn describe_holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid}"),
        None => "one started with --allow-shared-interface".to_owned(),
    }
}

/// What taking the lock found.
#[derive(Debug)]
pub(crate) struct Claim {
    /// The lock, held until dropped ([`InterfaceLocking::Observe`] holds none).
    pub(crate) lock: Option<InterfaceLock>,
    /// Another live tlsmon is attached to the interface, so clsact filters named
    /// like ours may be its own rather than stale ones.
    pub(crate) others_attached: bool,
}

/// A held interface lock; released (and its file removed when no one else holds
/// it) on drop.
#[derive(Debug)]
pub(crate) struct InterfaceLock {
    file: File,
    path: PathBuf,
    exclusive: bool,
}

impl Drop for InterfaceLock {
    fn drop(&mut self) {
        // A shared holder may remove the file only if it is the last one; this
        // converts its lock to an exclusive one, which fails while others hold it.
        // (flock(2) converts on the same descriptor; failing may also drop our
        // shared lock, which is being released anyway.)
        if self.exclusive || self.file.try_lock().is_ok() {
            let _ = fs::remove_file(&self.path);
        }
        // Closing the file releases the lock.
    }
}

/// The lock file of `interface` in `dir`, for the network namespace of the
/// calling thread (tests move single threads between namespaces).
fn lock_path(dir: &Path, interface: &Interface) -> Result<PathBuf, LockError> {
    let ns = Path::new("/proc/thread-self/ns/net");
    let netns = fs::metadata(ns).map_err(|error| LockError::Io {
        interface: interface.name.clone(),
        path: ns.to_path_buf(),
        error,
    })?;
    Ok(dir.join(format!("net{}-if{}.lock", netns.ino(), interface.index)))
}

/// Takes the lock of `interface` in `dir` as `locking` says.
pub(crate) fn claim(
    dir: &Path,
    interface: &Interface,
    locking: InterfaceLocking,
) -> Result<Claim, LockError> {
    let io_error = |path: &Path, error: io::Error| LockError::Io {
        interface: interface.name.clone(),
        path: path.to_path_buf(),
        error,
    };
    let path = lock_path(dir, interface)?;
    if let InterfaceLocking::Observe = locking {
        return Ok(Claim {
            lock: None,
            others_attached: observe(&path),
        });
    }
    create_dir(dir).map_err(|e| io_error(dir, e))?;
    sweep_stale(dir);
    for attempt in 1..=MAX_OPEN_ATTEMPTS {
        let last_attempt = attempt == MAX_OPEN_ATTEMPTS;
        let mut file = open(&path).map_err(|e| io_error(&path, e))?;
        match file.try_lock() {
            Ok(()) => {
                if !still_linked(&file, &path) {
                    continue;
                }
                if locking == InterfaceLocking::Shared {
                    // Alone now: other daemons that allow sharing may join.
                    file.try_lock_shared()
                        .map_err(|e| io_error(&path, e.into()))?;
                    file.set_len(0).map_err(|e| io_error(&path, e))?;
                } else {
                    write_pid(&mut file).map_err(|e| io_error(&path, e))?;
                }
                return Ok(Claim {
                    lock: Some(InterfaceLock {
                        file,
                        path,
                        exclusive: locking == InterfaceLocking::Exclusive,
                    }),
                    others_attached: false,
                });
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(io_error(&path, e)),
        }
        // Someone holds it. A sweeper or an observer holds it for an instant
        // only: look again shortly before concluding that a daemon does.
        if locking == InterfaceLocking::Exclusive {
            if !last_attempt {
                std::thread::sleep(RECHECK_AFTER);
                continue;
            }
            return Err(LockError::InUse {
                interface: interface.name.clone(),
                pid: read_pid(&mut file),
            });
        }
        return match file.try_lock_shared() {
            Ok(()) if !still_linked(&file, &path) => continue,
            Ok(()) => Ok(Claim {
                lock: Some(InterfaceLock {
                    file,
                    path,
                    exclusive: false,
                }),
                others_attached: true,
            }),
            Err(TryLockError::WouldBlock) if !last_attempt => {
                std::thread::sleep(RECHECK_AFTER);
                continue;
            }
            // An exclusive holder: attach next to it without a lock, as asked.
            Err(TryLockError::WouldBlock) => {
                tracing::warn!(
                    interface = %interface.name,
                    "another tlsmon ({}) watches this interface; attaching too (--allow-shared-interface)",
                    describe_holder(read_pid(&mut file))
                );
                Ok(Claim {
                    lock: None,
                    others_attached: true,
                })
            }
            Err(TryLockError::Error(e)) => Err(io_error(&path, e)),
        };
    }
    Err(io_error(
        &path,
        io::Error::other("the lock file kept being replaced while it was being locked"),
    ))
}

/// True when a daemon holds the lock at `path`. Without a lock file (or when it
/// cannot be read) nobody is known to hold it. The probe holds the lock for an
/// instant only (a daemon starting in that instant looks again, see [`claim`]).
fn observe(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}

/// Removes lock files nobody holds: left by holders that died, in any network
/// namespace (also ones that no longer exist). Taking the lock before removing
/// makes this safe against a daemon locking the file at the same time: it finds
/// the file unlinked and retries on a new one.
fn sweep_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.take(MAX_SWEPT).flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("net") && n.ends_with(".lock"));
        if !ours {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() && still_linked(&file, &path) {
            let _ = fs::remove_file(&path);
        }
    }
}

fn create_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
}

/// True when `path` still names the file `file` has open (the last holder removes
/// the file before releasing it; a lock on the removed file protects nothing).
fn still_linked(file: &File, path: &Path) -> bool {
    match (file.metadata(), fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

fn write_pid(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())
}

/// The pid the exclusive holder wrote (a few bytes; anything else is ignored).
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(16).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(index: u32) -> Interface {
        Interface {
            index,
            name: format!("eth{index}"),
            up: true,
            loopback: false,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tlsmon-lock-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn files_in(dir: &Path) -> usize {
        fs::read_dir(dir).map_or(0, |d| d.count())
    }

    // flock(2) locks belong to open files, so two claims in one process conflict
    // like two processes do.

    #[test]
    fn a_second_exclusive_claim_is_refused_with_the_holders_pid() {
        let dir = temp_dir("exclusive");
        let first = claim(&dir, &iface(7), InterfaceLocking::Exclusive).unwrap();
        assert!(!first.others_attached);
        let err = claim(&dir, &iface(7), InterfaceLocking::Exclusive).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "interface eth7 is already watched by another tlsmon (pid {}); stop it, or pass \
                 --allow-shared-interface to attach anyway (both then count every handshake)",
                std::process::id()
            )
        );
        // Another interface is not concerned.
        let other = claim(&dir, &iface(8), InterfaceLocking::Exclusive).unwrap();
        assert!(other.lock.is_some());
        drop(first);
        let again = claim(&dir, &iface(7), InterfaceLocking::Exclusive).unwrap();
        assert!(!again.others_attached);
        drop((again, other));
        assert_eq!(files_in(&dir), 0, "released locks leave no files");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shared_claims_join_each_other_and_attach_next_to_an_exclusive_one() {
        let dir = temp_dir("shared");
        let a = claim(&dir, &iface(3), InterfaceLocking::Shared).unwrap();
        assert!(!a.others_attached);
        let b = claim(&dir, &iface(3), InterfaceLocking::Shared).unwrap();
        assert!(b.others_attached && b.lock.is_some());
        // An exclusive daemon is refused while shared ones run; no pid is known.
        let err = claim(&dir, &iface(3), InterfaceLocking::Exclusive).unwrap_err();
        assert!(matches!(err, LockError::InUse { pid: None, .. }), "{err}");
        assert!(
            err.to_string()
                .contains("(one started with --allow-shared-interface)"),
            "{err}"
        );
        assert!(
            claim(&dir, &iface(3), InterfaceLocking::Observe)
                .unwrap()
                .others_attached
        );
        drop(a);
        assert_eq!(files_in(&dir), 1, "b still holds the file");
        drop(b);
        assert_eq!(files_in(&dir), 0);

        let exclusive = claim(&dir, &iface(3), InterfaceLocking::Exclusive).unwrap();
        let shared = claim(&dir, &iface(3), InterfaceLocking::Shared).unwrap();
        assert!(shared.others_attached);
        assert!(
            shared.lock.is_none(),
            "nothing to share with an exclusive holder"
        );
        drop((shared, exclusive));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn observing_holds_nothing_and_sees_holders() {
        let dir = temp_dir("observe");
        let seen = claim(&dir, &iface(5), InterfaceLocking::Observe).unwrap();
        assert!(seen.lock.is_none() && !seen.others_attached);
        assert!(!dir.exists(), "observing creates nothing");
        let daemon = claim(&dir, &iface(5), InterfaceLocking::Exclusive).unwrap();
        assert!(
            claim(&dir, &iface(5), InterfaceLocking::Observe)
                .unwrap()
                .others_attached
        );
        // The probe did not take the daemon's place.
        assert!(claim(&dir, &iface(5), InterfaceLocking::Exclusive).is_err());
        drop(daemon);
        assert!(
            !claim(&dir, &iface(5), InterfaceLocking::Observe)
                .unwrap()
                .others_attached
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn lock_files_nobody_holds_are_swept() {
        let dir = temp_dir("sweep");
        fs::create_dir_all(&dir).unwrap();
        // Left by a daemon killed in a namespace that is gone.
        let stale = dir.join("net1-if4.lock");
        fs::write(&stale, "4000000000\n").unwrap();
        let unrelated = dir.join("README");
        fs::write(&unrelated, "not ours").unwrap();
        let held = claim(&dir, &iface(2), InterfaceLocking::Exclusive).unwrap();
        assert!(!stale.exists(), "the stale file is swept");
        assert!(unrelated.exists(), "other files stay");
        // A held lock survives another daemon's sweep.
        let other = claim(&dir, &iface(3), InterfaceLocking::Exclusive).unwrap();
        assert!(claim(&dir, &iface(2), InterfaceLocking::Exclusive).is_err());
        drop((held, other));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_file_left_by_a_dead_holder_is_taken_over() {
        let dir = temp_dir("stale");
        fs::create_dir_all(&dir).unwrap();
        let path = lock_path(&dir, &iface(9)).unwrap();
        fs::write(&path, "4000000000\n").unwrap();
        let taken = claim(&dir, &iface(9), InterfaceLocking::Exclusive).unwrap();
        assert!(!taken.others_attached);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(taken);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_lock_directory_is_a_clear_error() {
        let err = claim(
            Path::new("/proc/tlsmon-cannot-exist"),
            &iface(1),
            InterfaceLocking::Exclusive,
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "cannot lock interface eth1 against a second tlsmon: /proc/tlsmon-cannot-exist: "
            ) && text.ends_with(
                "(tlsmon needs a writable /run/tlsmon; with systemd: RuntimeDirectory=tlsmon)"
            ),
            "{text}"
        );
    }
}
