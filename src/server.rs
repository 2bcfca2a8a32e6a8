//! Process lifecycle: start one pinned shard per CPU, wait for all to serve, drain and stop them on request.

use crate::app::AppSeed;
use crate::config::Config;
use crate::metrics::{exporter, MetricsRegistry};
use crate::shard::liveness::Liveness;
use crate::shard::ClusterSeed;
use crate::shard::{self, ShardControl, ShardSeed};
use crate::unix_socket::UnixAcceptor;
use anyhow::{anyhow, Context};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{CpuSet, LocalExecutorBuilder, Placement};
use sockudo_io_shard::cluster::{ClusterConfig, ClusterSetup};
use sockudo_io_shard::{IoRequest, IoSender, IoShard, IoShardConfig};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// Capacity of each shard-to-shard channel of the mesh.
const MESH_CAPACITY: usize = 4096;

/// Capacity of each worker shard's queue of messages from other nodes.
const CLUSTER_INBOUND_CAPACITY: usize = 65_536;

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
    controls: Vec<tokio::sync::mpsc::UnboundedSender<ShardControl>>,
    /// Number of worker shards.
    pub nr_shards: usize,
    /// Every shard's counters.
    pub metrics: Arc<MetricsRegistry>,
    /// Every shard's heartbeat (systemd watchdog).
    pub liveness: Arc<Liveness>,
    /// The apps every shard runs with now (replaced by [`Server::reload_apps`]).
    apps: AppSeed,
    /// The Unix socket listener, when `unix_socket.enabled`.
    unix: Option<UnixAcceptor>,
    /// The way to the I/O shard, for reloads.
    io: IoSender,
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
        let (cluster, cluster_seed) = match crate::bus::transport_for(&config)? {
            None => (None, None),
            Some(transport) => {
                let node_id: u64 = rand::random();
                let (workers, inbound): (Vec<_>, Vec<_>) = (0..nr_shards)
                    .map(|_| tokio::sync::mpsc::channel(CLUSTER_INBOUND_CAPACITY))
                    .unzip();
                let health = &config.adapter.cluster_health;
                tracing::info!(
                    node = format_args!("{node_id:016x}"),
                    driver = %config.adapter.driver,
                    "joining the cluster"
                );
                (
                    Some(ClusterConfig {
                        setup: ClusterSetup {
                            node_id,
                            heartbeat: Duration::from_millis(health.heartbeat_interval_ms.max(100)),
                            dead_after: Duration::from_millis(health.node_timeout_ms.max(500)),
                            workers,
                        },
                        transport,
                    }),
                    Some(Arc::new(ClusterSeed {
                        node_id,
                        inbound: std::sync::Mutex::new(inbound.into_iter().map(Some).collect()),
                    })),
                )
            }
        };
        // Like the metrics port: a socket path in use fails start-up before any shard runs.
        let mut unix = if config.unix_socket.enabled {
            Some(UnixAcceptor::bind(&config.unix_socket)?)
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
            batch_size: config.webhooks.batching.size,
            queue_capacity: IO_QUEUE_CAPACITY,
            max_pending_deliveries: MAX_PENDING_WEBHOOKS,
            cluster,
            queue: crate::queue::durable_config(&config)?,
            state: crate::state::state_config(&config)?,
        })
        .context("cannot start the I/O shard")?;
        metrics.attach_io(io.stats().clone());
        // Bad TLS material stops the start here, naming the file, before any shard listens.
        let tls = if config.ssl.enabled {
            Some(crate::tls::load(&config.ssl)?)
        } else {
            None
        };
        let liveness = Arc::new(Liveness::new(nr_shards));
        let apps = AppSeed::new(&config);
        let seed = ShardSeed {
            liveness: liveness.clone(),
            io: Some(io.clone()),
            apps: apps.clone(),
            config: Arc::new(config.clone()),
            mesh: MeshBuilder::full(nr_shards, MESH_CAPACITY),
            nr_shards,
            metrics: metrics.clone(),
            cluster: cluster_seed,
            tls,
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(nr_shards);
        let mut controls = Vec::with_capacity(nr_shards);
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
            let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
            controls.push(control_tx);
            let seed = seed.clone();
            let ready = ready_tx.clone();
            let (built_tx, built_rx) = mpsc::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("shard-{id}"))
                .spawn(move || {
                    let made = builder.make();
                    let _ = built_tx.send(());
                    match made {
                        Ok(executor) => executor.run(shard::run(id, seed, ready, control_rx)),
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
        if let Some(unix) = &mut unix {
            unix.start(controls.clone())?;
            tracing::info!(path = %unix.path().display(), "serving on the unix socket");
        }
        Ok(Server {
            threads,
            io_shard,
            controls,
            nr_shards,
            metrics,
            liveness,
            apps,
            unix,
            io,
        })
    }

    /// Replaces the apps of every shard and the credentials and webhooks the I/O shard signs and delivers with,
    /// from `config` (memory driver; SIGHUP). Open connections stay. Returns problems for the log.
    pub fn reload_apps(&mut self, config: &Config) -> Vec<String> {
        let next = self.apps.reloaded(config);
        let mut problems = Vec::new();
        for (slot, hooks) in next.slot_webhooks() {
            if !self.io.send(IoRequest::AppWebhooks { slot, hooks }) {
                problems.push(format!(
                    "the I/O shard's queue is full: the webhooks of app slot {slot} keep their previous \
                     definitions until the next reload"
                ));
            }
        }
        self.tell_every_shard(|| ShardControl::ReplaceApps(Box::new(next.clone())));
        self.apps = next;
        problems
    }

    /// Re-reads the TLS certificate and key (SIGHUP): new connections use them, open ones keep theirs. A pair
    /// that does not load is refused and the running one kept.
    pub fn reload_tls(
        &self,
        ssl: &crate::config::SslConfig,
    ) -> Result<(), crate::tls::MaterialError> {
        let config = crate::tls::load(ssl)?;
        self.tell_every_shard(|| ShardControl::ReplaceTls(config.clone()));
        Ok(())
    }

    /// Ids of the apps the shards serve now.
    pub fn app_ids(&self) -> Vec<String> {
        self.apps.app_ids().into_iter().map(String::from).collect()
    }

    fn tell_every_shard(&self, what: impl Fn() -> ShardControl) {
        for control in &self.controls {
            // A shard that already stopped has nothing left to do.
            let _ = control.send(what());
        }
    }

    /// Starts draining: `/up` and new WebSocket upgrades answer 503 at once; each shard closes its connections
    /// with 4200 once `shutdown_grace_period` passed (sooner when they all left) and stops.
    pub fn drain(&self) {
        self.tell_every_shard(|| ShardControl::Drain);
    }

    /// Ends the drain period now: connections are closed with 4200 at once.
    pub fn close_now(&self) {
        self.tell_every_shard(|| ShardControl::CloseNow);
    }

    /// True once every shard stopped.
    pub fn shards_stopped(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Closes every connection (4200) at once and stops.
    pub fn stop(self) {
        self.drain();
        self.close_now();
        self.wait();
    }

    /// Waits for the shards to stop (after [`Server::drain`]), then gives the I/O shard a bounded time to deliver
    /// the webhooks still pending.
    pub fn wait(self) {
        if let Some(unix) = self.unix {
            unix.stop();
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
