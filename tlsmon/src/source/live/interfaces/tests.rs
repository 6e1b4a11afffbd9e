use super::*;

fn iface(index: u32, name: &str, up: bool) -> Interface {
    Interface {
        index,
        name: name.into(),
        up,
        loopback: name == "lo",
    }
}

fn names(v: Vec<Interface>) -> Vec<String> {
    v.into_iter().map(|i| i.name).collect()
}

#[test]
fn default_takes_up_interfaces_except_loopback() {
    let all = [
        iface(1, "lo", true),
        iface(2, "eth0", true),
        iface(3, "eth1", false),
    ];
    let s = InterfaceSelector::new::<&str>(&[]).unwrap();
    assert!(s.is_default());
    assert_eq!(names(s.select(&all).unwrap()), ["eth0"]);
}

#[test]
fn globs_and_names_select_regardless_of_state() {
    let all = [
        iface(1, "lo", true),
        iface(2, "eth0", true),
        iface(3, "eth1", false),
        iface(4, "veth7", true),
    ];
    let s = InterfaceSelector::new(&["eth*", "lo"]).unwrap();
    assert_eq!(names(s.select(&all).unwrap()), ["lo", "eth0", "eth1"]);
    let s = InterfaceSelector::new(&["veth[0-9]"]).unwrap();
    assert_eq!(names(s.select(&all).unwrap()), ["veth7"]);
}

#[test]
fn unknown_name_is_an_error_but_empty_glob_is_not() {
    let all = [iface(2, "eth0", true)];
    let err = InterfaceSelector::new(&["wlan0"])
        .unwrap()
        .select(&all)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "interface \"wlan0\" not found (see `ip link`)"
    );
    assert!(InterfaceSelector::new(&["wl*"])
        .unwrap()
        .select(&all)
        .unwrap()
        .is_empty());
    assert!(matches!(
        InterfaceSelector::new(&["eth[0"]),
        Err(CaptureError::InvalidPattern { .. })
    ));
}
