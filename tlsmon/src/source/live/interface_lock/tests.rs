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
