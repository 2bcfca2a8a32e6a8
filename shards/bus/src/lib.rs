//! The cluster bus: publish/subscribe of opaque binary messages between sockudo processes over Redis
//! (`redis`), Redis Cluster sharded pub/sub (`redis-cluster`) or NATS (`nats`). It runs on the I/O shard's
//! tokio runtime; the callers pick topics (`node.3f2a`, `ch.<app>.<channel>`) and payloads (their own
//! versioned envelope), the bus maps topics to broker channels and keeps the connections alive.
//!
//! - [`Bus::publish`] never blocks: messages go to a bounded outbox that one task drains in order, in
//!   pipelined batches. While the broker is unreachable the outbox keeps up to [`OutboxLimits`] and then
//!   drops the oldest, counted in [`BusStats::dropped_outbound`]; it is flushed in order on reconnect.
//! - Inbound messages go to the `events` channel in the order the broker delivered them (per topic for
//!   NATS and Redis Cluster), straight from the connection's reader: never a task per message, and never a
//!   stalled socket: when `events` is full the message is dropped and counted.
//! - Connections are (re)made in the background with backoff (100 ms doubling to 5 s); every wanted topic
//!   is subscribed again on each new session; [`BusEvent::Up`] / [`BusEvent::Down`] report the changes.
//!
//! Topic mapping: Redis and Redis Cluster use the channel `<prefix>:<topic>`; NATS uses the subject
//! `<prefix>.<token>` where the topic is escaped into a single token (see `subject.rs`).

// The queueing, backoff and mapping code serves the transports; with some of them left out, parts are unused.
#![cfg_attr(not(all(feature = "redis", feature = "nats")), allow(dead_code))]

mod backoff;
mod outbox;
mod shared;
mod stats;
#[cfg_attr(not(feature = "nats"), allow(dead_code))]
mod subject;

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis_driver;
#[cfg(feature = "redis-cluster")]
mod slot;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use outbox::OutboxLimits;
pub use stats::BusStats;

use shared::Shared;

/// Which broker to use and how to reach it. `Debug` hides passwords and tokens.
#[derive(Clone, PartialEq, Eq)]
pub enum BusConfig {
    /// One Redis server (`redis://[:password@]host:port[/db]`).
    Redis { url: String, prefix: String },
    /// A Redis Cluster (Redis 7 or newer); `nodes` are seed URLs (`redis://host:port`).
    RedisCluster { nodes: Vec<String>, prefix: String },
    /// One or more NATS servers (`nats://host:port`).
    Nats {
        servers: Vec<String>,
        prefix: String,
        username: Option<String>,
        password: Option<String>,
        token: Option<String>,
        connect_timeout: Duration,
    },
}

/// `redis://user:secret@host` -> `redis://user:***@host`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

impl std::fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        match self {
            BusConfig::Redis { url, prefix } => f
                .debug_struct("Redis")
                .field("url", &redact_url(url))
                .field("prefix", prefix)
                .finish(),
            BusConfig::RedisCluster { nodes, prefix } => f
                .debug_struct("RedisCluster")
                .field(
                    "nodes",
                    &nodes.iter().map(|n| redact_url(n)).collect::<Vec<_>>(),
                )
                .field("prefix", prefix)
                .finish(),
            BusConfig::Nats {
                servers,
                prefix,
                username,
                password,
                token,
                connect_timeout,
            } => f
                .debug_struct("Nats")
                .field(
                    "servers",
                    &servers.iter().map(|s| redact_url(s)).collect::<Vec<_>>(),
                )
                .field("prefix", prefix)
                .field("username", username)
                .field("password", &hidden(password))
                .field("token", &hidden(token))
                .field("connect_timeout", connect_timeout)
                .finish(),
        }
    }
}

impl BusConfig {
    /// The Cargo feature that compiles this transport in.
    pub fn feature(&self) -> &'static str {
        match self {
            BusConfig::Redis { .. } => "redis",
            BusConfig::RedisCluster { .. } => "redis-cluster",
            BusConfig::Nats { .. } => "nats",
        }
    }
}

/// What the bus reports to its consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message published (by any bus, this one included) on a topic this bus subscribes to.
    Message { topic: String, payload: Bytes },
    /// Connected to the broker; subscriptions are being (re)issued. Messages published by others while the
    /// bus was down are lost (pub/sub is at-most-once).
    Up,
    /// The connection to the broker is lost (or could not be made); the bus keeps retrying.
    Down { reason: String },
}

/// Why the bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the {transport} bus is not compiled in: rebuild with the Cargo feature `{feature}`")]
    NotCompiled {
        transport: &'static str,
        feature: &'static str,
    },
    #[error("invalid bus configuration: {0}")]
    Config(String),
    #[error("Bus::start must be called inside a tokio runtime")]
    NoRuntime,
}

/// A handle to the bus. Cheap to clone; every clone drives the same connections.
#[derive(Debug, Clone)]
pub struct Bus {
    shared: Arc<Shared>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// How long [`Bus::shutdown`] waits for the outbox to be flushed.
pub const SHUTDOWN_FLUSH_BOUND: Duration = Duration::from_secs(2);

impl Bus {
    /// Starts the transport tasks on the current tokio runtime with the default outbox bounds. Returns at
    /// once; the connection is made in the background.
    pub fn start(config: BusConfig, events: mpsc::Sender<BusEvent>) -> Result<Bus, BusError> {
        Self::start_with_limits(config, OutboxLimits::default(), events)
    }

