//! Redis and Redis Cluster transports. One task per bus owns a session: a publishing connection (batches of
//! `PUBLISH` / `SPUBLISH` written as one pipeline) and a subscribing connection in RESP3, whose pushes are
//! handled right in the connection's reader (see [`push_handler`]). Any error ends the session; the task
//! reports `Down`, waits out the backoff, connects again and subscribes every wanted topic again.
//!
//! Redis Cluster uses sharded pub/sub (Redis 7 `SSUBSCRIBE`/`SPUBLISH`): a channel lives on the master of
//! its slot only, so a node only receives the channels it subscribed to and no message crosses the cluster
//! bus. Commands are grouped by slot (a pipeline or an `SSUBSCRIBE` may name one slot only).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
#[cfg(feature = "redis-cluster")]
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, Value};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::backoff::{Backoff, LogLimiter};
use crate::outbox::Outgoing;
use crate::shared::{Shared, SubChange};
use crate::stats::BusStats;
use crate::{BusError, BusEvent};

/// Messages per pipeline.
const PUBLISH_BATCH: usize = 1024;
/// Channels per `SUBSCRIBE` / `UNSUBSCRIBE` command.
const SUBSCRIBE_BATCH: usize = 512;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a session checks that its connections still answer.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// A session that lived this long resets the backoff; one that fails sooner keeps doubling it.
const STABLE_SESSION: Duration = Duration::from_secs(5);

/// How to reach the broker; made once at start (URLs are checked there).
#[allow(clippy::large_enum_variant)] // one per bus, never moved on a hot path
enum Target {
    Single {
        publisher: Client,
        subscriber: Client,
    },
    #[cfg(feature = "redis-cluster")]
    Cluster { nodes: Vec<String> },
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Single { .. } => "redis",
            #[cfg(feature = "redis-cluster")]
            Target::Cluster { .. } => "redis-cluster",
        }
    }
}

