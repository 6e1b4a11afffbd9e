//! Interfaces that appear, come up, are renamed and vanish while tlsmon follows
//! them: veth pairs created and deleted during the test, in a throwaway namespace.

use std::{sync::Mutex, time::Duration};

use tlsmon::source::live::{Capture, CaptureOptions, InterfaceChange, InterfaceSelector};
use tlsmon_tests::{
    attached::tcx_programs_of_ours,
    netns::{unique_name, Netns},
};

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `next_segments` until `want` changes arrived (segments are not expected:
/// nothing speaks TLS here), or fails after a deadline.
fn changes(
    rt: &tokio::runtime::Runtime,
    capture: &mut Capture,
    want: usize,
) -> Vec<InterfaceChange> {
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut got = capture.take_interface_changes();
        while got.len() < want {
            let mut segments = Vec::new();
            let waited =
                tokio::time::timeout_at(deadline, capture.next_segments(&mut segments)).await;
            let Ok(result) = waited else {
                panic!("timed out waiting for {want} interface changes; got {got:?}");
            };
            result.unwrap();
            got.extend(capture.take_interface_changes());
        }
        got
    })
}

fn sorted(mut v: Vec<InterfaceChange>) -> Vec<InterfaceChange> {
    v.sort_by_key(|c| format!("{c:?}"));
    v
}

#[test]
fn veth_pairs_created_and_deleted_are_attached_and_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ns = Netns::new("tmh");
    ns.enter_current_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let prefix = unique_name("hp");
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));

    let mut capture = Capture::load(CaptureOptions::default()).unwrap();
    let now = capture
        .follow_interfaces(InterfaceSelector::new(&[format!("{prefix}*")]).unwrap())
        .unwrap();
    assert!(now.is_empty());

    // Appear (down: named interfaces are followed whatever their state).
    ns.exec(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    let got = changes(&rt, &mut capture, 2);
    assert_eq!(
        sorted(got),
        vec![
            InterfaceChange::Attached(a.clone()),
            InterfaceChange::Attached(b.clone())
        ]
    );
    assert_eq!(capture.attached(), vec![a.clone(), b.clone()]);
    assert_eq!(tcx_programs_of_ours(&ns, &a), (1, 1));
    assert_eq!(tcx_programs_of_ours(&ns, &b), (1, 1));

    // Coming up or changing flags attaches nothing twice.
    ns.exec(&["ip", "link", "set", &a, "up"]);
    ns.exec(&["ip", "link", "set", &b, "up"]);
    assert_eq!(tcx_programs_of_ours(&ns, &a), (1, 1));

    // Renamed out of the selection: dropped.
    let outside = unique_name("zz");
    ns.exec(&["ip", "link", "set", &b, "down"]);
    ns.exec(&["ip", "link", "set", &b, "name", &outside]);
    let got = changes(&rt, &mut capture, 3);
    assert_eq!(
        got,
        vec![
            InterfaceChange::Detached(b.clone()),
            InterfaceChange::Attached(outside.clone()),
            InterfaceChange::Detached(outside.clone()),
        ],
        "a rename is a detach and attach under the new name, then the selection drops it"
    );
    assert_eq!(tcx_programs_of_ours(&ns, &outside), (0, 0));

    // Vanish: deleting one end deletes the pair.
    ns.exec(&["ip", "link", "del", &a]);
    let got = changes(&rt, &mut capture, 1);
    assert_eq!(got, vec![InterfaceChange::Detached(a.clone())]);
    assert!(capture.attached().is_empty());
    drop(capture);
}

#[test]
fn default_selection_attaches_interfaces_when_they_come_up() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ns = Netns::new("tmd");
    ns.enter_current_thread();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut capture = Capture::load(CaptureOptions::default()).unwrap();
    // Only loopback exists: nothing selected.
    let now = capture
        .follow_interfaces(InterfaceSelector::default())
        .unwrap();
    assert!(now.is_empty());

    let a = unique_name("up");
    let b = unique_name("up");
    ns.exec(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
    // Down interfaces are not selected by default; bringing `a` up attaches it.
    ns.exec(&["ip", "link", "set", &a, "up"]);
    let got = changes(&rt, &mut capture, 1);
    assert_eq!(got, vec![InterfaceChange::Attached(a.clone())]);
    assert_eq!(capture.attached(), vec![a.clone()]);
    assert_eq!(tcx_programs_of_ours(&ns, &b), (0, 0));

    // Going down keeps it (it still exists); vanishing drops it.
    ns.exec(&["ip", "link", "set", &a, "down"]);
    ns.exec(&["ip", "link", "del", &b]);
    let got = changes(&rt, &mut capture, 1);
    assert_eq!(got, vec![InterfaceChange::Detached(a.clone())]);
    assert!(capture.attached().is_empty());
}
