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
mod tests;
