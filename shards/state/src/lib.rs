//! Shared state that must outlive one process or be counted for the whole cluster, kept in Redis or Redis
//! Cluster from the I/O shard's tokio runtime:
//! - cache channels' last events (`SET key value PX ttl`, read back with their remaining TTL);
//! - the per-app REST rate limits (one `EVAL` per REST request: a sliding window approximated by two weighted
//!   fixed windows of one second, see [`RATE_SCRIPT`]).
//!
//! Every operation is bounded by [`OP_TIMEOUT`]; a backend that is down or slow answers
//! [`StateError::Unavailable`] at once and the caller decides (the rate limiter fails open, the cache misses).
//! Connections are made in the background and made again at most once a second after a failure.

mod keys;
mod stats;
#[cfg(feature = "redis")]
mod store;

use std::time::Duration;

use tokio::sync::oneshot;

pub use keys::{cache_key, rate_key, RateKind};
pub use stats::StateStats;

/// Longest one Redis operation may take before it counts as failed.
pub const OP_TIMEOUT: Duration = Duration::from_millis(100);

/// Where a backend lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Redis server (`redis://[user:password@]host:port/db`).
    Redis { url: String },
    /// A Redis Cluster, reached through any of these nodes (`redis://host:port`).
    RedisCluster { nodes: Vec<String> },
}

impl Target {
    /// The Cargo feature that compiles this target in.
    pub fn feature(&self) -> &'static str {
        match self {
            Target::Redis { .. } => "redis",
            Target::RedisCluster { .. } => "redis-cluster",
        }
    }
}

/// One backend: where, and the prefix of its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub target: Target,
    pub prefix: String,
}

/// The backends configured; `None`: that state stays in the process (memory driver).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateConfig {
    pub cache: Option<BackendConfig>,
    pub rate_limiter: Option<BackendConfig>,
}

/// Why an operation was not done.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// Not connected (down, or reconnecting), too slow, or an error from the server.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// This backend is not configured (the memory driver).
    #[error("state backend not configured")]
    NotConfigured,
    /// Invalid configuration (for example no cluster nodes).
    #[error("state backend configuration: {0}")]
    Config(String),
}

/// A cache entry read back: the stored text and its remaining lifetime in seconds.
pub type CacheEntry = (String, u64);

/// Work for the state backends, sent by worker shards through the I/O shard's queue.
#[derive(Debug)]
pub enum StateRequest {
    /// Keeps `value` as the last event of cache channel `channel` of app `app_id` for `ttl` (fire and forget).
    CacheSet {
        app_id: String,
        channel: String,
        value: String,
        ttl: Duration,
    },
    /// The last event of cache channel `channel`, if stored and not expired.
    CacheGet {
        app_id: String,
        channel: String,
        reply: oneshot::Sender<Result<Option<CacheEntry>, StateError>>,
    },
    /// Takes `n` units of app `app_id`'s `kind` limit of `limit` per second, for the whole cluster; answers
    /// whether they were granted.
    RateTake {
        app_id: String,
        kind: RateKind,
        n: u64,
        limit: u64,
        reply: oneshot::Sender<Result<bool, StateError>>,
    },
}

/// The sliding window of the Redis rate limiter, run atomically by `EVAL` with the server's clock (so
/// nodes' clocks do not matter). KEYS[1] is a hash whose fields are window numbers (`ARGV[3]` ms wide);
/// the count of the previous window is weighted by how much of it still overlaps the sliding window:
/// `used = previous * (1 - elapsed) + current`. `n` units are granted when `used + n <= limit`, then added
/// to the current window. Fields other than the current and previous windows are removed; the key
/// expires two windows after its last write.
pub const RATE_SCRIPT: &str = r#"
local n = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = math.floor(now / window)
local elapsed = (now % window) / window
local c = tostring(cur)
local p = tostring(cur - 1)
local current = tonumber(redis.call('HGET', KEYS[1], c) or '0')
local previous = tonumber(redis.call('HGET', KEYS[1], p) or '0')
if previous * (1 - elapsed) + current + n > limit then
  return 0
end
redis.call('HINCRBY', KEYS[1], c, n)
if redis.call('HLEN', KEYS[1]) > 2 then
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if f ~= c and f ~= p then redis.call('HDEL', KEYS[1], f) end
  end
end
redis.call('PEXPIRE', KEYS[1], window * 2)
return 1
"#;

/// Width of one rate-limit window: the app limits are per second.
pub const RATE_WINDOW_MS: u64 = 1000;

/// The running backends, living on the I/O shard's tokio runtime.
#[derive(Debug)]
pub struct State {
    #[cfg(feature = "redis")]
    cache: Option<std::sync::Arc<store::Store>>,
    #[cfg(feature = "redis")]
    limiter: Option<std::sync::Arc<store::Store>>,
}

impl State {
    /// Starts connecting to the configured backends (must run inside a tokio runtime). A target this
    /// build does not include is an error naming the Cargo feature.
    pub fn start(
        config: StateConfig,
        stats: std::sync::Arc<StateStats>,
    ) -> Result<State, StateError> {
        for backend in [&config.cache, &config.rate_limiter].into_iter().flatten() {
            check_compiled(&backend.target)?;
        }
        #[cfg(feature = "redis")]
        {
            let open = |backend: Option<BackendConfig>, kind: store::Kind| {
                backend
                    .map(|b| store::Store::start(b, kind, stats.clone()))
                    .transpose()
            };
            Ok(State {
                cache: open(config.cache, store::Kind::Cache)?,
                limiter: open(config.rate_limiter, store::Kind::RateLimiter)?,
            })
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = stats;
            Ok(State {})
        }
    }

    /// Serves `request` on a task of its own (never waits).
    pub fn handle(&self, request: StateRequest) {
        #[cfg(feature = "redis")]
        {
            match request {
                StateRequest::CacheSet { .. } | StateRequest::CacheGet { .. } => {
                    store::serve(self.cache.as_ref(), request)
                }
                StateRequest::RateTake { .. } => store::serve(self.limiter.as_ref(), request),
            }
        }
        #[cfg(not(feature = "redis"))]
        refuse(request);
    }
}

/// Answers `request` with [`StateError::NotConfigured`].
#[cfg_attr(feature = "redis", allow(dead_code))]
fn refuse(request: StateRequest) {
    match request {
        StateRequest::CacheSet { .. } => {}
        StateRequest::CacheGet { reply, .. } => {
            let _ = reply.send(Err(StateError::NotConfigured));
        }
        StateRequest::RateTake { reply, .. } => {
            let _ = reply.send(Err(StateError::NotConfigured));
        }
    }
}

fn check_compiled(target: &Target) -> Result<(), StateError> {
    let compiled = match target {
        Target::Redis { .. } => cfg!(feature = "redis"),
        Target::RedisCluster { .. } => cfg!(feature = "redis-cluster"),
    };
    if compiled {
        Ok(())
    } else {
        Err(StateError::Config(format!(
            "not compiled into this build: rebuild with the Cargo feature `{}` (or `full`)",
            target.feature()
        )))
    }
}
