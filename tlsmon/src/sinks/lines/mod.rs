//! How handshake records leave the process: JSON lines (the public schema of
//! [`crate::event`]), one human-readable line per handshake for `watch`, an
//! append-only events file, and the text summary of `analyze --format text`.

use std::{fmt::Write as _, net::SocketAddr};

pub use super::events_file::{EventsFile, OutputError};
pub use super::summary::TextSummary;

use crate::{
    event::{format_rfc3339, FailureReason, HandshakeEvent, Outcome},
    sinks::escape::escape_controls,
};

const RED: &str = "\x1b[31m";
const YELLOW: &str = "\x1b[33m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

/// The record as one line of JSON (no trailing newline).
pub fn json_line(record: &HandshakeEvent) -> String {
    // Serialising this struct cannot fail: every field is a string, number, bool,
    // address, list or struct of those, and map keys are field names. Should a
    // future field break that, emit a valid JSON error line rather than panic.
    serde_json::to_string(record).unwrap_or_else(|e| {
        serde_json::json!({ "error": format!("cannot serialise handshake record: {e}") })
            .to_string()
    })
}

/// The record as one readable line (no trailing newline):
/// time, device, direction, client → server, the local service when there is
/// one, SNI, version, cipher, group, outcome with reason, and for a failure the
/// diagnosis's sentence after ` => `. With `color`, failures are red and incomplete
/// handshakes yellow (ANSI escapes).
pub fn text_line(record: &HandshakeEvent, color: bool) -> String {
    let ts = format_rfc3339(record.ts);
    // "HH:MM:SS.uuuuuu" like tcpdump; the date is rarely what one reads first.
    let time = ts.get(11..26).unwrap_or(&ts);
    let client = SocketAddr::new(record.client_ip, record.client_port);
    let server = SocketAddr::new(record.server_ip, record.server_port);
    // Only live handshakes of local sockets have a service; other lines stay short.
    let service = record
        .service
        .as_deref()
        .map_or_else(String::new, |s| format!("service={} ", printable(s)));
    // QUIC lines say so (and which QUIC), next to TCP ones that say nothing.
    let quic = match record.transport {
        crate::event::Transport::Quic => format!(
            "quic/{} ",
            printable(record.quic_version.as_deref().unwrap_or("?"))
        ),
        crate::event::Transport::Tcp => String::new(),
    };
    let mut line = format!(
        "{time} {device} {direction} {client} -> {server} {quic}{service}sni={sni} {version} {cipher} {group} ",
        device = printable(&record.device),
        direction = record.direction.as_str(),
        sni = opt(&record.sni),
        version = opt(&record.version),
        cipher = opt(&record.cipher),
        group = opt(&record.group),
    );
    let verdict = verdict(record);
    match (color, record.outcome) {
        (true, Outcome::Failed) => {
            let _ = write!(line, "{BOLD}{RED}{verdict}{RESET}");
        }
        (true, Outcome::Incomplete) => {
            let _ = write!(line, "{YELLOW}{verdict}{RESET}");
        }
        _ => line.push_str(&verdict),
    }
    if let Some(ms) = record.duration_ms.filter(|ms| ms.is_finite()) {
        let _ = write!(line, " {ms:.1}ms");
    }
    // Why, in one sentence (it may quote an SNI: escaped like every wire value).
    if let Some(diagnosis) = &record.diagnosis {
        let _ = write!(line, " => {}", printable(&diagnosis.summary));
    }
    line
}

/// "established", "incomplete", or "FAILED <reason> ..." with who did what.
fn verdict(record: &HandshakeEvent) -> String {
    match record.outcome {
        Outcome::Established => {
            let mut v = String::from("established");
            if record.resumed {
                v.push_str(" (resumed)");
            }
            v
        }
        Outcome::Incomplete => String::from("incomplete"),
        Outcome::Failed => {
            let mut v = String::from("FAILED");
            match record.failure_reason {
                Some(FailureReason::Alert) => {
                    let _ = write!(v, " alert {}", opt(&record.alert));
                    if let Some(sender) = record.alert_sender {
                        let _ = write!(v, " from {}", sender.as_str());
                    }
                }
                Some(reason @ (FailureReason::Reset | FailureReason::Closed)) => {
                    let _ = write!(v, " {}", reason.as_str());
                    if let Some(side) = record.closed_by {
                        let _ = write!(v, " by {}", side.as_str());
                    }
                }
                Some(reason) => {
                    let _ = write!(v, " {}", reason.as_str());
                }
                None => v.push_str(" (reason unknown)"),
            }
            if let Some(detail) = &record.detail {
                let _ = write!(v, ": {}", printable(detail));
            }
            v
        }
    }
}

fn opt(value: &Option<String>) -> String {
    value.as_deref().map_or_else(|| "-".to_owned(), printable)
}

/// The string with control characters escaped ([`crate::sinks::escape`]): SNI and other
/// fields come off the wire, and raw escape sequences in them must not drive the
/// operator's terminal.
pub(crate) fn printable(s: &str) -> String {
    escape_controls(s).into_owned()
}

#[cfg(test)]
mod tests;
