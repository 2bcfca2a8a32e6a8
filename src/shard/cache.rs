//! The last HTTP-published event of each cache channel (`cache-`, `private-cache-`, `private-encrypted-cache-`,
//! `presence-cache-`) this shard owns, replayed to new subscribers until it expires.

use super::fanout::{frame_payload, Outgoing};
use super::mesh::{ShardMsg, SocketRef};
use super::Shard;
use crate::conn::Connection;
use crate::protocol::messages;
use sockudo_webhooks::{EventKind, WebhookEvent};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Cached {
    /// The channel event exactly as subscribers received it.
    text: Box<str>,
    expires: Instant,
}

/// Cached events by (app index, channel).
#[derive(Debug, Default)]
pub struct ChannelCache {
    entries: HashMap<(u32, Box<str>), Cached>,
}

impl ChannelCache {
    /// Keeps `text` as the channel's last event for `ttl`.
    pub fn store(&mut self, app: u32, channel: &str, text: &str, ttl: Duration, now: Instant) {
        if self.entries.len() > 1024 && self.entries.len().is_power_of_two() {
            self.entries.retain(|_, c| c.expires > now);
        }
        self.entries.insert(
            (app, channel.into()),
            Cached {
                text: text.into(),
                expires: now + ttl,
            },
        );
    }

    /// The channel's last event and its remaining lifetime in seconds, if it has not expired.
    pub fn get(&mut self, app: u32, channel: &str, now: Instant) -> Option<(String, u64)> {
        let key = (app, Box::<str>::from(channel));
        let cached = self.entries.get(&key)?;
        if cached.expires <= now {
            self.entries.remove(&key);
            return None;
        }
        Some((cached.text.to_string(), (cached.expires - now).as_secs()))
    }
}

/// A cache channel's events all go through one shard of each node, its *cache home*: it stores each event and
/// delivers it, and it answers a new subscriber's replay through the same ordered path, so the subscriber (held
/// back from the channel until then) gets the last event as of its join and then exactly the events after it.
/// On a cluster the home is the worker that receives the channel's events from the bus (every node stores
/// every event of the channel in the bus's order), and a replay waits for a barrier to go round the bus first,
/// so it holds every event published anywhere before the subscription (as presence snapshots do).
impl Shard {
    /// The shard of this node that keeps cache channel `channel`.
    pub fn cache_home(&self, app: u32, channel: &str) -> usize {
        match self.cluster.as_ref().and(self.app_id(app)) {
            Some(app_id) => {
                (super::cluster::route_of(&app_id, channel) % self.peers.nr_shards() as u64)
                    as usize
            }
            None => self.owner_of(app, channel),
        }
    }

    /// Stores and delivers events of cache channels through their homes on this node (and queues them for the
    /// other nodes, which store them as they receive them); resolves once every shard has queued them.
    pub async fn publish_cached(&self, app: u32, items: Vec<Outgoing>, except: Option<&str>) {
        self.cluster_publish(app, &items, except);
        let mut per_owner: HashMap<usize, Vec<Outgoing>> = HashMap::new();
        for item in items {
            per_owner
                .entry(self.cache_home(app, &item.channel))
                .or_default()
                .push(item);
        }
        let mut acks = Vec::with_capacity(per_owner.len());
        for (owner, items) in per_owner {
            let (ack, done) = tokio::sync::oneshot::channel();
            self.send_to(
                owner,
                ShardMsg::CachePublish {
                    app,
                    items,
                    except: except.map(Into::into),
                    ack,
                },
            );
            acks.push(done);
        }
        for done in acks {
            // A shard that stopped (shutdown) has no subscribers left to order against.
            let _ = done.await;
        }
    }

    /// On the owner: keeps each event as its channel's last and delivers it everywhere.
    pub(super) fn apply_cache_publish(
        &self,
        app: u32,
        items: Vec<Outgoing>,
        except: Option<&str>,
        ack: tokio::sync::oneshot::Sender<()>,
    ) {
        for item in &items {
            self.store_cached(app, item, true);
        }
        let acks = self.publish_now(app, items, except, true);
        if acks.is_empty() {
            let _ = ack.send(());
            return;
        }
        glommio::spawn_local(async move {
            for done in acks {
                let _ = done.await;
            }
            let _ = ack.send(());
        })
        .detach();
    }

    /// Keeps a cache channel's event (as subscribers get it) as the channel's last, on its home; with
    /// `persist`, in the shared cache too (the publishing node writes it there, the others do not).
    pub(super) fn store_cached(&self, app: u32, item: &Outgoing, persist: bool) {
        if let Ok(text) = std::str::from_utf8(&frame_payload(&item.frame)) {
            self.apply_cache_store(app, &item.channel, text, persist);
        }
    }

    /// For a socket that joined cache channel `channel` as pending: asks the owner for the replay and resolves
    /// once `subscription_succeeded` and the replay (or `pusher:cache_miss`) are queued and the socket gets the
    /// channel's events.
    pub async fn subscribe_with_replay(&self, conn: &Connection, channel: &str) {
        let (reply, mut queued) = tokio::sync::oneshot::channel();
        let token = self.cluster.as_ref().map_or(0, |l| l.new_token());
        let home = self.cache_home(conn.app.index, channel);
        self.send_to(
            home,
            ShardMsg::CacheReplay {
                app: conn.app.index,
                channel: channel.into(),
                socket: SocketRef {
                    shard: self.id,
                    conn_id: conn.id,
                    socket_id: conn.socket_id.clone(),
                },
                token,
                reply,
            },
        );
        let answered = glommio::timer::timeout(super::cluster::ECHO_TIMEOUT, async {
            (&mut queued)
                .await
                .map_err(|_| glommio::GlommioError::<()>::IoError(std::io::Error::other("gone")))
        })
        .await;
        if answered.is_err() && token != 0 {
            // The bus did not bring the barrier back: take the replay as the home knows it now.
            self.metrics.cluster_echo_timeouts.inc();
            self.send_to(home, ShardMsg::BarrierPassed { token });
            let _ = queued.await;
        }
    }