pub(crate) fn start_single(
    url: String,
    prefix: String,
    shared: Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>, BusError> {
    // The URL may carry a password: errors name the problem, never the URL.
    let publisher = Client::open(url.as_str())
        .map_err(|e| BusError::Config(format!("invalid Redis URL: {e}")))?;
    let info = publisher.get_connection_info().clone();
    let resp3 = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let subscriber = Client::open(info.set_redis_settings(resp3))
        .map_err(|e| BusError::Config(format!("invalid Redis URL: {e}")))?;
    let target = Target::Single {
        publisher,
        subscriber,
    };
    Ok(vec![tokio::spawn(run(target, prefix, shared))])
}

#[cfg(feature = "redis-cluster")]
pub(crate) fn start_cluster(
    nodes: Vec<String>,
    prefix: String,
    shared: Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>, BusError> {
    if nodes.is_empty() {
        return Err(BusError::Config("no Redis Cluster nodes given".into()));
    }
    redis::cluster::ClusterClient::new(nodes.iter().map(String::as_str))
        .map_err(|e| BusError::Config(format!("invalid Redis Cluster node URL: {e}")))?;
    Ok(vec![tokio::spawn(run(
        Target::Cluster { nodes },
        prefix,
        shared,
    ))])
}

/// The session loop: connect, serve until lost, report, back off, again; until the bus closes.
async fn run(target: Target, prefix: String, shared: Arc<Shared>) {
    let channel_prefix: Arc<str> = format!("{prefix}:").into();
    let mut backoff = Backoff::default();
    let failure_log = LogLimiter::new(Duration::from_secs(30));
    let mut had_session = false;
    let mut down_reported = false;
    while !shared.is_closing() {
        let lost = Arc::new(Notify::new());
        let connect = Session::connect(&target, &channel_prefix, &shared, lost.clone());
        let connected = tokio::select! {
            result = connect => result,
            _ = shared.closed() => break,
        };
        match connected {
            Ok(mut session) => {
                if had_session {
                    BusStats::add(&shared.stats.reconnects, 1);
                }
                had_session = true;
                info!(transport = target.name(), "bus connected");
                shared.report(BusEvent::Up).await;
                let started = Instant::now();
                let Some(reason) = session.serve(&shared, &lost).await else {
                    break;
                };
                BusStats::add(&shared.stats.errors, 1);
                warn!(transport = target.name(), %reason, "bus connection lost; reconnecting");
                if started.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
                shared.report(BusEvent::Down { reason }).await;
                down_reported = true;
            }
            Err(e) => {
                BusStats::add(&shared.stats.errors, 1);
                let reason = format!("cannot connect: {e}");
                if failure_log.allow() {
                    warn!(transport = target.name(), %reason, "bus unavailable; retrying with backoff");
                }
                if !down_reported {
                    shared.report(BusEvent::Down { reason }).await;
                    down_reported = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shared.closed() => break,
        }
    }
    BusStats::set(&shared.stats.up, 0);
}

enum Session {
    Single {
        publisher: MultiplexedConnection,
        subscriber: MultiplexedConnection,
        channel_prefix: Arc<str>,
    },
    #[cfg(feature = "redis-cluster")]
    Cluster {
        publisher: redis::cluster_async::ClusterConnection,
        subscriber: redis::cluster_async::ClusterConnection,
        channel_prefix: Arc<str>,
    },
}

impl Session {
    async fn connect(
        target: &Target,
        channel_prefix: &Arc<str>,
        shared: &Arc<Shared>,
        lost: Arc<Notify>,
    ) -> redis::RedisResult<Session> {
        let pushes = push_handler(shared.clone(), channel_prefix.clone(), lost);
        match target {
            Target::Single {
                publisher,
                subscriber,
            } => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT));
                let publisher = publisher
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let subscriber = subscriber
                    .get_multiplexed_async_connection_with_config(&config.set_push_sender(pushes))
                    .await?;
                Ok(Session::Single {
                    publisher,
                    subscriber,
                    channel_prefix: channel_prefix.clone(),
                })
            }
            #[cfg(feature = "redis-cluster")]
            Target::Cluster { nodes } => {
                use redis::cluster::ClusterClientBuilder;
                let builder = || {
                    ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                        .connection_timeout(CONNECT_TIMEOUT)
                        .response_timeout(RESPONSE_TIMEOUT)
                        .retries(2)
                };
                let publisher = builder().build()?.get_async_connection().await?;
                let subscriber = builder()
                    .use_protocol(ProtocolVersion::RESP3)
                    .push_sender(pushes)
                    .build()?
                    .get_async_connection()
                    .await?;
                Ok(Session::Cluster {
                    publisher,
                    subscriber,
                    channel_prefix: channel_prefix.clone(),
                })
            }
        }
    }

    /// Subscribes every wanted topic, then publishes and applies subscription changes until the session is
    /// lost (returns why) or the bus closes (returns `None` after flushing).
    async fn serve(&mut self, shared: &Shared, lost: &Notify) -> Option<String> {
        let topics = shared.take_all_topics();
        if let Err(e) = self.subscribe(&topics, true).await {
            return Some(format!("resubscribing {} topics failed: {e}", topics.len()));
        }
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            for (subscribe, topics) in coalesce(shared.take_changes()) {
                if let Err(e) = self.subscribe(&topics, subscribe).await {
                    let verb = if subscribe {
                        "subscribe"
                    } else {
                        "unsubscribe"
                    };
                    return Some(format!("{verb} failed: {e}"));
                }
            }
            loop {
                let batch = shared.take_outgoing(PUBLISH_BATCH);
                if batch.is_empty() {
                    break;
                }
                match self.publish(batch).await {
                    Ok(n) => BusStats::add(&shared.stats.published, n as u64),
                    Err((unsent, e)) => {
                        shared.requeue_outgoing(unsent);
                        return Some(format!("publish failed: {e}"));
                    }
                }
            }
            if shared.is_closing() {
                return None;
            }
            tokio::select! {
                _ = shared.outbox_ready.notified() => {}
                _ = shared.subs_changed.notified() => {}
                _ = lost.notified() => return Some("connection closed".into()),
                _ = shared.closed() => {}
                _ = heartbeat.tick() => {
                    if let Err(e) = self.ping().await {
                        return Some(format!("liveness check failed: {e}"));
                    }
                }
            }
        }
    }

    /// PINGs both connections: a connection that went silent without being closed (half-open TCP, a
    /// wedged proxy) fails within the response timeout instead of leaving the bus deaf.
    async fn ping(&mut self) -> redis::RedisResult<()> {
        let ping = redis::cmd("PING");
        match self {
            Session::Single {
                publisher,
                subscriber,
                ..
            } => {
                ping.query_async::<Value>(publisher).await?;
                ping.query_async::<Value>(subscriber).await?;
            }
            #[cfg(feature = "redis-cluster")]
            Session::Cluster {
                publisher,
                subscriber,
                ..
            } => {
                ping.query_async::<Value>(publisher).await?;
                ping.query_async::<Value>(subscriber).await?;
            }
        }
        Ok(())
    }

    fn channel(&self, topic: &str) -> String {
        let prefix = match self {
            Session::Single { channel_prefix, .. } => channel_prefix,
            #[cfg(feature = "redis-cluster")]
            Session::Cluster { channel_prefix, .. } => channel_prefix,
        };
        format!("{prefix}{topic}")
    }

    async fn subscribe(&mut self, topics: &[String], subscribe: bool) -> redis::RedisResult<()> {
        if topics.is_empty() {
            return Ok(());
        }
        let channels: Vec<String> = topics.iter().map(|t| self.channel(t)).collect();
        match self {
            Session::Single { subscriber, .. } => {
                for chunk in channels.chunks(SUBSCRIBE_BATCH) {
                    if subscribe {
                        subscriber.subscribe(chunk).await?;
                    } else {
                        subscriber.unsubscribe(chunk).await?;
                    }
                }
                Ok(())
            }
            #[cfg(feature = "redis-cluster")]
            Session::Cluster { subscriber, .. } => {
                let groups = crate::slot::group_by_slot(channels.iter().map(|c| c.as_bytes()));
                let requests = groups.into_iter().map(|group| {
                    let mut connection = subscriber.clone();
                    let names: Vec<&str> = group.iter().map(|&i| channels[i].as_str()).collect();
                    async move {
                        if subscribe {
                            connection.ssubscribe(names).await
                        } else {
                            connection.sunsubscribe(names).await
                        }
                    }
                });
                join_all(requests).await.into_iter().collect()
            }
        }
    }

    /// Publishes `batch` in order; on failure gives back what may not have been published.
    async fn publish(
        &mut self,
        batch: Vec<Outgoing>,
    ) -> Result<usize, (Vec<Outgoing>, redis::RedisError)> {
        let channels: Vec<String> = batch.iter().map(|m| self.channel(&m.topic)).collect();
        match self {
            Session::Single { publisher, .. } => {
                let pipe = pipeline("PUBLISH", &channels, &batch, 0..batch.len());
                match send(publisher, &pipe).await {
                    Ok(()) => Ok(batch.len()),
                    Err(e) => Err((batch, e)),
                }
            }
            #[cfg(feature = "redis-cluster")]
            Session::Cluster { publisher, .. } => {
                let groups = crate::slot::group_by_slot(channels.iter().map(|c| c.as_bytes()));
                let requests = groups.iter().map(|group| {
                    let mut connection = publisher.clone();
                    let pipe = pipeline("SPUBLISH", &channels, &batch, group.iter().copied());
                    async move { send(&mut connection, &pipe).await }
                });
                let results = join_all(requests).await;
                let mut failed = vec![false; batch.len()];
                let mut first_error = None;
                for (group, result) in groups.iter().zip(results) {
                    if let Err(e) = result {
                        group.iter().for_each(|&i| failed[i] = true);
                        first_error.get_or_insert(e);
                    }
                }
                match first_error {
                    None => Ok(batch.len()),
                    Some(e) => {
                        let unsent = batch
                            .into_iter()
                            .zip(failed)
                            .filter_map(|(message, failed)| failed.then_some(message))
                            .collect();
                        Err((unsent, e))
                    }
                }
            }
        }
    }
}

