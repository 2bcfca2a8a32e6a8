//! The I/O shard: one dedicated thread running a tokio runtime that hosts every client of the outside world
//! (webhooks now). Worker shards hand it [`IoRequest`]s through a bounded queue with [`IoSender::send`], which
//! never blocks: when the queue is full the request is dropped, counted and logged.
//!
//! Inside: a bridge thread moves requests from the crossbeam queue into the runtime; the router batches
//! each event for every matching webhook of its app and starts one task per request; tasks retry on their
//! own clock, with at most 64 requests in flight at once.

mod apps;
mod bridge;
pub mod cluster;
mod deliver;
mod durable;
mod job_codec;
mod router;
mod stats;
mod waiting;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
pub use sockudo_webhooks::{AppWebhooks, EventKind, KindSet, WebhookEvent};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tracing::warn;

pub use apps::{LOOKUP_TIMEOUT, MAX_LOOKUPS_IN_FLIGHT};
pub use durable::{DurableConfig, QueueStats, DEFAULT_BUFFER_CAPACITY, DEFAULT_MAX_IN_HAND};
pub use sockudo_apps::{
    AppRecord, DynamoDbConfig, FindResult, Lookup, SourceConfig, SourceError, SqlConfig,
};
pub use sockudo_queue::{Backend as QueueBackend, QueueConfig, SqsBackend};
pub use sockudo_state::{
    BackendConfig, CacheEntry, RateKind, StateConfig, StateError, StateRequest, StateStats, Target,
};
pub use stats::{IoStats, SOURCE_DOWN, SOURCE_UNKNOWN, SOURCE_UP};

use deliver::{Shared, Transport, MAX_IN_FLIGHT};
use router::Router;
use waiting::Waiting;

/// Work for the I/O shard.
#[derive(Debug)]
pub enum IoRequest {
    /// Deliver a webhook event to the app's matching webhooks.
    Webhook(WebhookEvent),
    /// Publish a message to other nodes of the cluster (dropped when the node runs alone).
    Cluster(cluster::ClusterOut),
    /// Look an app up in the app database; the answer goes to `reply` (awaitable from any runtime).
    FindApp {
        by: Lookup,
        reply: oneshot::Sender<FindResult>,
    },
    /// The webhooks of the app in slot `slot` (`WebhookEvent::app`) are now `hooks`; `None`: the app is gone.
    AppWebhooks {
        slot: u32,
        hooks: Option<AppWebhooks>,
    },
    /// Cache channels' last events and cluster-wide rate limits in Redis (`sockudo-state`).
    State(StateRequest),
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
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }
        }
    }

    /// The I/O shard's counters.
    pub fn stats(&self) -> &Arc<IoStats> {
        &self.stats
    }
}

/// Default capacity of the queue from the worker shards.
pub const DEFAULT_QUEUE_CAPACITY: usize = 10_000;

/// Default cap on webhook requests waiting (for a connection slot or a retry).
pub const DEFAULT_MAX_PENDING_DELIVERIES: usize = 10_000;

/// How the I/O shard runs.
#[derive(Debug)]
pub struct IoShardConfig {
    /// The apps known at start: the app at position `i` has slot `i` ([`WebhookEvent::app`]). Apps found
    /// later arrive with [`IoRequest::AppWebhooks`].
    pub apps: Vec<AppWebhooks>,
    /// The app database that answers [`IoRequest::FindApp`]; `None`: the memory app manager.
    pub app_source: Option<SourceConfig>,
    /// Batching window (`webhooks.batching.duration`); `None`: one event per request.
    pub batching: Option<Duration>,
    /// The most events one batched request carries (`webhooks.batching.size`, at least 1).
    pub batch_size: usize,
    /// Capacity of the queue from the worker shards (default [`DEFAULT_QUEUE_CAPACITY`]).
    pub queue_capacity: usize,
    /// Cap on webhook requests waiting for a connection slot or their next retry; beyond it the oldest
    /// waiting one is dropped and counted (default [`DEFAULT_MAX_PENDING_DELIVERIES`]).
    pub max_pending_deliveries: usize,
    /// This node's link to the cluster bus, when the adapter is not `local`.
    pub cluster: Option<cluster::ClusterConfig>,
    /// The durable webhook queue (`queue.driver` other than `memory`); `None`: webhooks wait in memory.
    pub queue: Option<DurableConfig>,
    /// The shared-state backends (cache, rate limiter); empty: both in memory.
    pub state: StateConfig,
}

impl Default for IoShardConfig {
    fn default() -> IoShardConfig {
        IoShardConfig {
            apps: Vec::new(),
            app_source: None,
            batching: None,
            batch_size: sockudo_webhooks::batch::MAX_EVENTS_PER_REQUEST,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            max_pending_deliveries: DEFAULT_MAX_PENDING_DELIVERIES,
            cluster: None,
            queue: None,
            state: StateConfig::default(),
        }
    }
}

/// The running I/O shard. Stop it with [`IoShard::shutdown`]; dropping it stops it without flushing.
#[derive(Debug)]
pub struct IoShard {
    stats: Arc<IoStats>,
    /// Gives the runtime its flush deadline.
    shutdown: Option<oneshot::Sender<Instant>>,
    /// Dropped to stop the bridge thread.
    stop_bridge: Option<crossbeam_channel::Sender<()>>,
    runtime_thread: Option<JoinHandle<()>>,
    bridge_thread: Option<JoinHandle<()>>,
}

/// Capacity of the channel between the bridge thread and the runtime.
const FORWARD_CAPACITY: usize = 1024;

