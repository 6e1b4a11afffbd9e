//! The kernel program's diagnostics: aya-log records of rare events (the RingBuf
//! was full, the flow table refused a flow, a packet could not be parsed past a
//! bound, a flow's byte budget cut it), forwarded into the daemon's log at debug
//! level under the target [`TARGET`], at most [`MAX_PER_SECOND`] a second.
//!
//! Off by default: the program is loaded with aya-log's level at 0 unless the log
//! filter shows [`TARGET`] at debug level (`--log-level info,tlsmon::kernel=debug`,
//! or `debug`). With it off the verifier removes every report from the program
//! (see `tlsmon-ebpf/src/diag.rs`).

use std::{
    panic::AssertUnwindSafe,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::io::{unix::AsyncFd, Interest};

/// Log target of the forwarded records.
pub const TARGET: &str = "tlsmon::kernel";

/// Records forwarded per second at most; the rest are counted, and the count is
/// logged before the next record that is forwarded.
pub const MAX_PER_SECOND: u32 = 20;

/// The name of aya-log's level global in the kernel object.
pub(crate) const LEVEL_GLOBAL: &str = aya_log::LEVEL;

/// Whether the current log filter shows kernel diagnostics.
pub fn wanted() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// The value of aya-log's level global the program is loaded with.
pub(crate) fn level(on: bool) -> u8 {
    if on {
        aya_log::Level::Debug as u8
    } else {
        0
    }
}

/// Lets through at most `max` events per window of `window`; counts the rest.
#[derive(Debug)]
pub(crate) struct RateLimit {
    max: u32,
    window: Duration,
    started: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Log it.
    Yes,
    /// Log it, after saying how many the previous window suppressed.
    AfterSuppressed(u64),
    /// Drop it (counted).
    No,
}

impl RateLimit {
    pub(crate) fn new(max: u32, window: Duration) -> RateLimit {
        RateLimit {
            max,
            window,
            started: None,
            passed: 0,
            suppressed: 0,
        }
    }

    /// Decides for an event at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Admit {
        let mut earlier = 0;
        match self.started {
            Some(start) if now.saturating_duration_since(start) < self.window => {}
            _ => {
                self.started = Some(now);
                self.passed = 0;
                earlier = std::mem::take(&mut self.suppressed);
            }
        }
        if self.passed >= self.max {
            self.suppressed += 1;
            return Admit::No;
        }
        self.passed += 1;
        match earlier {
            0 => Admit::Yes,
            n => Admit::AfterSuppressed(n),
        }
    }
}

/// The `log` sink aya-log writes to: into tracing, rate-limited.
struct Forward {
    limit: Mutex<RateLimit>,
}

impl log::Log for Forward {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let admit = self
            .limit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(Instant::now());
        match admit {
            Admit::No => {}
            Admit::Yes => tracing::debug!(target: TARGET, "{}", record.args()),
            Admit::AfterSuppressed(n) => {
                tracing::debug!(target: TARGET, "{n} kernel diagnostics suppressed (more than {MAX_PER_SECOND} a second)");
                tracing::debug!(target: TARGET, "{}", record.args());
            }
        }
    }

    fn flush(&self) {}
}

/// Reads the kernel's diagnostics until dropped; see [`KernelLog::run`].
pub struct KernelLog {
    logger: EbpfLogger<Forward>,
}

impl std::fmt::Debug for KernelLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelLog")
    }
}

impl KernelLog {
    /// Takes aya-log's ring buffer out of the loaded object.
    pub(crate) fn new(ebpf: &mut Ebpf) -> Result<KernelLog, aya_log::Error> {
        let forward = Forward {
            limit: Mutex::new(RateLimit::new(MAX_PER_SECOND, Duration::from_secs(1))),
        };
        Ok(KernelLog {
            logger: EbpfLogger::init_with_logger(ebpf, forward)?,
        })
    }

    /// Forwards records as they arrive, for as long as the daemon runs (spawn it
    /// on the runtime). Returns if the ring buffer cannot be watched, or if
    /// aya-log fails on a record (logged as an error: the records come from
    /// tlsmon's own kernel program, so that would be a bug, not an input).
    pub async fn run(self) {
        // SAFETY: the logger owns aya-log's ring buffer and keeps its map fd
        // open, unchanged, for as long as it lives, which is as long as the
        // AsyncFd.
        let mut fd =
            match unsafe { AsyncFd::register_with_interest(self.logger, Interest::READABLE) } {
                Ok(fd) => fd,
                Err(e) => {
                    tracing::error!(
                        "cannot watch the kernel diagnostics ring buffer: {}",
                        e.into_parts().1
                    );
                    return;
                }
            };
        loop {
            let mut guard = match fd.readable_mut().await {
                Ok(guard) => guard,
                Err(e) => {
                    tracing::error!("waiting for kernel diagnostics: {e}");
                    return;
                }
            };
            let logger = guard.get_inner_mut();
            // aya-log unwraps its own record parsing: keep a bad record from
            // taking the daemon down.
            if std::panic::catch_unwind(AssertUnwindSafe(|| logger.flush())).is_err() {
                tracing::error!("kernel diagnostics: undecodable record; no longer forwarded");
                return;
            }
            guard.clear_ready();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_passes_max_per_window_and_reports_the_rest_once() {
        let mut limit = RateLimit::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let first: Vec<Admit> = (0..5).map(|i| limit.admit(ms(i))).collect();
        assert_eq!(
            first,
            [Admit::Yes, Admit::Yes, Admit::Yes, Admit::No, Admit::No]
        );
        // The next window: the first event carries the count of the dropped two.
        assert_eq!(limit.admit(ms(1000)), Admit::AfterSuppressed(2));
        assert_eq!(limit.admit(ms(1001)), Admit::Yes);
        // Nothing was dropped in that window: nothing to report in the next.
        assert_eq!(limit.admit(ms(2500)), Admit::Yes);
    }

    #[test]
    fn the_level_is_off_unless_asked() {
        assert_eq!(level(false), 0);
        assert_eq!(level(true), aya_log::Level::Debug as u8);
    }
}
