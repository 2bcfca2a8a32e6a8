//! One backend's connection and its operations.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Value};
use tracing::{info, warn};

use crate::{
    cache_key, rate_key, refuse, BackendConfig, CacheEntry, StateError, StateRequest, StateStats,
    Target, OP_TIMEOUT, RATE_SCRIPT, RATE_WINDOW_MS,
};

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection attempt, the next one waits this long.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// What the backend is for (names its counters and log lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Cache,
    RateLimiter,
}

#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn query(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd).await,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => c.req_packed_command(cmd).await,
        }
    }
}

enum Slot {
    /// Not connected; the next attempt may start at `retry_at`.
    Idle { retry_at: Instant },
    Connecting,
    Ready(Conn),
}

/// One backend (the cache's or the rate limiter's).
pub(crate) struct Store {
    target: Target,
    prefix: String,
    kind: Kind,
    slot: Mutex<Slot>,
    stats: Arc<StateStats>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("target", &self.target)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Store {
    /// Checks the target and starts connecting in the background.
    pub(crate) fn start(
        backend: BackendConfig,
        kind: Kind,
        stats: Arc<StateStats>,
    ) -> Result<Arc<Store>, StateError> {
        match &backend.target {
            Target::Redis { url } => {
                Client::open(url.as_str())
                    .map_err(|e| StateError::Config(format!("invalid Redis URL {url:?}: {e}")))?;
            }
            Target::RedisCluster { nodes } => {
                if nodes.is_empty() {
                    return Err(StateError::Config("no Redis Cluster nodes given".into()));
                }
                #[cfg(feature = "redis-cluster")]
                redis::cluster::ClusterClient::new(nodes.iter().map(String::as_str)).map_err(
                    |e| StateError::Config(format!("invalid Redis Cluster node URL: {e}")),
                )?;
            }
        }
        let store = Arc::new(Store {
            target: backend.target,
            prefix: backend.prefix,
            kind,
            slot: Mutex::new(Slot::Idle {
                retry_at: Instant::now(),
            }),
            stats,
        });
        let _ = store.connection();
        Ok(store)
    }

    fn up_gauge(&self) -> &AtomicU8 {
        match self.kind {
            Kind::Cache => &self.stats.cache_up,
            Kind::RateLimiter => &self.stats.rate_limiter_up,
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Cache => "cache",
            Kind::RateLimiter => "rate limiter",
        }
    }

    /// The connection when there is one; otherwise starts an attempt (unless one runs or failed less than
    /// [`RECONNECT_AFTER`] ago) and answers `Unavailable` at once.
    fn connection(self: &Arc<Self>) -> Result<Conn, StateError> {
        let mut slot = self
            .slot
            .lock()
            .map_err(|_| StateError::Unavailable("poisoned".into()))?;
        match &*slot {
            Slot::Ready(conn) => return Ok(conn.clone()),
            Slot::Connecting => return Err(StateError::Unavailable("connecting".into())),
            Slot::Idle { retry_at } if *retry_at > Instant::now() => {
                return Err(StateError::Unavailable("not connected".into()))
            }
            Slot::Idle { .. } => {}
        }
        *slot = Slot::Connecting;
        drop(slot);
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let result = tokio::time::timeout(CONNECT_TIMEOUT, store.connect()).await;
            let next = match result {
                Ok(Ok(conn)) => {
                    store.up_gauge().store(1, Ordering::Relaxed);
                    info!(backend = store.name(), "state backend connected");
                    Slot::Ready(conn)
                }
                Ok(Err(e)) => {
                    store.warn(&format!("connecting: {e}"));
                    Slot::Idle {
                        retry_at: Instant::now() + RECONNECT_AFTER,
                    }
                }
                Err(_) => {
                    store.warn("connecting: timed out");
                    Slot::Idle {
                        retry_at: Instant::now() + RECONNECT_AFTER,
                    }
                }
            };
            if let Ok(mut slot) = store.slot.lock() {
                *slot = next;
            }
        });
        Err(StateError::Unavailable("connecting".into()))
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        match &self.target {
            Target::Redis { url } => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(OP_TIMEOUT));
                let conn = Client::open(url.as_str())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Ok(Conn::Single(conn))
            }
            #[cfg(feature = "redis-cluster")]
            Target::RedisCluster { nodes } => {
                let conn =
                    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(OP_TIMEOUT)
                        .retries(1)
                        .build()?
                        .get_async_connection()
                        .await?;
                Ok(Conn::Cluster(conn))
            }
            #[cfg(not(feature = "redis-cluster"))]
            Target::RedisCluster { .. } => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "Redis Cluster not compiled in",
            ))),
        }
    }

    /// Runs `cmd` within [`OP_TIMEOUT`]. A failure drops the connection (the next operation reconnects), counts
    /// and logs (at a bounded rate).
    async fn run(self: &Arc<Self>, cmd: &redis::Cmd) -> Result<Value, StateError> {
        let result = match self.connection() {
            Ok(mut conn) => match tokio::time::timeout(OP_TIMEOUT, conn.query(cmd)).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) => {
                    Err(StateError::Unavailable(e.to_string()))
                }
                Ok(Err(e)) => {
                    self.disconnect();
                    Err(StateError::Unavailable(e.to_string()))
                }
                Err(_) => {
                    self.disconnect();
                    Err(StateError::Unavailable("timed out".into()))
                }
            },
            Err(e) => Err(e),
        };
        if let Err(e) = &result {
            StateStats::add(match self.kind {
                Kind::Cache => &self.stats.cache_errors,
                Kind::RateLimiter => &self.stats.rate_limiter_errors,
            });
            self.warn(&e.to_string());
        }
        result
    }

    fn disconnect(&self) {
        self.up_gauge().store(0, Ordering::Relaxed);
        if let Ok(mut slot) = self.slot.lock() {
            if matches!(*slot, Slot::Ready(_)) {
                *slot = Slot::Idle {
                    retry_at: Instant::now(),
                };
            }
        }
    }

    fn warn(&self, what: &str) {
        if self.stats.may_warn() {
            let fallback = match self.kind {
                Kind::Cache => "cache reads miss, writes are lost",
                Kind::RateLimiter => "REST requests are served unlimited (fail open)",
            };
            warn!(backend = self.name(), error = what, "state backend unavailable; {fallback}");
        }
    }

    async fn cache_set(self: Arc<Self>, app_id: String, channel: String, value: String, ttl: Duration) {
        let key = cache_key(&self.prefix, &app_id, &channel);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("PX").arg(ttl.as_millis().max(1) as u64);
        let _ = self.run(&cmd).await;
    }

    async fn cache_get(
        self: Arc<Self>,
        app_id: String,
        channel: String,
    ) -> Result<Option<CacheEntry>, StateError> {
        let key = cache_key(&self.prefix, &app_id, &channel);
        // GET and PTTL of one key in one round trip (and one slot).
        let mut cmd = redis::cmd("EVAL");
        cmd.arg("return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}")
            .arg(1)
            .arg(key);
        let value = self.run(&cmd).await?;
        Ok(parse_cache_entry(value))
    }

    async fn rate_take(
        self: Arc<Self>,
        app_id: String,
        kind: crate::RateKind,
        n: u64,
        limit: u64,
    ) -> Result<bool, StateError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RATE_SCRIPT)
            .arg(1)
            .arg(rate_key(&self.prefix, &app_id, kind))
            .arg(n)
            .arg(limit)
            .arg(RATE_WINDOW_MS);
        match self.run(&cmd).await? {
            Value::Int(granted) => Ok(granted == 1),
            other => Err(StateError::Unavailable(format!(
                "unexpected script answer {other:?}"
            ))),
        }
    }
}

