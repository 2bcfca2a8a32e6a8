//! sockudo's durable webhook queue: opaque messages delivered **at least once** to whichever node takes
//! them, on Redis (one Stream with a consumer group), Redis Cluster (the same Stream on the node owning its
//! key) or Amazon SQS. A message taken with [`Queue::fetch`] is *leased* to this process: nobody else gets it
//! until the lease runs out, so a holder keeps it alive with [`Queue::renew`], removes it with [`Queue::ack`]
//! once done, or hands it back at once with [`Queue::release`]. A process that dies stops renewing and its
//! messages go to the next fetch (of any node) after the lease.
//!
//! Everything here runs on the I/O shard's tokio runtime; nothing reconnects in a loop by itself: a failed
//! call returns an error (after dropping a broken connection) and the next call connects again, so the
//! caller owns the backoff. [`buffer::LocalBuffer`] and [`backoff::Backoff`] are the sans-IO pieces it uses.

// Without any driver the queue methods have nothing to call.
#![cfg_attr(not(any(feature = "redis", feature = "sqs")), allow(unused_variables))]

pub mod backoff;
pub mod buffer;
#[cfg(feature = "redis")]
mod redis_stream;
#[cfg(feature = "sqs")]
mod sqs;

use std::time::Duration;

use bytes::Bytes;

/// A message taken from the queue and leased to this process.
#[derive(Debug, Clone)]
pub struct Leased {
    /// What to pass to [`Queue::ack`], [`Queue::renew`] and [`Queue::release`] (Redis: the entry id; SQS:
    /// the receipt handle).
    pub handle: String,
    /// The bytes given to [`Queue::push`].
    pub payload: Bytes,
    /// True when the message was taken over from another consumer whose lease ran out (a redelivery).
    pub reclaimed: bool,
}

/// Why a queue call failed. Every variant is transient from the caller's point of view (retry later)
/// except `Config`, which [`Queue::open`] returns for a configuration that can never work.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue configuration: {0}")]
    Config(String),
    #[error("queue backend: {0}")]
    Backend(String),
}

/// Where the durable queue lives.
#[derive(Debug, Clone)]
pub enum Backend {
    /// One Redis server (`redis://` or `rediss://` URL).
    Redis { url: String },
    /// A Redis Cluster, by the URLs of some of its nodes.
    RedisCluster { nodes: Vec<String> },
    /// An SQS queue: by URL, or by name (looked up, created when missing).
    Sqs(SqsBackend),
}

/// An SQS queue and how to reach it.
#[derive(Debug, Clone, Default)]
pub struct SqsBackend {
    pub region: String,
    /// The queue URL; empty: find (or create) the queue `queue_name`.
    pub queue_url: String,
    pub queue_name: String,
    /// A non-AWS endpoint (moto, LocalStack, ElasticMQ); `None`: the AWS chain decides.
    pub endpoint_url: Option<String>,
    /// Long-poll wait of one receive (at most 20 s).
    pub wait_time: Duration,
    /// At most this many messages per receive (1..=10).
    pub max_messages: u32,
}

/// What every backend needs to know.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub backend: Backend,
    /// Redis: the Stream is `{prefix}webhooks`, the consumer group `sockudo-webhooks`.
    pub prefix: String,
    /// How long a fetched message stays reserved for this process without a renewal.
    pub lease: Duration,
    /// This process's name among the consumers (Redis); unique per process.
    pub consumer: String,
}

/// The driver's name, for logs and metrics.
impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Redis { .. } => "redis",
            Backend::RedisCluster { .. } => "redis-cluster",
            Backend::Sqs(_) => "sqs",
        }
    }
}

/// An open durable queue. `Send + Sync`: every call takes `&self`.
pub struct Queue(Inner);

enum Inner {
    /// No driver compiled in: never constructed.
    #[cfg(not(any(feature = "redis", feature = "sqs")))]
    #[allow(dead_code)]
    Unavailable(std::convert::Infallible),
    #[cfg(feature = "redis")]
    Redis(Box<redis_stream::RedisQueue>),
    #[cfg(feature = "sqs")]
    Sqs(sqs::SqsQueue),
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Queue")
    }
}

