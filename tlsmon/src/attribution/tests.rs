use std::os::unix::fs::MetadataExt;

use super::*;

#[test]
fn records_get_a_path_and_a_name_null_without_a_socket_and_say_when_it_vanished() {
    let root = std::env::temp_dir().join(format!("tlsmon-attribution-{}", std::process::id()));
    std::fs::create_dir_all(root.join("system.slice/nginx.service")).unwrap();
    std::fs::create_dir_all(root.join("system.slice/cron.service")).unwrap();
    let id = |dir: &str| std::fs::metadata(root.join(dir)).unwrap().ino();
    let nginx = id("system.slice/nginx.service");
    let cron = id("system.slice/cron.service");
    std::fs::remove_dir(root.join("system.slice/cron.service")).unwrap();

    let mut attributor = Attributor::at(&root);
    assert_eq!(attributor.attribute(None), Attribution::default());
    assert_eq!(
        attributor.attribute(Some(nginx)),
        Attribution {
            cgroup: Some("/system.slice/nginx.service".into()),
            service: Some("nginx.service".into()),
        }
    );
    assert_eq!(
        attributor.attribute(Some(cron)),
        Attribution {
            cgroup: None,
            service: Some(VANISHED.into()),
        }
    );
    assert_eq!(
        (attributor.stats().found, attributor.stats().vanished),
        (1, 1)
    );
    let _ = std::fs::remove_dir_all(&root);
}
