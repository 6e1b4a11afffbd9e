//! The daemon's ring of recent handshake events, served as JSON lines at
//! `/api/v1/events` (README, "Recent events").
//!
//! The ring keeps the newest [`DEFAULT_CAPACITY`] events (or what `--recent-events`
//! says), and at most [`MAX_BYTES`] of them: the oldest go first. Each event is kept
//! as its JSON line, written once when it is recorded, so a request copies text and
//! serialises nothing under the lock.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::event::{HandshakeEvent, Outcome};
use crate::sinks::lines::json_line;

/// Events kept by default.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Bytes of JSON the ring holds at most, whatever its capacity in events.
pub const MAX_BYTES: usize = 32 << 20;

/// One kept event.
struct Entry {
    failed: bool,
    line: Arc<str>,
}

/// The kept events, oldest first, and their size.
#[derive(Default)]
struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
}

/// The newest handshake events, shared between the pipeline (which adds) and the
/// HTTP endpoint (which reads).
pub struct RecentEvents {
    ring: Mutex<Ring>,
    capacity: usize,
}

/// What `/api/v1/events` was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsQuery {
    /// `failed=true`: only failed handshakes; `failed=false`: only the others.
    pub failed: Option<bool>,
    /// The newest this many matching events (default and maximum: the ring's capacity).
    pub limit: usize,
}

impl EventsQuery {
    /// Parses a query string such as `failed=true&limit=100`. Anything else (an
    /// unknown or repeated parameter, a bad value) is an error that says what is
    /// wrong. Split by hand: two parameters whose values are plain words and digits
    /// need no percent-decoding, and anything else is refused anyway.
    pub fn parse(query: Option<&str>, capacity: usize) -> Result<EventsQuery, String> {
        let mut parsed = EventsQuery {
            failed: None,
            limit: capacity,
        };
        let (mut seen_failed, mut seen_limit) = (false, false);
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "failed" if !seen_failed => {
                    seen_failed = true;
                    parsed.failed = Some(match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(format!("failed must be true or false, not {value:?}")),
                    });
                }
                "limit" if !seen_limit => {
                    seen_limit = true;
                    parsed.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=capacity).contains(n))
                        .ok_or_else(|| {
                            format!("limit must be a number from 1 to {capacity}, not {value:?}")
                        })?;
                }
                "failed" | "limit" => return Err(format!("{name} is given twice")),
                _ => {
                    return Err(format!(
                        "unknown parameter {:?} (known: failed, limit)",
                        name.escape_debug().to_string()
                    ))
                }
            }
        }
        Ok(parsed)
    }
}

impl RecentEvents {
    /// An empty ring of `capacity` events (at least one).
    pub fn new(capacity: usize) -> RecentEvents {
        RecentEvents {
            ring: Mutex::new(Ring::default()),
            capacity: capacity.max(1),
        }
    }

    /// Most events kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds an event, dropping the oldest beyond the bounds.
    pub fn push(&self, record: &HandshakeEvent) {
        let line: Arc<str> = Arc::from(json_line(record));
        let entry = Entry {
            failed: record.outcome == Outcome::Failed,
            line,
        };
        let mut ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
        ring.bytes += entry.line.len() + 1;
        ring.entries.push_back(entry);
        while ring.entries.len() > self.capacity || ring.bytes > MAX_BYTES {
            let Some(old) = ring.entries.pop_front() else {
                break;
            };
            ring.bytes -= old.line.len() + 1;
        }
    }

    /// The newest `query.limit` events that match, oldest first, one JSON line each
    /// (every line ends in a newline), and how many there are.
    pub fn render(&self, query: &EventsQuery) -> (String, usize) {
        // Lines are collected under the lock (reference counts only) and copied after.
        let picked: Vec<Arc<str>> = {
            let ring = self.ring.lock().unwrap_or_else(PoisonError::into_inner);
            let mut newest_first: Vec<Arc<str>> = ring
                .entries
                .iter()
                .rev()
                .filter(|e| query.failed.is_none_or(|failed| e.failed == failed))
                .take(query.limit)
                .map(|e| e.line.clone())
                .collect();
            newest_first.reverse();
            newest_first
        };
        let mut body = String::with_capacity(picked.iter().map(|l| l.len() + 1).sum());
        for line in &picked {
            body.push_str(line);
            body.push('\n');
        }
        (body, picked.len())
    }
}

#[cfg(test)]
mod tests;
