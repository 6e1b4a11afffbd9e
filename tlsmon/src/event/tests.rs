use super::*;
use std::time::Duration;

#[test]
fn formats_rfc3339() {
    assert_eq!(
        format_rfc3339(Duration::ZERO),
        "1970-01-01T00:00:00.000000Z"
    );
    assert_eq!(
        format_rfc3339(Duration::new(1_709_251_199, 123_456_000)),
        "2024-02-29T23:59:59.123456Z"
    );
    assert_eq!(
        format_rfc3339(Duration::new(951_782_400, 0)),
        "2000-02-29T00:00:00.000000Z"
    );
}

#[test]
fn parses_what_it_formats() {
    for ts in [
        Duration::ZERO,
        Duration::new(1_709_251_199, 123_456_000),
        Duration::new(4_102_444_800, 1_000),
    ] {
        assert_eq!(parse_rfc3339(&format_rfc3339(ts)), Some(ts));
    }
    assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
    assert_eq!(parse_rfc3339("garbage"), None);
}

#[test]
fn saturates_past_year_9999_instead_of_overflowing() {
    assert_eq!(
        format_rfc3339(Duration::new(253_402_300_800, 0)),
        "9999-12-31T23:59:59.999999Z"
    );
    assert_eq!(format_rfc3339(Duration::MAX), "9999-12-31T23:59:59.999999Z");
    assert_eq!(
        format_rfc3339(Duration::new(253_402_300_799, 999_999_999)),
        "9999-12-31T23:59:59.999999Z"
    );
}

#[test]
fn truncates_to_microseconds_and_parses_any_fraction() {
    assert_eq!(
        format_rfc3339(Duration::new(0, 999_999)),
        "1970-01-01T00:00:00.000999Z"
    );
    assert_eq!(
        parse_rfc3339("1970-01-01T00:00:01.5Z"),
        Some(Duration::new(1, 500_000_000))
    );
    assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), None);
}

#[test]
fn event_files_written_before_cgroup_and_service_existed_still_load() {
    let mut value = serde_json::to_value(crate::sinks::metrics::tests::record()).unwrap();
    let object = value.as_object_mut().unwrap();
    object.remove("cgroup");
    object.remove("service");
    let event: HandshakeEvent = serde_json::from_value(value).unwrap();
    assert_eq!((event.cgroup, event.service), (None, None));
}
