//! The queue on Redis: one Stream `{prefix}webhooks` with the consumer group `sockudo-webhooks`.
//! - push: `XADD key * p <payload>` (pipelined);
//! - fetch: `XAUTOCLAIM key group me <lease> <cursor>` takes entries whose holder has not renewed them for a
//!   lease (a dead or stuck process), then `XREADGROUP GROUP group me COUNT n BLOCK ms STREAMS key >` new ones;
//! - renew: `XCLAIM key group me 0 <ids> JUSTID` resets their idle time;
//! - release: `XCLAIM ... IDLE <lease> JUSTID` makes them look expired, so the next XAUTOCLAIM takes them;
//! - ack: `XACK` then `XDEL`, so the Stream holds only what is not done.
//!
//! Redis Cluster: the same commands on the node owning the key (one key, so one slot).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis::{Cmd, Value};
use tokio::sync::Mutex;
use tracing::debug;

use crate::{Backend, Leased, QueueConfig, QueueError};

const GROUP: &str = "sockudo-webhooks";
const FIELD: &str = "p";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a blocking read waits for new entries; the response timeout is above it.
const MAX_BLOCK: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

enum Target {
    Single(Box<redis::Client>),
    #[cfg(feature = "redis-cluster")]
    Cluster(Vec<String>),
}

#[derive(Clone)]
enum Conn {
    Single(redis::aio::MultiplexedConnection),
    #[cfg(feature = "redis-cluster")]
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn query(&mut self, cmd: &Cmd) -> redis::RedisResult<Value> {
        match self {
            Conn::Single(c) => cmd.query_async(c).await,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    async fn pipe(&mut self, pipe: &redis::Pipeline) -> redis::RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => pipe.query_async(c).await,
            #[cfg(feature = "redis-cluster")]
            Conn::Cluster(c) => pipe.query_async(c).await,
        }
    }
}

pub(crate) struct RedisQueue {
    target: Target,
    key: String,
    consumer: String,
    lease_ms: u64,
    /// For short commands (shared, multiplexed).
    conn: Mutex<Option<Conn>>,
    /// For the blocking read only, so it never delays the others.
    reader: Mutex<Option<Conn>>,
    group_ready: AtomicBool,
    /// Where the next XAUTOCLAIM scan starts.
    claim_cursor: Mutex<String>,
}

fn backend_error(what: &str, e: redis::RedisError) -> QueueError {
    // Errors name the command and the cause, never the URL (it may carry a password).
    QueueError::Backend(format!("{what}: {e}"))
}

impl RedisQueue {
    pub(crate) fn new(config: QueueConfig) -> Result<RedisQueue, QueueError> {
        let target = match config.backend {
            Backend::Redis { url } => Target::Single(Box::new(
                redis::Client::open(url.as_str())
                    .map_err(|e| QueueError::Config(format!("invalid Redis URL: {e}")))?,
            )),
            #[cfg(feature = "redis-cluster")]
            Backend::RedisCluster { nodes } => {
                if nodes.is_empty() {
                    return Err(QueueError::Config("no Redis Cluster nodes given".into()));
                }
                redis::cluster::ClusterClient::new(nodes.iter().map(String::as_str)).map_err(
                    |e| QueueError::Config(format!("invalid Redis Cluster node URL: {e}")),
                )?;
                Target::Cluster(nodes)
            }
            _ => return Err(QueueError::Config("not a Redis backend".into())),
        };
        Ok(RedisQueue {
            target,
            key: format!("{}webhooks", config.prefix),
            consumer: config.consumer,
            lease_ms: config.lease.as_millis().max(1) as u64,
            conn: Mutex::new(None),
            reader: Mutex::new(None),
            group_ready: AtomicBool::new(false),
            claim_cursor: Mutex::new("0-0".into()),
        })
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        match &self.target {
            Target::Single(client) => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                Ok(Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            #[cfg(feature = "redis-cluster")]
            Target::Cluster(nodes) => {
                let client =
                    redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(RESPONSE_TIMEOUT)
                        .retries(1)
                        .build()?;
                Ok(Conn::Cluster(client.get_async_connection().await?))
            }
        }
    }

    /// The shared connection, connecting first when there is none.
    async fn conn(&self, slot: &Mutex<Option<Conn>>) -> Result<Conn, QueueError> {
        let mut held = slot.lock().await;
        if let Some(conn) = held.as_ref() {
            return Ok(conn.clone());
        }
        let conn = self
            .connect()
            .await
            .map_err(|e| backend_error("connect", e))?;
        *held = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `cmd`; on failure drops the connection (the next call connects again) when it may be broken.
    async fn run(
        &self,
        slot: &Mutex<Option<Conn>>,
        what: &str,
        cmd: &Cmd,
    ) -> Result<Value, QueueError> {
        let mut conn = self.conn(slot).await?;
        match conn.query(cmd).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.failed(slot, what, e).await),
        }
    }

