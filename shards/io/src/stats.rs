//! Counters of the I/O shard, read by the metrics exporter.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of the I/O shard, read by the metrics exporter.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Requests refused because the queue to the I/O shard was full (or the shard was gone).
    pub dropped_queue_full: AtomicU64,
    /// Webhook requests (HTTP or Lambda) answered with success.
    pub webhooks_sent: AtomicU64,
    /// Webhook requests given up on (permanent error, retries exhausted, dropped as too many pending, or
    /// shutdown).
    pub webhooks_failed: AtomicU64,
    /// Webhook attempts retried after a 5xx, 408, 429, timeout or transport error.
    pub webhook_retries: AtomicU64,
    /// Gauge: webhook requests not finished yet (in flight, waiting for a connection slot or for a retry).
    pub webhooks_pending: AtomicU64,
    /// Webhook requests dropped because more than `max_pending_deliveries` were waiting (the oldest go
    /// first); also counted in `webhooks_failed`.
    pub webhooks_dropped_pending: AtomicU64,
    /// The cluster link's counters.
    pub cluster: std::sync::Arc<crate::cluster::ClusterStats>,
}

impl IoStats {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}
