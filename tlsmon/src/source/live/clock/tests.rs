use super::*;
use std::time::SystemTime;

#[test]
fn monotonic_now_maps_to_wall_clock_now() {
    let clock = WallClock::now();
    let mono_now = clock_ns(libc::CLOCK_MONOTONIC) as u64;
    let wall = clock.to_unix(mono_now);
    let expected = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    let diff = expected.abs_diff(wall);
    assert!(diff < Duration::from_secs(1), "off by {diff:?}");
}