    /// On the home: the channel's last event, to the subscriber's shard behind every event delivered before
    /// (on a cluster, once a barrier went round the bus: [`Shard::await_cache_barrier`]).
    pub(super) fn apply_cache_replay(
        &self,
        app: u32,
        channel: Box<str>,
        socket: SocketRef,
        token: u64,
        reply: tokio::sync::oneshot::Sender<()>,
    ) {
        if self.loopback() && token != 0 {
            self.await_cache_barrier(app, channel, socket, token, reply);
            return;
        }
        self.answer_cache_replay(app, channel, socket, reply);
    }

    /// Sends the channel's last event as of now to the subscriber's shard.
    pub(super) fn answer_cache_replay(
        &self,
        app: u32,
        channel: Box<str>,
        socket: SocketRef,
        reply: tokio::sync::oneshot::Sender<()>,
    ) {
        let cached = self.cached_event(app, &channel);
        let Some(shard) = self
            .me
            .upgrade()
            .filter(|_| cached.is_none() && self.cache_shared())
        else {
            self.send_cache_replayed(app, channel, socket, cached, reply);
            return;
        };
        // Not held here: another node (or this one before a restart) may have published it. The subscriber
        // stays held back meanwhile, so it misses nothing delivered before the answer.
        glommio::spawn_local(async move {
            let shared = shard.shared_cached(app, &channel).await;
            // A store that happened while Redis answered is newer.
            let cached = shard
                .cached_event(app, &channel)
                .or(shared.map(|(text, _)| text));
            shard.send_cache_replayed(app, channel, socket, cached, reply);
        })
        .detach();
    }

    fn send_cache_replayed(
        &self,
        app: u32,
        channel: Box<str>,
        socket: SocketRef,
        cached: Option<String>,
        reply: tokio::sync::oneshot::Sender<()>,
    ) {
        self.send_to(
            socket.shard,
            ShardMsg::CacheReplayed {
                app,
                channel,
                conn_id: socket.conn_id,
                cached,
                reply,
            },
        );
    }

    /// The last event of cache channel `channel` and its remaining lifetime in seconds: from its owner shard,
    /// else from the shared cache. `Err`: the owner did not answer in time.
    pub async fn cache_lookup(&self, app: u32, channel: &str) -> Result<Option<(String, u64)>, ()> {
        let query = super::query::Query::Cache {
            channel: channel.to_string(),
        };
        match self.ask_owner(app, channel, query).await? {
            super::query::Answer::Cached(Some(entry)) => Ok(Some(entry)),
            _ => Ok(self.shared_cached(app, channel).await),
        }
    }

    /// The last event of cache channel `channel` owned here, if it has not expired.
    pub(super) fn cached_event(&self, app: u32, channel: &str) -> Option<String> {
        self.cache
            .borrow_mut()
            .get(app, channel, Instant::now())
            .map(|(text, _)| text)
    }

    /// On the subscriber's shard: `subscription_succeeded`, the replay, then the channel's events.
    pub(super) fn apply_cache_replayed(
        &self,
        app: u32,
        channel: &str,
        conn_id: u64,
        cached: Option<String>,
        reply: tokio::sync::oneshot::Sender<()>,
    ) {
        let conn = self.conns.borrow().get(&conn_id).cloned();
        if let Some(conn) = conn.filter(|c| c.is_open()) {
            conn.send_control(&messages::subscription_succeeded(channel));
            self.send_cache_replay(&conn, channel, cached.as_deref());
        }
        self.channels.borrow_mut().confirm(app, channel, conn_id);
        let _ = reply.send(());
    }

    /// Queues a cache channel's replay to `conn`: its last event, or `pusher:cache_miss` (PROTOCOL.md 1.11)
    /// with the `cache_miss` webhook.
    pub fn send_cache_replay(&self, conn: &Connection, channel: &str, cached: Option<&str>) {
        if let Some(text) = cached {
            conn.send_control(text);
            return;
        }
        if conn.app.wants_webhook(EventKind::CacheMiss) {
            self.emit_webhook(WebhookEvent::new(
                conn.app.index,
                EventKind::CacheMiss,
                channel,
            ));
        }
        let mut miss = String::from("{\"event\":\"pusher:cache_miss\",\"channel\":");
        messages::push_json_string(&mut miss, channel);
        miss.push('}');
        conn.send_control(&miss);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_event_until_it_expires() {
        let mut c = ChannelCache::default();
        let t0 = Instant::now();
        c.store(0, "cache-a", "one", Duration::from_secs(10), t0);
        c.store(0, "cache-a", "two", Duration::from_secs(10), t0);
        assert_eq!(
            c.get(0, "cache-a", t0).map(|(t, _)| t),
            Some("two".to_string())
        );
        assert_eq!(c.get(1, "cache-a", t0), None);
        assert_eq!(c.get(0, "cache-a", t0 + Duration::from_secs(11)), None);
    }
}
