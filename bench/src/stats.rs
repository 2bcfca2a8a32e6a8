//! Shared counters and the latency histogram.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Live counters, updated by connection and publisher tasks, read by the progress line.
#[derive(Default)]
pub struct Counters {
    pub subscribed: AtomicU64,
    pub connect_errors: AtomicU64,
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    pub delivered: AtomicU64,
    /// Time (ns, see `pusher::now_ns`) of the latest delivery.
    pub last_delivery_ns: AtomicU64,
    pub closed_early: AtomicU64,
    /// WebSocket payload bytes of the deliveries (full or delta frames).
    pub wire_bytes: AtomicU64,
}

impl Counters {
    pub fn get(v: &AtomicU64) -> u64 {
        v.load(Ordering::Relaxed)
    }
    pub fn inc(v: &AtomicU64) {
        v.fetch_add(1, Ordering::Relaxed);
    }
}

/// Latency in microseconds, 1 µs .. 1 h, 3 significant digits.
pub struct Latency {
    hist: Mutex<Histogram<u64>>,
}

impl Default for Latency {
    fn default() -> Self {
        Self {
            hist: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds"),
            ),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl Latency {
    /// Record a batch of samples (µs) under one lock.
    pub fn record_many(&self, samples: &[u64]) {
        if let Ok(mut h) = self.hist.lock() {
            for &s in samples {
                h.saturating_record(s.max(1));
            }
        }
    }

    pub fn summary(&self) -> Option<LatencySummary> {
        let h = self.hist.lock().ok()?;
        if h.is_empty() {
            return None;
        }
        Some(LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        })
    }
}
