use super::*;

#[test]
fn names_and_indexes_round_trip_and_renames_replace() {
    let t = DeviceTable::default();
    t.insert(7, "eth0");
    assert_eq!(t.device(7).name(), "eth0");
    assert_eq!(t.index("eth0"), Some(7));
    t.insert(7, "wan0");
    assert_eq!(t.index("eth0"), None);
    assert_eq!(t.index("wan0"), Some(7));
    // Unknown and nonexistent: a stable placeholder name.
    assert_eq!(t.device(999_999).name(), "if999999");
}
