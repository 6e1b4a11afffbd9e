//! Converts `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to wall-clock Unix time.

use std::time::Duration;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a valid timespec; both clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// The offset between the monotonic and the real-time clock, sampled now.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WallClock {
    realtime_minus_monotonic_ns: i128,
}

impl WallClock {
    /// Samples both clocks; call again to follow NTP steps.
    pub(crate) fn now() -> Self {
        let mono = clock_ns(libc::CLOCK_MONOTONIC);
        let real = clock_ns(libc::CLOCK_REALTIME);
        WallClock {
            realtime_minus_monotonic_ns: real - mono,
        }
    }

    /// Wall-clock time of a monotonic timestamp, as a duration since the epoch
    /// (zero for the impossible case of a time before 1970).
    pub(crate) fn to_unix(self, monotonic_ns: u64) -> Duration {
        let unix_ns = monotonic_ns as i128 + self.realtime_minus_monotonic_ns;
        let unix_ns = unix_ns.clamp(0, u64::MAX as i128) as u64;
        Duration::from_nanos(unix_ns)
    }
}

#[cfg(test)]
mod tests;