    /// [`Bus::start`] with explicit outbox bounds.
    pub fn start_with_limits(
        config: BusConfig,
        limits: OutboxLimits,
        events: mpsc::Sender<BusEvent>,
    ) -> Result<Bus, BusError> {
        if limits.max_messages == 0 || limits.max_bytes == 0 {
            return Err(BusError::Config("outbox bounds must be positive".into()));
        }
        tokio::runtime::Handle::try_current().map_err(|_| BusError::NoRuntime)?;
        let shared = Shared::new(limits, events);
        let tasks = spawn_transport(config, shared.clone())?;
        Ok(Bus {
            shared,
            tasks: Arc::new(Mutex::new(tasks)),
        })
    }

    /// Queues `payload` for `topic`. Never blocks; messages are published in the order of the calls.
    pub fn publish(&self, topic: &str, payload: Bytes) {
        self.shared.publish(topic, payload);
    }

    /// Subscribes to `topic`. Idempotent; remembered and issued again after every reconnect.
    pub fn subscribe(&self, topic: &str) {
        self.shared.subscribe(topic);
    }

    /// Stops receiving `topic`. Idempotent.
    pub fn unsubscribe(&self, topic: &str) {
        self.shared.unsubscribe(topic);
    }

    /// The bus's counters.
    pub fn stats(&self) -> Arc<BusStats> {
        self.shared.stats.clone()
    }

    /// Stops the bus: flushes what is queued if connected (within [`SHUTDOWN_FLUSH_BOUND`]), then closes
    /// the connections. Every clone stops working.
    pub async fn shutdown(self) {
        self.shared.close();
        let tasks: Vec<JoinHandle<()>> = {
            let mut guard = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
            guard.drain(..).collect()
        };
        for mut task in tasks {
            if tokio::time::timeout(SHUTDOWN_FLUSH_BOUND + Duration::from_millis(500), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        stats::BusStats::set(&self.shared.stats.up, 0);
    }
}

#[allow(unused_variables, unreachable_code)]
fn spawn_transport(
    config: BusConfig,
    shared: Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>, BusError> {
    let not_compiled = |config: &BusConfig| BusError::NotCompiled {
        transport: match config {
            BusConfig::Redis { .. } => "Redis",
            BusConfig::RedisCluster { .. } => "Redis Cluster",
            BusConfig::Nats { .. } => "NATS",
        },
        feature: config.feature(),
    };
    match config {
        #[cfg(feature = "redis")]
        BusConfig::Redis { url, prefix } => redis_driver::start_single(url, prefix, shared),
        #[cfg(feature = "redis-cluster")]
        BusConfig::RedisCluster { nodes, prefix } => {
            redis_driver::start_cluster(nodes, prefix, shared)
        }
        #[cfg(feature = "nats")]
        config @ BusConfig::Nats { .. } => nats::start(config, shared),
        #[allow(unreachable_patterns)]
        other => Err(not_compiled(&other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transport_not_compiled_in_names_its_feature() {
        let message = BusError::NotCompiled {
            transport: "NATS",
            feature: "nats",
        }
        .to_string();
        assert!(message.contains("`nats`"), "{message}");
    }

    #[test]
    fn debug_hides_secrets() {
        let redis = BusConfig::Redis {
            url: "redis://user:hunter2@127.0.0.1:6379/0".into(),
            prefix: "p".into(),
        };
        let nats = BusConfig::Nats {
            servers: vec![
                "nats://a:hunter2@127.0.0.1:4222".into(),
                "nats://127.0.0.1:4223".into(),
            ],
            prefix: "p".into(),
            username: Some("me".into()),
            password: Some("hunter2".into()),
            token: Some("hunter2".into()),
            connect_timeout: Duration::from_secs(1),
        };
        for config in [redis, nats] {
            let shown = format!("{config:?}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("127.0.0.1"), "{shown}");
        }
        assert_eq!(redact_url("redis://:pw@h:1/2"), "redis://:***@h:1/2");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
    }

    #[test]
    fn start_needs_a_runtime() {
        let (tx, _rx) = mpsc::channel(1);
        let config = BusConfig::Redis {
            url: "redis://127.0.0.1:1".into(),
            prefix: "t".into(),
        };
        assert!(matches!(Bus::start(config, tx), Err(BusError::NoRuntime)));
    }

    #[cfg(not(feature = "nats"))]
    #[tokio::test]
    async fn nats_without_the_feature_is_refused() {
        let (tx, _rx) = mpsc::channel(1);
        let config = BusConfig::Nats {
            servers: vec!["nats://127.0.0.1:1".into()],
            prefix: "t".into(),
            username: None,
            password: None,
            token: None,
            connect_timeout: Duration::from_secs(1),
        };
        let err = Bus::start(config, tx).unwrap_err();
        assert!(
            matches!(
                err,
                BusError::NotCompiled {
                    feature: "nats",
                    ..
                }
            ),
            "{err}"
        );
    }
}