    async fn failed(
        &self,
        slot: &Mutex<Option<Conn>>,
        what: &str,
        e: redis::RedisError,
    ) -> QueueError {
        if e.code() == Some("NOGROUP") {
            // The Stream or its group was deleted: create them again on the next call.
            self.group_ready.store(false, Ordering::Relaxed);
        } else if e.kind() != redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) {
            *slot.lock().await = None;
        }
        backend_error(what, e)
    }

    /// `XGROUP CREATE key group 0 MKSTREAM`, once (an existing group is fine).
    async fn ensure_group(&self) -> Result<(), QueueError> {
        if self.group_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE")
            .arg(&self.key)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM");
        match self.run(&self.conn, "XGROUP CREATE", &cmd).await {
            Ok(_) => {}
            Err(QueueError::Backend(e)) if e.contains("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        self.group_ready.store(true, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) async fn push(&self, payloads: &[Bytes]) -> Result<Vec<usize>, QueueError> {
        if payloads.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.cmd("XADD")
                .arg(&self.key)
                .arg("*")
                .arg(FIELD)
                .arg(payload.as_ref());
        }
        let mut conn = self.conn(&self.conn).await?;
        match conn.pipe(&pipe).await {
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(self.failed(&self.conn, "XADD", e).await),
        }
    }

    pub(crate) async fn fetch(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Leased>, QueueError> {
        self.ensure_group().await?;
        let max = max.max(1);
        let mut out = self.reclaim(max).await?;
        if out.len() >= max {
            return Ok(out);
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(max - out.len());
        if out.is_empty() {
            cmd.arg("BLOCK")
                .arg(wait.min(MAX_BLOCK).as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.key).arg(">");
        let reply = self.run(&self.reader, "XREADGROUP", &cmd).await?;
        // [[key, [entry, ...]]] or nil when the wait ended with nothing.
        if let Value::Array(streams) = reply {
            for stream in streams {
                if let Value::Array(mut parts) = stream {
                    if parts.len() == 2 {
                        entries(parts.swap_remove(1), false, &mut out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Entries whose holder did not renew them for a lease, taken over by this process.
    async fn reclaim(&self, max: usize) -> Result<Vec<Leased>, QueueError> {
        let cursor = self.claim_cursor.lock().await.clone();
        let mut cmd = redis::cmd("XAUTOCLAIM");
        cmd.arg(&self.key)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(self.lease_ms)
            .arg(&cursor)
            .arg("COUNT")
            .arg(max);
        let reply = self.run(&self.conn, "XAUTOCLAIM", &cmd).await?;
        let mut out = Vec::new();
        // [next-cursor, [entry, ...], [deleted-id, ...]]
        if let Value::Array(mut parts) = reply {
            if parts.len() >= 2 {
                let claimed = parts.swap_remove(1);
                if let Some(next) = text(&parts[0]) {
                    *self.claim_cursor.lock().await = next;
                }
                entries(claimed, true, &mut out);
            }
        }
        if !out.is_empty() {
            debug!(
                count = out.len(),
                "took over webhook queue entries after their lease ran out"
            );
        }
        Ok(out)
    }

    pub(crate) async fn ack(&self, handles: &[String]) -> Result<(), QueueError> {
        if handles.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("XACK").arg(&self.key).arg(GROUP).arg(handles);
        pipe.cmd("XDEL").arg(&self.key).arg(handles);
        let mut conn = self.conn(&self.conn).await?;
        match conn.pipe(&pipe).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.failed(&self.conn, "XACK", e).await),
        }
    }

    pub(crate) async fn renew(&self, handles: &[String]) -> Result<(), QueueError> {
        self.claim(handles, None).await
    }

    pub(crate) async fn release(&self, handles: &[String]) -> Result<(), QueueError> {
        self.claim(handles, Some(self.lease_ms)).await
    }

    /// `XCLAIM key group me 0 <ids> [IDLE ms] JUSTID`.
    async fn claim(&self, handles: &[String], idle_ms: Option<u64>) -> Result<(), QueueError> {
        if handles.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XCLAIM");
        cmd.arg(&self.key)
            .arg(GROUP)
            .arg(&self.consumer)
            .arg(0)
            .arg(handles);
        if let Some(idle) = idle_ms {
            cmd.arg("IDLE").arg(idle);
        }
        cmd.arg("JUSTID");
        self.run(&self.conn, "XCLAIM", &cmd).await.map(|_| ())
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// Appends the entries of a reply (`[[id, [field, value, ...]], ...]`; deleted ones may be nil) to `out`.
fn entries(list: Value, reclaimed: bool, out: &mut Vec<Leased>) {
    let Value::Array(list) = list else {
        return;
    };
    for entry in list {
        let Value::Array(mut parts) = entry else {
            continue;
        };
        if parts.len() != 2 {
            continue;
        }
        let fields = parts.pop();
        let Some(id) = parts.pop().as_ref().and_then(text) else {
            continue;
        };
        let Some(Value::Array(fields)) = fields else {
            continue;
        };
        let mut payload = None;
        let mut it = fields.into_iter();
        while let (Some(name), Some(value)) = (it.next(), it.next()) {
            if text(&name).as_deref() == Some(FIELD) {
                if let Value::BulkString(bytes) = value {
                    payload = Some(Bytes::from(bytes));
                }
            }
        }
        // An entry without our field is not ours to deliver; it is still handed out (empty) so the caller
        // acknowledges it instead of seeing it again forever.
        out.push(Leased {
            handle: id,
            payload: payload.unwrap_or_default(),
            reclaimed,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_entries_and_skips_deleted_ones() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("p"), bulk("{\"a\":1}")]),
            ]),
            Value::Nil,
            Value::Array(vec![bulk("2-0"), Value::Array(vec![bulk("x"), bulk("y")])]),
        ]);
        let mut out = Vec::new();
        entries(reply, true, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].handle, "1-0");
        assert_eq!(&out[0].payload[..], b"{\"a\":1}");
        assert!(out[0].reclaimed);
        assert_eq!(out[1].handle, "2-0");
        assert!(out[1].payload.is_empty());
    }
}
