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
