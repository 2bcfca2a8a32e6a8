//! The I/O shard: one dedicated thread running a tokio runtime that hosts every client of the outside world
//! (webhooks now). Worker shards hand it [`IoRequest`]s through a bounded queue with [`IoSender::send`], which
//! never blocks: when the queue is full the request is dropped, counted and logged.

pub use sockudo_webhooks::{EventKind, KindSet, WebhookEvent};

/// Work for the I/O shard.
#[derive(Debug)]
pub enum IoRequest {
    /// Deliver a webhook event to the app's matching webhooks.
    Webhook(WebhookEvent),
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters of the I/O shard, read by the metrics exporter.
#[derive(Debug, Default)]
pub struct IoStats {
    /// Requests refused because the queue to the I/O shard was full.
    pub dropped_queue_full: AtomicU64,
    /// Webhook requests (HTTP or Lambda) answered with success.
    pub webhooks_sent: AtomicU64,
    /// Webhook requests given up on (permanent error, retries exhausted, or shutdown).
    pub webhooks_failed: AtomicU64,
    /// Webhook attempts retried after a 5xx, 429, timeout or transport error.
    pub webhook_retries: AtomicU64,
}

/// A worker shard's way to the I/O shard. Cheap to clone; `Send`.
#[derive(Debug, Clone)]
pub struct IoSender {
    tx: crossbeam_channel::Sender<IoRequest>,
    stats: Arc<IoStats>,
}

impl IoSender {
    /// Queues `request` without blocking. When the queue is full (or the I/O shard is gone) the request is
    /// dropped and counted in [`IoStats::dropped_queue_full`]; returns false then.
    pub fn send(&self, request: IoRequest) -> bool {
        match self.tx.try_send(request) {
            Ok(()) => true,
            Err(_) => {
                self.stats
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// The I/O shard's counters.
    pub fn stats(&self) -> &Arc<IoStats> {
        &self.stats
    }
}

pub use sockudo_webhooks::AppWebhooks;

/// Placeholder until the I/O shard lands.
pub struct IoShardConfig {
    /// Apps by index.
    pub apps: Vec<AppWebhooks>,
    /// Batching window.
    pub batching: Option<std::time::Duration>,
    /// Queue capacity.
    pub queue_capacity: usize,
    /// Retry cap.
    pub max_pending_deliveries: usize,
}

/// Placeholder.
pub struct IoShard;

/// Placeholder.
pub fn start(config: IoShardConfig) -> anyhow::Result<(IoShard, IoSender)> {
    let (tx, _rx) = crossbeam_channel::bounded(config.queue_capacity);
    Ok((
        IoShard,
        IoSender {
            tx,
            stats: Default::default(),
        },
    ))
}

impl IoShard {
    /// Placeholder.
    pub fn shutdown(self, _flush_within: std::time::Duration) {}
}
