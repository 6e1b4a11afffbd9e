use super::*;

const WINDOW: Duration = CaptureHealth::LOSS_WINDOW;

#[test]
fn drops_count_within_the_window_only() {
    let t0 = Instant::now();
    let at = |secs: u64| t0 + Duration::from_secs(secs);
    let mut w = DropWindow::default();
    assert_eq!(w.dropped_since(t0, WINDOW), 0, "no sample yet");
    // Young daemon: everything since the program was loaded is recent.
    w.record(at(0), 5);
    assert_eq!(w.dropped_since(at(0), WINDOW), 5);
    for s in 1..=10 {
        w.record(at(s), 5);
    }
    // At 10 s the sample of 0 s is a window old: the 5 drops are older.
    assert_eq!(w.dropped_since(at(10), WINDOW), 0);
    w.record(at(11), 8);
    w.record(at(12), 9);
    assert_eq!(w.dropped_since(at(12), WINDOW), 4);
    for s in 13..=21 {
        w.record(at(s), 9);
    }
    // The window is (11 s, 21 s]: the 3 drops seen at 11 s are older.
    assert_eq!(w.dropped_since(at(21), WINDOW), 1);
    w.record(at(22), 9);
    assert_eq!(w.dropped_since(at(22), WINDOW), 0);
    // Without new samples the drops age out too.
    w.record(at(24), 12);
    assert_eq!(w.dropped_since(at(24), WINDOW), 3);
    assert_eq!(w.dropped_since(at(34), WINDOW), 0);
    assert!(w.samples.len() <= 12, "only about a window is kept");
}

#[test]
fn a_counter_restart_starts_over_from_zero() {
    let t0 = Instant::now();
    let mut w = DropWindow::default();
    for s in 0..20 {
        w.record(t0 + Duration::from_secs(s), 100);
    }
    w.record(t0 + Duration::from_secs(20), 2);
    assert_eq!(w.dropped_since(t0 + Duration::from_secs(20), WINDOW), 2);
}

#[test]
fn samples_are_bounded() {
    let t0 = Instant::now();
    let mut w = DropWindow::default();
    for i in 0..1000u64 {
        w.record(t0 + Duration::from_millis(i), i);
    }
    assert_eq!(w.samples.len(), MAX_DROP_SAMPLES);
    // The window is then shorter than asked, never longer.
    assert_eq!(
        w.dropped_since(t0 + Duration::from_millis(999), WINDOW),
        999 - 935
    );
}
