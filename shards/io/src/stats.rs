//! Counters of the I/O shard, read by the metrics exporter.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// [`IoStats::app_source_state`]: no app database configured, or nothing asked yet.
pub const SOURCE_UNKNOWN: u8 = 0;
/// [`IoStats::app_source_state`]: the last query was answered.
pub const SOURCE_UP: u8 = 1;
/// [`IoStats::app_source_state`]: the last query failed (unreachable, error or timeout).
pub const SOURCE_DOWN: u8 = 2;

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
    /// The durable webhook queue's counters (all 0 with the memory driver).
    pub queue: crate::durable::QueueStats,
    /// The cluster link's counters.
    pub cluster: std::sync::Arc<crate::cluster::ClusterStats>,
    /// The shared-state backends' counters (cache, rate limiter).
    pub state: std::sync::Arc<sockudo_state::StateStats>,
    /// Queries sent to the app database (one per distinct lookup in flight).
    pub app_queries: AtomicU64,
    /// App database queries that failed or timed out.
    pub app_query_errors: AtomicU64,
    /// App lookups answered "busy" because too many distinct lookups were waiting for the database.
    pub app_lookups_refused: AtomicU64,
    /// State of the app database as the last query found it ([`SOURCE_UNKNOWN`], [`SOURCE_UP`], [`SOURCE_DOWN`]).
    pub app_source_state: AtomicU8,
}

impl IoStats {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    /// True when an app database is configured and its last query failed.
    pub fn app_source_down(&self) -> bool {
        self.app_source_state.load(Ordering::Relaxed) == SOURCE_DOWN
    }
}
