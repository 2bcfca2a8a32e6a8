//! Process lifecycle: start one pinned shard per CPU, wait for all to serve, stop them on SIGTERM/SIGINT.

use crate::app::AppSeed;
use crate::config::Config;
use crate::metrics::{exporter, MetricsRegistry};
use crate::shard::{self, ShardSeed};
use anyhow::{anyhow, Context};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{CpuSet, LocalExecutorBuilder, Placement};
use sockudo_io_shard::{IoShard, IoShardConfig};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Capacity of each shard-to-shard channel of the mesh.
const MESH_CAPACITY: usize = 4096;

/// How long shards may take to bind and join the mesh.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long shutdown waits for the I/O shard to deliver the webhooks still pending.
const WEBHOOK_FLUSH_BOUND: Duration = Duration::from_secs(5);

/// Capacity of the queue from the worker shards to the I/O shard.
const IO_QUEUE_CAPACITY: usize = 10_000;

/// Webhook requests the I/O shard holds for retry at most; beyond it the oldest are dropped and counted.
const MAX_PENDING_WEBHOOKS: usize = 10_000;

/// A running server: its shard threads and the way to stop them.
pub struct Server {
    threads: Vec<std::thread::JoinHandle<()>>,
    io_shard: IoShard,
    stoppers: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Number of worker shards.
    pub nr_shards: usize,
    /// Every shard's counters.
    pub metrics: Arc<MetricsRegistry>,
}

/// Online CPUs, in order.
fn online_cpus() -> Vec<usize> {
    CpuSet::online()
        .map(|set| set.iter().map(|l| l.cpu).collect())
        .unwrap_or_default()
}

impl Server {
    /// Starts every shard and returns once all of them accept connections, or fails naming the shard that could
    /// not start (bind, memlock, ...).
    pub fn start(config: Config) -> anyhow::Result<Server> {
        let cpus = online_cpus();
        let nr_shards = if config.shards == 0 {
            cpus.len().max(1)
        } else {
            config.shards
        };
        if nr_shards > 64 {
            return Err(anyhow!(
                "shards = {nr_shards}: at most 64 shards are supported"
            ));
        }
        let pin = nr_shards <= cpus.len();
        let apps = AppSeed::new(&config);
        let metrics = Arc::new(MetricsRegistry::new(
            nr_shards,
            apps.slots.clone(),
            &config.metrics.prometheus_prefix,
        ));
        // Bind before any shard starts, so a taken metrics port fails start-up with nothing to undo.
        let metrics_listener = if config.metrics.enabled {
            Some(exporter::bind(&config.metrics.host, config.metrics.port)?)
        } else {
            None
        };
        let (io_shard, io) = sockudo_io_shard::start(IoShardConfig {
            apps: apps.webhooks(),
            app_source: crate::app::source::source_config(&config),
            batching: config
                .webhooks
                .batching
                .enabled
                .then(|| Duration::from_millis(config.webhooks.batching.duration)),
            queue_capacity: IO_QUEUE_CAPACITY,
            max_pending_deliveries: MAX_PENDING_WEBHOOKS,
        })
        .context("cannot start the I/O shard")?;
        metrics.attach_io(io.stats().clone());
        let seed = ShardSeed {
            io: Some(io),
            apps,
            config: Arc::new(config.clone()),
            mesh: MeshBuilder::full(nr_shards, MESH_CAPACITY),
            nr_shards,
            metrics: metrics.clone(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(nr_shards);
        let mut stoppers = Vec::with_capacity(nr_shards);
        let placements: Vec<Placement> = if pin {
            cpus.iter()
                .take(nr_shards)
                .map(|&cpu| Placement::Fixed(cpu))
                .collect()
        } else {
            (0..nr_shards).map(|_| Placement::Unbound).collect()
        };
        for (id, placement) in placements.into_iter().enumerate() {
            let builder = LocalExecutorBuilder::new(placement)
                .name(&format!("shard-{id}"))
                .io_memory(config.runtime.io_memory_kb * 1024)
                .preempt_timer(Duration::from_millis(
                    config.runtime.preempt_timer_ms.max(1),
                ))
                .spin_before_park(Duration::from_micros(config.runtime.spin_before_park_us))
                .ring_depth(config.runtime.ring_depth);
            let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
            stoppers.push(stop_tx);
            let seed = seed.clone();
            let ready = ready_tx.clone();
            let (built_tx, built_rx) = mpsc::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || {
                    let made = builder.make();
                    let _ = built_tx.send(());
                    match made {
                        Ok(executor) => executor.run(shard::run(id, seed, ready, stop_rx)),
                        Err(e) => {
                            let _ = ready.send((
                                id,
                                Err(format!("shard {id}: cannot start its executor: {e}")),
                            ));
                        }
                    }
                })
                .context("cannot spawn a shard thread")?;
            // glommio numbers a mesh's peers by the rank of their executor ids, which are handed out in creation
            // order. Creating the executors one after another, in shard order, makes mesh peer `i` shard `i`;
            // created concurrently, two shards could swap numbers and send each other's messages to themselves.
            let _ = built_rx.recv();
            threads.push(thread);
        }
        drop(ready_tx);
        let mut serving = 0;
        while serving < nr_shards {
            match ready_rx.recv_timeout(STARTUP_TIMEOUT) {
                Ok((_, Ok(()))) => serving += 1,
                Ok((_, Err(message))) => return Err(anyhow!(message)),
                Err(_) => {
                    return Err(anyhow!(
                        "{} of {nr_shards} shards did not start in time",
                        nr_shards - serving
                    ))
                }
            }
        }
        if let Some(listener) = metrics_listener {
            exporter::spawn(listener, metrics.clone())?;
        }
        Ok(Server {
            threads,
            io_shard,
            stoppers,
            nr_shards,
            metrics,
        })
    }

    /// Asks every shard to close its connections (4200) and stop, then waits for their threads.
    pub fn stop(self) {
        for stop in self.stoppers {
            let _ = stop.send(());
        }
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a shard thread panicked during shutdown");
            }
        }
        // Workers are gone, so nothing new arrives: deliver what is pending, within a bound.
        self.io_shard.shutdown(WEBHOOK_FLUSH_BOUND);
    }
}
