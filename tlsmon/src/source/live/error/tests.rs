use super::*;

#[test]
fn one_line_joins_and_keeps_the_end() {
    assert_eq!(one_line("a\n\n b \nc\n", 100), "a | b | c");
    assert_eq!(one_line("first\nsecond\nlast words", 10), "...last words");
}

#[test]
fn messages_are_single_lines() {
    let e = CaptureError::VerifierRejected {
        program: "tlsmon_ingress".into(),
        reason: "EACCES".into(),
        log: one_line("0: r1 = r2\ninvalid access", 200),
    };
    let text = e.to_string();
    assert!(!text.contains('\n'));
    assert!(text.contains("invalid access"), "{text}");
}
