//! Counters of the state backends, read by the metrics exporter.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counters of the state backends.
#[derive(Debug, Default)]
pub struct StateStats {
    /// Rate-limit checks that could not be made (backend down, slow or erroring; the request was served).
    pub rate_limiter_errors: AtomicU64,
    /// Cache writes or reads that failed (a read that failed is a cache miss).
    pub cache_errors: AtomicU64,
    /// Gauge: 1 while the rate limiter's backend is connected.
    pub rate_limiter_up: AtomicU8,
    /// Gauge: 1 while the cache's backend is connected.
    pub cache_up: AtomicU8,
    last_warning: Mutex<Option<Instant>>,
}

/// At most one warning about the backends per this interval.
const WARN_EVERY: Duration = Duration::from_secs(5);

impl StateStats {
    /// Adds one to `counter`.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// True when a warning may be logged now (at most one per [`WARN_EVERY`]).
    pub fn may_warn(&self) -> bool {
        let Ok(mut last) = self.last_warning.lock() else {
            return false;
        };
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }
}
