//! The daemon's events file as a sink: every failure is counted, but a full
//! disk logs one warning per [`WARN_EVERY`], not one per handshake.

use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::output::EventsFile;
use crate::record::HandshakeRecord;

/// At most one warning about failed writes per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Allows one message per interval and counts what it held back.
#[derive(Debug)]
pub(super) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    held_back: u64,
}

impl Throttle {
    pub(super) fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            held_back: 0,
        }
    }

    /// `Some(messages held back since the last one)` when a message may go out
    /// at `now`; `None` (and one more held back) otherwise.
    pub(super) fn allow(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if !due {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
}

/// The events file, its failure counters and its throttled warnings.
pub(super) struct EventsSink {
    file: EventsFile,
    warnings: Throttle,
    /// Records lost since the last one that was written.
    lost_since_written: u64,
}

impl EventsSink {
    pub(super) fn new(file: EventsFile) -> EventsSink {
        EventsSink {
            file,
            warnings: Throttle::new(WARN_EVERY),
            lost_since_written: 0,
        }
    }

    /// Appends `record`; a failure is counted in `metrics` and, throttled, logged.
    pub(super) fn write(&mut self, record: &HandshakeRecord, metrics: &Metrics) {
        match self.file.write(record) {
            Ok(()) => {
                if self.lost_since_written > 0 {
                    tracing::info!(
                        path = %self.file.path().display(),
                        "events file written again; {} records were lost before",
                        self.lost_since_written
                    );
                    self.lost_since_written = 0;
                }
            }
            Err(err) => {
                metrics.health().add_events_file_error();
                metrics.health().add_events_file_records_lost(1);
                self.lost_since_written += 1;
                if let Some(held_back) = self.warnings.allow(Instant::now()) {
                    if held_back == 0 {
                        tracing::warn!("{err}");
                    } else {
                        tracing::warn!(
                            "{err} ({held_back} more failed writes since the last warning)"
                        );
                    }
                }
            }
        }
    }

    /// Reopens the file after rotation (SIGHUP); a failure is counted and logged
    /// (it follows an operator's signal, so it is not throttled).
    pub(super) fn reopen(&mut self, metrics: &Metrics) {
        match self.file.reopen() {
            Ok(()) => tracing::info!(path = %self.file.path().display(), "events file reopened"),
            Err(err) => {
                metrics.health().add_events_file_error();
                tracing::warn!("{err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
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
}
