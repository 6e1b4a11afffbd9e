use super::*;

#[test]
fn at_the_limit_fresh_then_idle_then_busy_connections_go_oldest_first() {
    let table = ConnectionTable::new(3);
    let mut a = table.admit();
    let mut b = table.admit();
    let mut c = table.admit();
    assert_eq!((a.shed_other, table.len()), (None, 3));
    // a answers a request, b served one and idles, c never sent anything.
    let busy_a = a.slot.busy();
    drop(b.slot.busy());
    assert_eq!(a.slot.activity(), Some(Activity::Busy));
    assert_eq!(b.slot.activity(), Some(Activity::Idle));

    let mut d = table.admit();
    assert_eq!(d.shed_other, Some(Activity::Fresh));
    assert_eq!(c.shed.try_recv(), Ok(()), "the silent one goes first");
    assert_eq!(c.slot.activity(), None);
    assert_eq!(table.len(), 3);

    // d is the newest, but fresh goes before the older idle b.
    let mut e = table.admit();
    assert_eq!(e.shed_other, Some(Activity::Fresh));
    assert_eq!(d.shed.try_recv(), Ok(()));
    let busy_e = e.slot.busy();
    // Left: a busy, b idle, e busy. Idle b goes next, then busy a (oldest).
    let f = table.admit();
    assert_eq!(f.shed_other, Some(Activity::Idle));
    assert_eq!(b.shed.try_recv(), Ok(()));
    drop(f.slot.busy());
    let _busy_f = f.slot.busy();
    let g = table.admit();
    assert_eq!(g.shed_other, Some(Activity::Busy));
    assert_eq!(a.shed.try_recv(), Ok(()));
    assert!(e.shed.try_recv().is_err(), "e stays");
    drop((busy_a, busy_e));
    assert_eq!(table.len(), 3);
}

#[test]
fn a_closed_connection_leaves_the_table() {
    let table = ConnectionTable::new(2);
    let a = table.admit();
    let b = table.admit();
    drop(a);
    assert_eq!(table.len(), 1);
    let c = table.admit();
    assert_eq!(c.shed_other, None, "there was room");
    drop((b, c));
    assert_eq!(table.len(), 0);
}