fn pipeline(
    command: &str,
    channels: &[String],
    batch: &[Outgoing],
    indexes: impl Iterator<Item = usize>,
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for i in indexes {
        pipe.cmd(command)
            .arg(&channels[i])
            .arg(&batch[i].payload[..])
            .ignore();
    }
    pipe
}

async fn send(
    connection: &mut impl ConnectionLike,
    pipe: &redis::Pipeline,
) -> redis::RedisResult<()> {
    pipe.query_async::<()>(connection).await
}

/// Groups consecutive changes of the same kind, so a burst costs one command per kind.
fn coalesce(changes: Vec<SubChange>) -> Vec<(bool, Vec<String>)> {
    let mut runs: Vec<(bool, Vec<String>)> = Vec::new();
    for change in changes {
        let (subscribe, topic) = match change {
            SubChange::Subscribe(t) => (true, t),
            SubChange::Unsubscribe(t) => (false, t),
        };
        match runs.last_mut() {
            Some((kind, topics)) if *kind == subscribe => topics.push(topic),
            _ => runs.push((subscribe, vec![topic])),
        }
    }
    runs
}

/// Handles the subscriber connection's pushes in its reader, in order: messages go to the consumer, a
/// disconnection (or the server dropping a subscription we still want, e.g. a slot moved) ends the session.
fn push_handler(
    shared: Arc<Shared>,
    channel_prefix: Arc<str>,
    lost: Arc<Notify>,
) -> impl Fn(PushInfo) -> Result<(), Infallible> + Send + Sync + 'static {
    move |push: PushInfo| {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                if let Some((topic, payload)) = decode_message(&channel_prefix, push.data) {
                    shared.deliver(topic, payload);
                }
            }
            PushKind::Disconnection => lost.notify_one(),
            PushKind::SUnsubscribe => {
                let still_wanted = push
                    .data
                    .first()
                    .and_then(|channel| topic_of(&channel_prefix, channel))
                    .is_some_and(|topic| shared.is_wanted(&topic));
                if still_wanted {
                    lost.notify_one();
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn topic_of(channel_prefix: &str, channel: &Value) -> Option<String> {
    let Value::BulkString(name) = channel else {
        return None;
    };
    let topic = name.strip_prefix(channel_prefix.as_bytes())?;
    Some(String::from_utf8_lossy(topic).into_owned())
}

fn decode_message(channel_prefix: &str, data: Vec<Value>) -> Option<(String, Bytes)> {
    let mut parts = data.into_iter();
    let topic = topic_of(channel_prefix, &parts.next()?)?;
    match parts.next()? {
        Value::BulkString(payload) => Some((topic, Bytes::from(payload))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_changes_of_one_kind_are_grouped() {
        let changes = vec![
            SubChange::Subscribe("a".into()),
            SubChange::Subscribe("b".into()),
            SubChange::Unsubscribe("a".into()),
            SubChange::Subscribe("c".into()),
        ];
        assert_eq!(
            coalesce(changes),
            vec![
                (true, vec!["a".to_string(), "b".to_string()]),
                (false, vec!["a".to_string()]),
                (true, vec!["c".to_string()]),
            ]
        );
    }

    #[test]
    fn messages_are_decoded_without_the_prefix() {
        let data = vec![
            Value::BulkString(b"sockudo:ch.app.room 1".to_vec()),
            Value::BulkString(vec![0, 1, 2]),
        ];
        let (topic, payload) = decode_message("sockudo:", data).unwrap();
        assert_eq!(topic, "ch.app.room 1");
        assert_eq!(&payload[..], &[0, 1, 2]);
        let foreign = vec![
            Value::BulkString(b"other:x".to_vec()),
            Value::BulkString(vec![]),
        ];
        assert!(decode_message("sockudo:", foreign).is_none());
    }
}
