use super::*;
use crate::sinks::metrics::tests::{alert_failure, record};

#[test]
fn text_report_escapes_devices_and_values_from_the_wire() {
    let mut comparison = Comparison::new();
    comparison.add(&HandshakeEvent {
        device: "eth\x1b[2J0".into(),
        ja4: Some("t13\0\x1b]0;x\x07".into()),
        ..record()
    });
    comparison.add(&alert_failure());
    let text = comparison.render_text(false);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    let header = text.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [r"eth\x1b[2J0", "eth1"]
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(r"* t13\x00\x1b]0;x\x07 ")
                && l.ends_with("1 (100.0%)         0 (  0.0%)")),
        "{text}"
    );
}

#[test]
fn grouped_by_service_the_columns_are_services_and_none() {
    let mut comparison = Comparison::grouped_by(GroupBy::Service);
    let service = |name: &str| Some(name.to_string());
    comparison.add(&HandshakeEvent {
        service: service("web-a.service"),
        ..record()
    });
    comparison.add(&HandshakeEvent {
        service: service("web-b.service"),
        ..alert_failure()
    });
    comparison.add(&HandshakeEvent {
        service: service("web-b.service"),
        ..alert_failure()
    });
    comparison.add(&record());
    assert_eq!(
        comparison.devices(),
        [NO_SERVICE, "web-a.service", "web-b.service"]
    );
    let text = comparison.render_text(false);
    let header = text.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["(none)", "web-a.service", "web-b.service"]
    );
    assert!(
        text.lines().any(|l| l.starts_with("* failed ")
            && l.ends_with("0 (  0.0%)         0 (  0.0%)         2 (100.0%)")),
        "{text}"
    );
    assert!(text.contains("differs between services"), "{text}");
}
