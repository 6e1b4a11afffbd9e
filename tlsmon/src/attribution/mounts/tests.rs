use super::*;

/// The mount table of a hybrid (v1 controllers and v2) host.
const HYBRID: &str = "\
23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw
";

#[test]
fn a_hybrid_host_has_its_hierarchy_under_unified() {
    assert_eq!(
        cgroup2_in(HYBRID),
        Some(Cgroup2Mount {
            mount_point: PathBuf::from("/sys/fs/cgroup/unified"),
            root: "/".to_string(),
        })
    );
}

#[test]
fn a_unified_host_has_it_at_sys_fs_cgroup() {
    let table = "\
22 1 0:20 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    let mount = cgroup2_in(table).unwrap();
    assert_eq!(mount.mount_point, PathBuf::from("/sys/fs/cgroup"));
    assert_eq!(mount.root, "/");
}

#[test]
fn no_cgroup2_mount_is_none_and_garbage_lines_are_skipped() {
    assert_eq!(cgroup2_in(""), None);
    assert_eq!(cgroup2_in("not a mount line\n\n42"), None);
    let v1_only = "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
    assert_eq!(cgroup2_in(v1_only), None);
    let with_garbage = format!("garbage - cgroup2\n{HYBRID}");
    assert!(cgroup2_in(&with_garbage).is_some());
}

#[test]
fn the_whole_hierarchy_wins_over_a_bound_subtree_and_escapes_are_decoded() {
    let table = "\
50 22 0:26 /system.slice/app.service /srv/app\\040cgroup rw - cgroup2 cgroup2 rw
51 22 0:26 / /mnt/cg\\040v2 rw - cgroup2 cgroup2 rw
";
    let mount = cgroup2_in(table).unwrap();
    assert_eq!(mount.mount_point, PathBuf::from("/mnt/cg v2"));
    let only_subtree = table.lines().next().unwrap();
    let mount = cgroup2_in(only_subtree).unwrap();
    assert_eq!(mount.mount_point, PathBuf::from("/srv/app cgroup"));
    assert_eq!(mount.root, "/system.slice/app.service");
}

#[test]
fn octal_escapes_decode_and_lone_backslashes_stay() {
    assert_eq!(unescape_octal("a\\040b\\134c"), "a b\\c");
    assert_eq!(unescape_octal("end\\04"), "end\\04");
    assert_eq!(unescape_octal("x\\999"), "x\\999");
    assert_eq!(unescape_octal("\\"), "\\");
}
