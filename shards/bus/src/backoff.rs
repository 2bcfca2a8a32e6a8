//! Reconnect backoff and a rate limit for repeated log lines.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Exponential backoff: `initial`, doubling up to `max`; `reset` after a session was established.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(100);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub fn reset(&mut self) {
        self.next = self.initial;
    }

    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    /// The delay before reconnect attempt number `attempt` (1-based), for clients that ask by number.
    pub fn delay_for_attempt(attempt: usize) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16) as u32;
        (Self::INITIAL * 2u32.pow(doublings)).min(Self::MAX)
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::INITIAL, Self::MAX)
    }
}

/// Lets a repeated log line through at most once per `every`.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    origin: Instant,
    every_ms: u64,
    /// Milliseconds since `origin` when a line last went through, plus one (0: never).
    last_ms: AtomicU64,
}

impl LogLimiter {
    pub fn new(every: Duration) -> Self {
        Self {
            origin: Instant::now(),
            every_ms: every.as_millis() as u64,
            last_ms: AtomicU64::new(0),
        }
    }

    /// Whether to log now.
    pub fn allow(&self) -> bool {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if last != 0 && now - last < self.every_ms {
            return false;
        }
        self.last_ms
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_100ms_to_5s_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn delay_by_attempt_number_matches() {
        assert_eq!(Backoff::delay_for_attempt(0), Duration::from_millis(100));
        assert_eq!(Backoff::delay_for_attempt(1), Duration::from_millis(100));
        assert_eq!(Backoff::delay_for_attempt(3), Duration::from_millis(400));
        assert_eq!(Backoff::delay_for_attempt(1000), Duration::from_secs(5));
    }

    #[test]
    fn limiter_lets_one_line_through_per_period() {
        let limiter = LogLimiter::new(Duration::from_secs(3600));
        assert!(limiter.allow());
        assert!(!limiter.allow());
        let open = LogLimiter::new(Duration::ZERO);
        assert!(open.allow());
        assert!(open.allow());
    }
}
