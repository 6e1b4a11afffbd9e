//! The daemon's log: where it goes, in which format, and the one line it writes
//! when the kernel starts or stops dropping events.
//!
//! Lines go to standard error. Text lines carry colours only when standard
//! error is a terminal (the systemd journal and log files get plain text);
//! `--log-format json` writes one JSON object per line for log pipelines. Every
//! line is an event that matters (an interface attached, detached, vanished;
//! drops started or stopped; errors), never one per packet or per handshake.

use std::{
    io::{self, IsTerminal},
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::config::LogFormat;

/// Installs the global subscriber with `filter` (EnvFilter syntax). A second
/// call (tests running several daemons in one process) is harmless.
pub fn init(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log level {filter:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    Ok(())
}

/// Turns the kernel's RingBuf drop counter, read every second, into two log
/// lines per episode: when drops start, and when they have stopped.
#[derive(Debug, Default)]
pub struct DropLog {
    /// Since when, and the counter's value before the episode began.
    episode: Option<(Instant, u64)>,
}

/// What [`DropLog::update`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum DropChange {
    /// Nothing to log.
    None,
    /// Drops began: `dropped` events in the recent window.
    Started {
        /// Events dropped within the window so far.
        dropped: u64,
    },
    /// The window has been free of drops again.
    Stopped {
        /// Events dropped during the episode.
        dropped: u64,
        /// From the first drop seen to the end of the episode.
        lasted: Duration,
    },
}

impl DropLog {
    /// `recent`: drops within the health window (see
    /// `CaptureHealth::recent_ringbuf_drops`); `total`: the counter now.
    pub fn update(&mut self, now: Instant, recent: u64, total: u64) -> DropChange {
        match (self.episode, recent) {
            (None, 0) => DropChange::None,
            (None, dropped) => {
                self.episode = Some((now, total.saturating_sub(dropped)));
                DropChange::Started { dropped }
            }
            (Some(_), n) if n > 0 => DropChange::None,
            (Some((since, before)), _) => {
                self.episode = None;
                DropChange::Stopped {
                    dropped: total.saturating_sub(before),
                    lasted: now.saturating_duration_since(since),
                }
            }
        }
    }

    /// Logs what `update` found.
    pub fn log(change: &DropChange, window: Duration) {
        match change {
            DropChange::None => {}
            DropChange::Started { dropped } => tracing::warn!(
                dropped,
                "kernel ring buffer full: {dropped} events dropped in the last {} s; handshakes are being seen incompletely",
                window.as_secs()
            ),
            DropChange::Stopped { dropped, lasted } => tracing::info!(
                dropped,
                "kernel ring buffer drops stopped: {dropped} events dropped over {} s",
                lasted.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_when_drops_start_and_one_when_they_stop() {
        let mut log = DropLog::default();
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(log.update(at(0), 0, 100), DropChange::None);
        assert_eq!(
            log.update(at(1), 5, 105),
            DropChange::Started { dropped: 5 }
        );
        // Still dropping, then quiet but inside the window: nothing new.
        assert_eq!(log.update(at(2), 12, 112), DropChange::None);
        assert_eq!(log.update(at(8), 12, 112), DropChange::None);
        // The window no longer holds a drop.
        assert_eq!(
            log.update(at(13), 0, 112),
            DropChange::Stopped {
                dropped: 12,
                lasted: Duration::from_secs(12)
            }
        );
        assert_eq!(log.update(at(14), 0, 112), DropChange::None);
        // A new episode starts afresh.
        assert_eq!(
            log.update(at(20), 3, 115),
            DropChange::Started { dropped: 3 }
        );
    }
}
