use super::*;

const ID: &str = "3b9e1d54a7c2f0e8d1b6a9c4e7f2d5b8a1c4e7f0d3b6a9c2e5f8b1d4a7c0e3f6";
const UID: &str = "5f1c9a2e-7b3d-4e8f-9a1b-2c3d4e5f6a7b";
const UID_SYSTEMD: &str = "5f1c9a2e_7b3d_4e8f_9a1b_2c3d4e5f6a7b";

fn name(path: &str) -> String {
    service_name(path)
}

#[test]
fn systemd_services_and_scopes_are_their_unit() {
    assert_eq!(name("/system.slice/nginx.service"), "nginx.service");
    assert_eq!(
        name("/system.slice/system-getty.slice/getty@tty1.service"),
        "getty@tty1.service"
    );
    assert_eq!(
        name("/user.slice/user-1000.slice/session-3.scope"),
        "session-3.scope"
    );
    // A service with sub-cgroups of its own (delegation) is still the service.
    assert_eq!(name("/system.slice/app.service/workers/w1"), "app.service");
    assert_eq!(name("/tlsmon-test.slice/web-a.service"), "web-a.service");
}

#[test]
fn everything_a_user_manager_runs_is_its_user_service() {
    assert_eq!(
        name("/user.slice/user-1000.slice/user@1000.service/init.scope"),
        "user@1000.service"
    );
    assert_eq!(
        name("/user.slice/user-1000.slice/user@1000.service/app.slice/app-firefox-1234.scope"),
        "user@1000.service"
    );
}

#[test]
fn docker_containers_with_either_driver() {
    assert_eq!(
        name(&format!("/system.slice/docker-{ID}.scope")),
        "docker:3b9e1d54a7c2"
    );
    assert_eq!(name(&format!("/docker/{ID}")), "docker:3b9e1d54a7c2");
    // systemd inside the container does not hide the container.
    assert_eq!(
        name(&format!(
            "/system.slice/docker-{ID}.scope/system.slice/nginx.service"
        )),
        "docker:3b9e1d54a7c2"
    );
    // The daemon itself is a plain service.
    assert_eq!(name("/system.slice/docker.service"), "docker.service");
}

#[test]
fn containerd_cri_o_and_podman_containers() {
    assert_eq!(
        name(&format!("/system.slice/cri-containerd-{ID}.scope")),
        "containerd:3b9e1d54a7c2"
    );
    assert_eq!(
        name(&format!("/system.slice/nerdctl-{ID}.scope")),
        "containerd:3b9e1d54a7c2"
    );
    assert_eq!(
        name(&format!("/machine.slice/crio-{ID}.scope")),
        "cri-o:3b9e1d54a7c2"
    );
    assert_eq!(
        name(&format!("/machine.slice/libpod-{ID}.scope")),
        "podman:3b9e1d54a7c2"
    );
    assert_eq!(
        name(&format!(
            "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"
        )),
        "podman:3b9e1d54a7c2"
    );
    // containerd's cgroupfs layout: a namespace, then the bare id.
    assert_eq!(name(&format!("/default/{ID}")), "container:3b9e1d54a7c2");
    // The runtime's own service is not a container.
    assert_eq!(
        name("/system.slice/containerd.service"),
        "containerd.service"
    );
}

#[test]
fn kubepods_with_the_systemd_driver_at_every_qos_level() {
    for (qos_slice, pod_slice) in [
        (
            "kubepods-burstable.slice/",
            format!("kubepods-burstable-pod{UID_SYSTEMD}.slice"),
        ),
        (
            "kubepods-besteffort.slice/",
            format!("kubepods-besteffort-pod{UID_SYSTEMD}.slice"),
        ),
        ("", format!("kubepods-pod{UID_SYSTEMD}.slice")),
    ] {
        let pod = format!("/kubepods.slice/{qos_slice}{pod_slice}");
        assert_eq!(name(&pod), format!("pod:{UID}"), "{pod}");
        assert_eq!(
            name(&format!("{pod}/cri-containerd-{ID}.scope")),
            format!("pod:{UID}/containerd:3b9e1d54a7c2")
        );
        assert_eq!(
            name(&format!("{pod}/crio-{ID}.scope")),
            format!("pod:{UID}/cri-o:3b9e1d54a7c2")
        );
        assert_eq!(
            name(&format!("{pod}/docker-{ID}.scope")),
            format!("pod:{UID}/docker:3b9e1d54a7c2")
        );
    }
}

#[test]
fn kubepods_with_the_cgroupfs_driver_at_every_qos_level() {
    for qos in ["burstable/", "besteffort/", ""] {
        let pod = format!("/kubepods/{qos}pod{UID}");
        assert_eq!(name(&pod), format!("pod:{UID}"), "{pod}");
        // containerd and Docker write the bare id; CRI-O prefixes it.
        assert_eq!(
            name(&format!("{pod}/{ID}")),
            format!("pod:{UID}/3b9e1d54a7c2")
        );
        assert_eq!(
            name(&format!("{pod}/crio-{ID}")),
            format!("pod:{UID}/cri-o:3b9e1d54a7c2")
        );
    }
}

#[test]
fn kind_nodes_and_static_pods() {
    // kind runs the kubelet's hierarchy under kubelet.slice.
    assert_eq!(
        name(&format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/\
             kubelet-kubepods-besteffort-pod{UID_SYSTEMD}.slice/cri-containerd-{ID}.scope"
        )),
        format!("pod:{UID}/containerd:3b9e1d54a7c2")
    );
    // A static pod's UID is a hash without dashes.
    let hash = "0f3c7a1e5b9d2f4a6c8e0b2d4f6a8c0e";
    assert_eq!(
        name(&format!("/kubepods/burstable/pod{hash}/{ID}")),
        format!("pod:{hash}/3b9e1d54a7c2")
    );
    // The QoS levels themselves hold no pod.
    assert_eq!(
        name("/kubepods.slice/kubepods-burstable.slice"),
        "/kubepods.slice/kubepods-burstable.slice"
    );
}

#[test]
fn anything_else_is_its_path() {
    assert_eq!(name("/"), "/");
    assert_eq!(name(""), "/");
    assert_eq!(name("/system.slice"), "/system.slice");
    assert_eq!(name("/my-group/worker"), "/my-group/worker");
    // Not a container id: too short, or not hex.
    assert_eq!(name("/docker/abc"), "/docker/abc");
    assert_eq!(name("/system.slice/docker-xyz.scope"), "docker-xyz.scope");
    // A "pod" directory outside kubepods is nothing special.
    assert_eq!(name(&format!("/pod{UID}")), format!("/pod{UID}"));
}
