//! One backend's connection and its operations.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Value};
use tracing::{info, warn};

use crate::{
    cache_key, rate_key, refuse, BackendConfig, CacheEntry, StateError, StateRequest, StateStats,
    Target, OP_TIMEOUT, RATE_SCRIPT, RATE_WINDOW_MS,
};

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// At most one warning per backend in this interval.
const WARN_EVERY: Duration = Duration::from_secs(5);
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
    /// Not connected; the reconnect task tries again every [`RECONNECT_AFTER`].
    Down,
    /// An attempt is in flight.
    Connecting,
    Ready(Conn),
}

/// One backend (the cache's or the rate limiter's).
pub(crate) struct Store {
    target: Target,
    prefix: String,
    kind: Kind,
    slot: Mutex<Slot>,
    /// Woken when a connection is made.
    connected: Notify,
    /// True while the reconnect task runs (at most one).
    reconnecting: AtomicBool,
    /// When this backend last logged a warning.
    last_warning: Mutex<Option<Instant>>,
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
            slot: Mutex::new(Slot::Down),
            connected: Notify::new(),
            reconnecting: AtomicBool::new(false),
            last_warning: Mutex::new(None),
            stats,
        });
        store.reconnect();
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

    fn set_slot(&self, slot: Slot) {
        if let Ok(mut current) = self.slot.lock() {
            *current = slot;
        }
    }

    /// The connection, or `Err(true)` while an attempt is in flight, `Err(false)` while down.
    fn connection(&self) -> Result<Conn, bool> {
        match &*self.slot.lock().map_err(|_| false)? {
            Slot::Ready(conn) => Ok(conn.clone()),
            Slot::Connecting => Err(true),
            Slot::Down => Err(false),
        }
    }

    /// Starts the reconnect task unless it runs: it tries every [`RECONNECT_AFTER`] until connected.
    fn reconnect(self: &Arc<Self>) {
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                store.set_slot(Slot::Connecting);
                let error = match tokio::time::timeout(CONNECT_TIMEOUT, store.connect()).await {
                    Ok(Ok(conn)) => {
                        store.set_slot(Slot::Ready(conn));
                        store.up_gauge().store(1, Ordering::Relaxed);
                        store.reconnecting.store(false, Ordering::Release);
                        store.connected.notify_waiters();
                        info!(backend = store.name(), "state backend connected");
                        return;
                    }
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => "timed out".to_string(),
                };
                store.set_slot(Slot::Down);
                store.connected.notify_waiters();
                store.warn(&format!("connecting: {error}"));
                tokio::time::sleep(RECONNECT_AFTER).await;
            }
        });
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

    /// Runs `cmd` within [`OP_TIMEOUT`] (waiting that long at most for a connection attempt in flight). A
    /// failure drops the connection (the reconnect task makes a new one), counts and logs (at a bounded rate).
    async fn run(self: &Arc<Self>, cmd: &redis::Cmd) -> Result<Value, StateError> {
        let result = self.try_run(cmd).await;
        if let Err(e) = &result {
            StateStats::add(match self.kind {
                Kind::Cache => &self.stats.cache_errors,
                Kind::RateLimiter => &self.stats.rate_limiter_errors,
            });
            self.warn(&e.to_string());
        }
        result
    }

    async fn try_run(self: &Arc<Self>, cmd: &redis::Cmd) -> Result<Value, StateError> {
        let deadline = tokio::time::Instant::now() + OP_TIMEOUT;
        let mut conn = match self.connection() {
            Ok(conn) => conn,
            Err(true) => {
                let _ = tokio::time::timeout_at(deadline, self.connected.notified()).await;
                self.connection()
                    .map_err(|_| StateError::Unavailable("not connected".into()))?
            }
            Err(false) => return Err(StateError::Unavailable("not connected".into())),
        };
        match tokio::time::timeout_at(deadline, conn.query(cmd)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
            {
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
        }
    }

    fn disconnect(self: &Arc<Self>) {
        self.up_gauge().store(0, Ordering::Relaxed);
        let was_ready = self
            .slot
            .lock()
            .map(|mut slot| {
                let ready = matches!(*slot, Slot::Ready(_));
                if ready {
                    *slot = Slot::Down;
                }
                ready
            })
            .unwrap_or(false);
        if was_ready {
            self.reconnect();
        }
    }

    /// Logs that the backend is unavailable, at most once per [`WARN_EVERY`].
    fn warn(&self, what: &str) {
        let now = Instant::now();
        let due = self.last_warning.lock().is_ok_and(|mut last| {
            let due = last.is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
            if due {
                *last = Some(now);
            }
            due
        });
        if due {
            let fallback = match self.kind {
                Kind::Cache => "cache reads miss, writes are lost",
                Kind::RateLimiter => "REST requests are served unlimited (fail open)",
            };
            warn!(
                backend = self.name(),
                error = what,
                "state backend unavailable; {fallback}"
            );
        }
    }

    async fn cache_set(
        self: Arc<Self>,
        app_id: String,
        channel: String,
        value: String,
        ttl: Duration,
    ) {
        let key = cache_key(&self.prefix, &app_id, &channel);
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(value)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64);
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
        let value = Value::Array(vec![
            Value::BulkString(b"{\"e\":1}".to_vec()),
            Value::Int(2500),
        ]);
        assert_eq!(parse_cache_entry(value), Some(("{\"e\":1}".to_string(), 2)));
        assert_eq!(
            parse_cache_entry(Value::Array(vec![Value::Nil, Value::Int(-2)])),
            None
        );
    }
}
