use super::*;

#[test]
fn changes_are_bounded_and_counted() {
    let mut c = Changes::default();
    for i in 0..(MAX_PENDING_CHANGES + 3) {
        c.push(InterfaceChange::Attached(format!("if{i}")));
    }
    assert_eq!(c.generation(), (MAX_PENDING_CHANGES + 3) as u64);
    let taken = c.take();
    assert_eq!(taken.len(), MAX_PENDING_CHANGES);
    assert_eq!(taken[0], InterfaceChange::Attached("if3".into()));
    assert!(c.take().is_empty());
}
