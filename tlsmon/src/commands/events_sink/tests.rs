use super::*;

#[test]
fn the_throttle_lets_one_message_through_per_interval() {
    let t0 = Instant::now();
    let mut t = Throttle::new(Duration::from_secs(60));
    assert_eq!(t.allow(t0), Some(0));
    assert_eq!(t.allow(t0 + Duration::from_secs(1)), None);
    assert_eq!(t.allow(t0 + Duration::from_secs(59)), None);
    assert_eq!(t.allow(t0 + Duration::from_secs(60)), Some(2));
    assert_eq!(t.allow(t0 + Duration::from_secs(61)), None);
    assert_eq!(t.allow(t0 + Duration::from_secs(200)), Some(1));
}