/// Extra time `shutdown` allows past its bound for the runtime to wind down.
const SHUTDOWN_SLACK: Duration = Duration::from_millis(200);

/// Starts the I/O shard: the thread `io-shard` running a current-thread tokio runtime, fed by the thread
/// `io-shard-rx`. Returns once the runtime runs, with the sender worker shards use.
pub fn start(mut config: IoShardConfig) -> anyhow::Result<(IoShard, IoSender)> {
    let stats = Arc::new(IoStats::default());
    let cluster_config = config.cluster.take();
    let queue_config = config.queue.take();
    let cluster_stats = Arc::clone(&stats.cluster);
    let capacity = config.queue_capacity.max(1);
    let (queue_tx, queue_rx) = crossbeam_channel::bounded(capacity);
    let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let (forward_tx, forward_rx) = mpsc::channel(FORWARD_CAPACITY);
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();

    let thread_stats = Arc::clone(&stats);
    let runtime_thread = std::thread::Builder::new()
        .name("io-shard".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("tokio runtime: {e}")));
                    return;
                }
            };
            let transport = match Transport::new() {
                Ok(transport) => transport,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let (deadline_tx, deadline_rx) = watch::channel(None);
            let shared = Arc::new(Shared {
                transport,
                slots: Semaphore::new(MAX_IN_FLIGHT),
                waiting: Waiting::new(config.max_pending_deliveries),
                stats: thread_stats,
                shutdown: deadline_rx,
            });
            let source = match &config.app_source {
                None => None,
                Some(source) => match runtime.block_on(sockudo_apps::open(source)) {
                    Ok(source) => Some(source),
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                },
            };
            let (resolver, resolved) = apps::AppResolver::new(source, Arc::clone(&shared.stats));
            let state = {
                let _guard = runtime.enter();
                sockudo_state::State::start(config.state, Arc::clone(&shared.stats.state))
            };
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let mut durable_tasks = None;
            let durable = match queue_config {
                None => None,
                Some(queue) => {
                    let _guard = runtime.enter();
                    match runtime.block_on(durable::start(queue, Arc::clone(&shared))) {
                        Ok((handle, tasks)) => {
                            durable_tasks = Some(runtime.spawn(tasks));
                            Some(handle)
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    }
                }
            };
            let mut router = Router::new(
                config.apps,
                config.batching,
                config.batch_size,
                shared,
                resolver,
                durable,
                state,
            );
            let mut cluster_task = None;
            if let Some(cluster) = cluster_config {
                let (out_tx, out_rx) = mpsc::unbounded_channel();
                let (events_tx, events_rx) = mpsc::channel(cluster::EVENTS_CAPACITY);
                let transport = {
                    let _guard = runtime.enter();
                    (cluster.transport)(events_tx)
                };
                let transport = match transport {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("cluster bus: {e:#}")));
                        return;
                    }
                };
                let node = cluster::Node::start(cluster.setup, transport, cluster_stats);
                router.cluster = Some(out_tx);
                cluster_task = Some(cluster::run(node, out_rx, events_rx));
            }
            let _ = ready_tx.send(Ok(()));
            runtime.block_on(async {
                let router = router.run(forward_rx, resolved, shutdown_rx, deadline_tx);
                match cluster_task {
                    Some(cluster) => {
                        tokio::join!(router, cluster);
                    }
                    None => router.await,
                }
                if let Some(tasks) = durable_tasks {
                    let _ = tasks.await;
                }
            });
            // Blocking DNS lookups may still run: do not wait for them.
            runtime.shutdown_timeout(Duration::from_millis(50));
        })
        .context("spawning the io-shard thread")?;

    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = runtime_thread.join();
            anyhow::bail!("I/O shard failed to start: {e}");
        }
        Err(_) => {
            let _ = runtime_thread.join();
            anyhow::bail!("I/O shard thread ended during start-up");
        }
    }
    let bridge_thread = bridge::spawn(queue_rx, stop_rx, forward_tx, capacity)
        .context("spawning the io-shard-rx thread")?;

    let shard = IoShard {
        stats: Arc::clone(&stats),
        shutdown: Some(shutdown_tx),
        stop_bridge: Some(stop_tx),
        runtime_thread: Some(runtime_thread),
        bridge_thread: Some(bridge_thread),
    };
    Ok((
        shard,
        IoSender {
            tx: queue_tx,
            stats,
        },
    ))
}

impl IoShard {
    /// The I/O shard's counters (the same as [`IoSender::stats`]).
    pub fn stats(&self) -> &Arc<IoStats> {
        &self.stats
    }

    /// Stops the shard: requests still queued are taken, open batches sent, and deliveries (with retries
    /// that fall before the bound) get until `flush_within`; whatever is left then is abandoned and counted
    /// as failed. Returns once both threads ended (shortly after the bound at worst).
    pub fn shutdown(mut self, flush_within: Duration) {
        let deadline = Instant::now() + flush_within;
        self.stop(deadline);
        if let Some(thread) = self.runtime_thread.take() {
            if thread.join().is_err() {
                warn!("io-shard thread panicked");
            }
        }
        if let Some(thread) = self.bridge_thread.take() {
            let _ = thread.join();
        }
    }

    fn stop(&mut self, deadline: Instant) {
        // The bridge forwards what is queued, then ends, closing the runtime's channel.
        drop(self.stop_bridge.take());
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(deadline);
        }
    }
}

impl Drop for IoShard {
    fn drop(&mut self) {
        // Not shut down explicitly: stop at once, without waiting for the threads.
        self.stop(Instant::now() + SHUTDOWN_SLACK);
    }
}
