//! Waiting for a condition with a deadline instead of sleeping and hoping.

use std::time::{Duration, Instant};

/// Calls `check` every 20 ms until it returns `Some`, or fails after `timeout`
/// with `what` in the message.
pub fn until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
