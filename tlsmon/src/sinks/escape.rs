//! The one escaping applied to strings that came off the wire (SNI, ALPN, capture
//! and event-file contents) before they reach a Prometheus label value or a terminal.
//!
//! Raw control characters there would let a peer drive the operator's terminal
//! (ESC sequences in `tlsmon watch`), hide text (NUL, CR) or confuse whatever reads
//! the exposition. The form is Python-like and reversible ([`unescape_controls`]):
//!
//! - `\` becomes `\\`;
//! - every C0 control (U+0000-U+001F), DEL (U+007F) and C1 control (U+0080-U+009F),
//!   exactly the characters [`char::is_control`] names, becomes `\x` and two
//!   lowercase hex digits: ESC is `\x1b`, NUL `\x00`, U+009B `\x9b`;
//! - everything else is kept as it is.
//!
//! Strings are already valid UTF-8 here (the parser decodes peer bytes lossily, an
//! invalid byte becomes U+FFFD), so `\x9b` can only mean the character U+009B.
//! Prometheus' own escaping of `\`, `"` and newline applies on top, in the
//! prometheus crate's encoder; JSON output escapes by itself and does not use this.

use std::{borrow::Cow, fmt::Write as _};

/// `s` with backslashes doubled and control characters written as `\xHH`; borrowed
/// when nothing needed escaping.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                // Controls are U+0000..=U+009F: two hex digits always suffice.
                // Writing to a String cannot fail.
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The string [`escape_controls`] was given, or `None` when `s` is not something it
/// writes (a lone `\`, an unknown escape, a raw control character).
pub fn unescape_controls(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c.is_control() {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 2)?;
                let c = char::from_u32(code).filter(|c| c.is_control())?;
                out.push(c);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn needs_escape(c: char) -> bool {
    c == '\\' || c.is_control()
}

#[cfg(test)]
mod tests {
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
}
