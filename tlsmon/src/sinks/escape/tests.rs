use super::*;

#[test]
fn controls_and_backslashes_are_escaped_the_rest_kept() {
    assert!(matches!(
        escape_controls("example.com"),
        Cow::Borrowed("example.com")
    ));
    assert_eq!(
        escape_controls("evil\x1b]0;pwned\x07\0.example"),
        r"evil\x1b]0;pwned\x07\x00.example"
    );
    assert_eq!(escape_controls("a\\b"), r"a\\b");
    assert_eq!(
        escape_controls("tab\there\nnl\r\x7f"),
        r"tab\x09here\x0anl\x0d\x7f"
    );
    assert_eq!(escape_controls("c1:\u{9b}\u{80}\u{9f}"), r"c1:\x9b\x80\x9f");
    // Printable non-ASCII (and the replacement character) stay as they are.
    assert_eq!(
        escape_controls("bücher.de \u{a0}\u{fffd}"),
        "bücher.de \u{a0}\u{fffd}"
    );
}

#[test]
fn escaping_is_reversed_exactly() {
    let every_control: String = (0u32..=0x9f)
        .filter_map(char::from_u32)
        .filter(|c| c.is_control())
        .collect();
    assert_eq!(every_control.chars().count(), 32 + 1 + 32);
    let escaped = escape_controls(&every_control);
    assert!(!escaped.chars().any(char::is_control));
    assert_eq!(escaped.len(), 65 * 4);
    for s in [
        every_control.as_str(),
        r"a\b\\c\x1b",
        "x\u{1b}[31m\\x1b\0",
        "",
        "plain",
    ] {
        assert_eq!(unescape_controls(&escape_controls(s)).as_deref(), Some(s));
    }
    // The literal text `\x1b` and the ESC character stay distinguishable.
    assert_ne!(escape_controls(r"\x1b"), escape_controls("\x1b"));
}

#[test]
fn unescape_refuses_what_escape_never_writes() {
    for bad in [r"\", r"\q", r"\x4", r"\x41", r"\xzz", "raw\x1b"] {
        assert_eq!(unescape_controls(bad), None, "{bad:?}");
    }
}
