//! The run's monotonic clock. Producers and consumers live in one process, so a
//! send time taken from one `Instant` epoch is directly comparable with the
//! receive time (the original used `System.nanoTime()` the same way).

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the run's epoch (never 0 once the epoch exists, since 0
/// means "no stamp" in a received message).
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

/// `at` in nanoseconds since the run's epoch (at least 1).
pub fn ns_at(at: Instant) -> u64 {
    let since = at.saturating_duration_since(epoch());
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Wall-clock milliseconds since the Unix epoch, for report timestamps.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_monotonic_and_nonzero() {
        let a = now_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = now_ns();
        assert!(a >= 1);
        assert!(b - a >= 2_000_000, "{a} {b}");
        assert!(unix_ms() > 1_600_000_000_000);
    }
}