/// `[value or nil, pttl]` → the entry (a key without expiry reports its TTL as 0).
fn parse_cache_entry(value: Value) -> Option<CacheEntry> {
    let Value::Array(items) = value else {
        return None;
    };
    let text = match items.first()? {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok()?,
        Value::SimpleString(s) => s.clone(),
        _ => return None,
    };
    let ttl_ms = match items.get(1) {
        Some(Value::Int(ms)) if *ms > 0 => *ms as u64,
        _ => 0,
    };
    Some((text, ttl_ms / 1000))
}

/// Serves `request` with `store` on a task of its own.
pub(crate) fn serve(store: Option<&Arc<Store>>, request: StateRequest) {
    let Some(store) = store.cloned() else {
        refuse(request);
        return;
    };
    match request {
        StateRequest::CacheSet {
            app_id,
            channel,
            value,
            ttl,
        } => {
            tokio::spawn(store.cache_set(app_id, channel, value, ttl));
        }
        StateRequest::CacheGet {
            app_id,
            channel,
            reply,
        } => {
            tokio::spawn(async move {
                let _ = reply.send(store.cache_get(app_id, channel).await);
            });
        }
        StateRequest::RateTake {
            app_id,
            kind,
            n,
            limit,
            reply,
        } => {
            tokio::spawn(async move {
                let _ = reply.send(store.rate_take(app_id, kind, n, limit).await);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_entry_with_its_ttl() {
        let value = Value::Array(vec![Value::BulkString(b"{\"e\":1}".to_vec()), Value::Int(2500)]);
        assert_eq!(
            parse_cache_entry(value),
            Some(("{\"e\":1}".to_string(), 2))
        );
        assert_eq!(
            parse_cache_entry(Value::Array(vec![Value::Nil, Value::Int(-2)])),
            None
        );
    }
}
