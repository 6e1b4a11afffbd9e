use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;

/// A directory tree standing in for a cgroup hierarchy (ids are inode numbers
/// there too), removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(dirs: &[&str]) -> Tree {
        let root = std::env::temp_dir().join(format!(
            "tlsmon-cgroup-tree-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        for dir in dirs {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        // A file next to the directories: never a cgroup.
        std::fs::write(root.join("cgroup.procs"), b"").unwrap();
        Tree(root)
    }

    fn id(&self, dir: &str) -> u64 {
        std::fs::metadata(self.0.join(dir)).unwrap().ino()
    }

    fn resolver(&self, root: &str, capacity: usize) -> CgroupResolver {
        CgroupResolver::new(
            Some(Cgroup2Mount {
                mount_point: self.0.clone(),
                root: root.to_string(),
            }),
            root == "/",
            capacity,
        )
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn found(path: &str, service: &str) -> Resolution {
    Resolution::Found {
        path: Arc::from(path),
        service: Arc::from(service),
    }
}

#[test]
fn an_id_resolves_to_its_path_and_service_then_comes_from_the_cache() {
    let tree = Tree::new(&["system.slice/nginx.service", "user.slice"]);
    let mut r = tree.resolver("/", 16);
    let id = tree.id("system.slice/nginx.service");
    assert_eq!(
        r.resolve(id),
        found("/system.slice/nginx.service", "nginx.service")
    );
    assert_eq!(
        r.resolve(id),
        found("/system.slice/nginx.service", "nginx.service")
    );
    assert_eq!(
        r.stats(),
        &ResolverStats {
            cache_hits: 1,
            walks: 1,
            found: 1,
            ..ResolverStats::default()
        }
    );
    // The mount point itself is the hierarchy's root.
    assert_eq!(r.resolve(tree.id("")), found("/", "/"));
}

#[test]
fn a_miss_walks_again_and_sees_cgroups_made_since() {
    let tree = Tree::new(&["a.slice"]);
    let mut r = tree.resolver("/", 16);
    assert_eq!(r.resolve(tree.id("a.slice")), found("/a.slice", "/a.slice"));
    std::fs::create_dir_all(tree.0.join("a.slice/late.service")).unwrap();
    let late = tree.id("a.slice/late.service");
    assert_eq!(
        r.resolve(late),
        found("/a.slice/late.service", "late.service")
    );
    assert_eq!(r.stats().walks, 2);
}

#[test]
fn a_removed_cgroup_is_vanished_not_guessed_and_is_not_walked_for_again() {
    let tree = Tree::new(&["gone.slice/short.service", "gone.slice/other.service"]);
    let id = tree.id("gone.slice/short.service");
    std::fs::remove_dir(tree.0.join("gone.slice/short.service")).unwrap();
    let mut r = tree.resolver("/", 16);
    assert_eq!(r.resolve(id), Resolution::Vanished);
    assert_eq!(r.resolve(id), Resolution::Vanished);
    assert_eq!(
        (r.stats().vanished, r.stats().walks, r.stats().cache_hits),
        (1, 1, 1)
    );
}

#[test]
fn the_cache_is_bounded_and_counts_what_it_evicted() {
    let tree = Tree::new(&["a.service", "b.service", "c.service"]);
    let mut r = tree.resolver("/", 2);
    for dir in ["a.service", "b.service", "c.service"] {
        r.resolve(tree.id(dir));
    }
    assert_eq!(r.cached(), 2);
    assert_eq!(r.stats().evicted, 1);
    // The oldest went first: looking it up walks again.
    assert_eq!(
        r.resolve(tree.id("a.service")),
        found("/a.service", "a.service")
    );
    assert_eq!((r.stats().walks, r.stats().evicted), (4, 2));
}

#[test]
fn without_a_hierarchy_every_id_is_unresolved_and_nothing_is_walked() {
    let mut r = CgroupResolver::new(None, true, 16);
    assert_eq!(r.resolve(7), Resolution::Unresolved);
    assert_eq!(r.stats().unresolved, 1);
    assert_eq!(r.stats().walks, 0);
    assert_eq!(r.cached(), 0);
}

#[test]
fn an_unreadable_hierarchy_is_unresolved_and_tried_again_later() {
    let mut r = CgroupResolver::new(
        Some(Cgroup2Mount {
            mount_point: Path::new("/tlsmon-no-such-hierarchy").to_path_buf(),
            root: "/".to_string(),
        }),
        true,
        16,
    );
    assert_eq!(r.resolve(7), Resolution::Unresolved);
    assert_eq!(r.resolve(7), Resolution::Unresolved);
    assert_eq!((r.stats().unresolved, r.stats().walks), (2, 2));
}

#[test]
fn a_mounted_subtree_reports_paths_in_the_whole_hierarchy() {
    let tree = Tree::new(&["web.service"]);
    let mut r = tree.resolver("/system.slice/", 16);
    assert_eq!(
        r.resolve(tree.id("web.service")),
        found("/system.slice/web.service", "web.service")
    );
    assert_eq!(
        r.resolve(tree.id("")),
        found("/system.slice", "/system.slice")
    );
}

#[test]
fn an_id_outside_a_partial_view_is_unresolved_not_vanished() {
    let tree = Tree::new(&["web.service"]);
    let mut r = tree.resolver("/system.slice", 16);
    // Some id that is not in this subtree (the tree's parent directory's).
    let elsewhere = std::fs::metadata(tree.0.parent().unwrap()).unwrap().ino();
    assert_eq!(r.resolve(elsewhere), Resolution::Unresolved);
    assert_eq!(r.resolve(elsewhere), Resolution::Unresolved);
    assert_eq!(
        (r.stats().unresolved, r.stats().vanished, r.stats().walks),
        (1, 0, 1),
        "cached: a partial view does not change"
    );
}

#[test]
fn this_test_runs_in_the_initial_cgroup_namespace_or_says_otherwise() {
    let own = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    assert_eq!(
        crate::attribution::mounts::in_initial_cgroup_namespace(),
        own.to_string_lossy() == "cgroup:[4026531835]"
    );
}