impl Queue {
    /// Prepares the queue without contacting the backend (the first call connects): a backend that is down
    /// at start does not stop the server. Errors only for a configuration that cannot work, or a driver not
    /// compiled in (naming its Cargo feature).
    pub async fn open(config: QueueConfig) -> Result<Queue, QueueError> {
        match &config.backend {
            #[cfg(feature = "redis")]
            Backend::Redis { .. } => Ok(Queue(Inner::Redis(Box::new(
                redis_stream::RedisQueue::new(config)?,
            )))),
            #[cfg(not(feature = "redis"))]
            Backend::Redis { .. } => Err(QueueError::Config(
                "queue.driver \"redis\" needs a build with the `redis` feature".into(),
            )),
            #[cfg(feature = "redis-cluster")]
            Backend::RedisCluster { .. } => Ok(Queue(Inner::Redis(Box::new(
                redis_stream::RedisQueue::new(config)?,
            )))),
            #[cfg(not(feature = "redis-cluster"))]
            Backend::RedisCluster { .. } => Err(QueueError::Config(
                "queue.driver \"redis-cluster\" needs a build with the `redis-cluster` feature"
                    .into(),
            )),
            #[cfg(feature = "sqs")]
            Backend::Sqs(_) => Ok(Queue(Inner::Sqs(sqs::SqsQueue::new(config).await?))),
            #[cfg(not(feature = "sqs"))]
            Backend::Sqs(_) => Err(QueueError::Config(
                "queue.driver \"sqs\" needs a build with the `sqs` feature".into(),
            )),
        }
    }

    /// The largest payload the backend takes (SQS: 256 KiB).
    pub fn max_payload(&self) -> usize {
        match &self.0 {
            #[cfg(not(any(feature = "redis", feature = "sqs")))]
            Inner::Unavailable(never) => match *never {},
            #[cfg(feature = "redis")]
            Inner::Redis(_) => 64 * 1024 * 1024,
            #[cfg(feature = "sqs")]
            Inner::Sqs(_) => sqs::MAX_MESSAGE_BYTES,
        }
    }

    /// Stores `payloads`. `Ok(failed)`: the indices of the ones the backend refused (retry them); all others
    /// are stored durably. `Err`: none can be assumed stored.
    pub async fn push(&self, payloads: &[Bytes]) -> Result<Vec<usize>, QueueError> {
        match &self.0 {
            #[cfg(not(any(feature = "redis", feature = "sqs")))]
            Inner::Unavailable(never) => match *never {},
            #[cfg(feature = "redis")]
            Inner::Redis(q) => q.push(payloads).await,
            #[cfg(feature = "sqs")]
            Inner::Sqs(q) => q.push(payloads).await,
        }
    }

    /// Takes up to `max` messages: first those whose holder's lease ran out, then new ones, waiting up to
    /// `wait` when there are none.
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Leased>, QueueError> {
        match &self.0 {
            #[cfg(not(any(feature = "redis", feature = "sqs")))]
            Inner::Unavailable(never) => match *never {},
            #[cfg(feature = "redis")]
            Inner::Redis(q) => q.fetch(max, wait).await,
            #[cfg(feature = "sqs")]
            Inner::Sqs(q) => q.fetch(max, wait).await,
        }
    }

    /// Removes messages for good (delivered, or given up on).
    pub async fn ack(&self, handles: &[String]) -> Result<(), QueueError> {
        match &self.0 {
            #[cfg(not(any(feature = "redis", feature = "sqs")))]
            Inner::Unavailable(never) => match *never {},
            #[cfg(feature = "redis")]
            Inner::Redis(q) => q.ack(handles).await,
            #[cfg(feature = "sqs")]
            Inner::Sqs(q) => q.ack(handles).await,
        }
    }

    /// Extends the lease of messages still being worked on to a full lease from now.
    pub async fn renew(&self, handles: &[String]) -> Result<(), QueueError> {
        match &self.0 {
            #[cfg(not(any(feature = "redis", feature = "sqs")))]
            Inner::Unavailable(never) => match *never {},
            #[cfg(feature = "redis")]
            Inner::Redis(q) => q.renew(handles).await,
            #[cfg(feature = "sqs")]
            Inner::Sqs(q) => q.renew(handles).await,
        }
    }

    /// Gives messages back unfinished: the next fetch (of any node) may take them at once.
    pub async fn release(&self, handles: &[String]) -> Result<(), QueueError> {
        match &self.0 {
            #[cfg(not(any(feature = "redis", feature = "sqs")))]
            Inner::Unavailable(never) => match *never {},
            #[cfg(feature = "redis")]
            Inner::Redis(q) => q.release(handles).await,
            #[cfg(feature = "sqs")]
            Inner::Sqs(q) => q.release(handles).await,
        }
    }
}
