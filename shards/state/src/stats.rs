//! Counters of the state backends, read by the metrics exporter.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

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
}

impl StateStats {
    /// Adds one to `counter`.
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
