//! A worker shard: one glommio executor pinned to one CPU, owning its listener, sockets and subscriptions.
//!
//! All state here is `Rc`/`RefCell`, reachable only from the shard's own thread. Other shards are reached by
//! explicit [`mesh::ShardMsg`]s; nothing on the per-message path is shared or locked.

pub mod cache;
pub mod channels;
pub mod mesh;
pub mod presence;
pub mod query;
pub mod subscription_count;
mod sweeper;
pub mod watchlist;
pub mod webhooks;

use crate::app::{App, AppRegistry};
use crate::config::Config;
use crate::conn::outbound::QueueLimits;
use crate::conn::{Connection, SlowConsumerPolicy};
use crate::protocol::messages;
use crate::ws;
use bytes::Bytes;
use channels::ChannelIndex;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers};
use glommio::net::TcpListener;
use mesh::{Peers, ShardMsg};
use presence::{JoinRefused, PresenceRegistry};
use sockudo_io_shard::{IoRequest, IoSender};
use sockudo_webhooks::{EventKind, WebhookEvent};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Size of the read buffer shared by all connections of a shard.
const READ_SCRATCH_BYTES: usize = 64 * 1024;

/// Signed-in connections by (app index, user id).
pub type UserIndex = HashMap<(u32, Box<str>), Vec<Rc<Connection>>>;

/// Per-core state.
pub struct Shard {
    /// This shard's index, 0-based.
    pub id: usize,
    /// The configuration, as loaded.
    pub config: Rc<Config>,
    /// This shard's apps (and its cache of database apps).
    pub apps: Rc<AppRegistry>,
    /// Open WebSocket connections by shard-local id.
    pub conns: RefCell<HashMap<u64, Rc<Connection>>>,
    next_conn_id: Cell<u64>,
    /// Local subscribers and remote interest per channel.
    pub channels: RefCell<ChannelIndex>,
    /// Presence members of the channels this shard owns.
    pub presence: RefCell<PresenceRegistry>,
    /// Last events of the cache channels this shard owns.
    pub cache: RefCell<cache::ChannelCache>,
    /// Online counts and watchers of the users this shard owns.
    pub watch: RefCell<watchlist::WatchRegistry>,
    /// Subscription totals of the channels this shard owns (apps with `enable_subscription_count`).
    pub subscription_counts: RefCell<subscription_count::SubscriptionCounts>,
    /// Signed-in connections of this shard by (app, user id).
    pub users: RefCell<UserIndex>,
    /// The way to other shards.
    pub peers: Peers,
    /// Read buffer lent to whichever connection is reading right now.
    pub read_scratch: RefCell<Box<[u8]>>,
    started: Instant,
    clock: Cell<u32>,
    shutting_down: Cell<bool>,
    /// What to do with subscribers whose queue is full.
    pub slow_consumer: SlowConsumerPolicy,
    /// This shard's counters; written only here.
    pub metrics: std::sync::Arc<crate::metrics::ShardMetrics>,
    /// Occupancy and delayed webhook events of the channels this shard owns.
    pub webhook_state: RefCell<webhooks::WebhookState>,
    /// Wakes the task that sends delayed webhook events when the first one is scheduled.
    webhook_scheduled: tokio::sync::Notify,
    /// The way to the I/O shard (webhooks); `None` when no app has a webhook.
    pub io: Option<IoSender>,
    /// Second (shard clock) of the last "I/O queue full" warning, to log it at most once a second.
    io_full_logged_at: Cell<Option<u32>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("id", &self.id).finish()
    }
}

/// Everything a shard thread needs to start.
#[derive(Clone)]
pub struct ShardSeed {
    /// Configuration shared read-only by all shards at start-up.
    pub config: std::sync::Arc<Config>,
    /// Apps, with process-wide connection counters.
    pub apps: crate::app::AppSeed,
    /// The cross-shard mesh, joined by every shard.
    pub mesh: MeshBuilder<ShardMsg, Full>,
    /// Number of shards.
    pub nr_shards: usize,
    /// Every shard's counters; each shard takes its own.
    pub metrics: std::sync::Arc<crate::metrics::MetricsRegistry>,
    /// The way to the I/O shard, when it runs.
    pub io: Option<IoSender>,
}

/// How a shard thread reports that it is serving (or why it could not start).
pub type ReadySender = std::sync::mpsc::Sender<(usize, Result<(), String>)>;

impl Shard {
    /// Seconds since the shard started, updated by the sweeper once a second.
    pub fn now(&self) -> u32 {
        self.clock.get()
    }

    /// True once shutdown began: no new connections, no keep-alive.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// A fresh shard-local connection id.
    pub fn next_conn_id(&self) -> u64 {
        let id = self.next_conn_id.get();
        self.next_conn_id.set(id + 1);
        id
    }

    /// Adds `conn` to the set the sweeper watches and shutdown closes.
    pub fn register(&self, conn: Rc<Connection>) {
        self.metrics.connection_opened(conn.app.index);
        self.conns.borrow_mut().insert(conn.id, conn);
    }

    /// Removes `conn` from every channel and from the registry; the last step of every connection.
    pub fn unregister(&self, conn: &Rc<Connection>) {
        let channels = std::mem::take(&mut *conn.channels.borrow_mut());
        for sub in channels.iter() {
            self.leave(conn.app.index, &sub.name, conn.id);
            if counts_subscriptions(conn, &sub.name) {
                self.count_subscription(conn.app.index, &sub.name, -1);
            }
            if let Some(user) = &sub.presence_user {
                self.presence_leave(conn.app.index, &sub.name, user);
            }
        }
        if let Some(user) = conn.user_id() {
            self.forget_user(conn.app.index, &user, conn.id);
            if conn.app.limits.enable_watchlist_events {
                self.user_offline(conn.app.index, &user);
            }
        }
        self.conns.borrow_mut().remove(&conn.id);
        conn.app.release_connection();
        self.metrics.connection_closed(conn.app.index);
    }

    /// Records that `conn` signed in as `user`.
    pub fn remember_user(&self, app: u32, user: &str, conn: &Rc<Connection>) {
        self.users
            .borrow_mut()
            .entry((app, user.into()))
            .or_default()
            .push(conn.clone());
    }

    fn forget_user(&self, app: u32, user: &str, conn_id: u64) {
        let mut users = self.users.borrow_mut();
        let key = (app, Box::<str>::from(user));
        if let Some(list) = users.get_mut(&key) {
            list.retain(|c| c.id != conn_id);
            if list.is_empty() {
                users.remove(&key);
            }
        }
    }

    /// Hands a webhook event to the I/O shard without waiting; a full queue drops it (counted, logged).
    pub fn emit_webhook(&self, event: WebhookEvent) {
        let Some(io) = &self.io else { return };
        if io.send(IoRequest::Webhook(event)) {
            return;
        }
        let now = self.now();
        if self.io_full_logged_at.get() != Some(now) {
            self.io_full_logged_at.set(Some(now));
            tracing::warn!(
                shard = self.id,
                "the I/O shard's queue is full: webhook events are being dropped"
            );
        }
    }

    /// True when an app wants `channel_occupied` or `channel_vacated`, so shards report occupancy for it.
    fn tracks_occupancy(&self, app: u32) -> bool {
        self.apps.by_index(app).is_some_and(|a| {
            a.wants_webhook(EventKind::ChannelOccupied)
                || a.wants_webhook(EventKind::ChannelVacated)
        })
    }

    /// Tells the owner of `channel` that this shard gained its first (`occupied`) or lost its last subscriber,
    /// when the app wants `channel_occupied` / `channel_vacated`.
    fn report_occupancy(&self, app: u32, channel: &str, occupied: bool) {
        if self.tracks_occupancy(app) {
            self.send_to(
                self.owner_of(app, channel),
                ShardMsg::Occupancy {
                    app,
                    channel: channel.into(),
                    from: self.id,
                    occupied,
                },
            );
        }
    }

    fn wants_webhook(&self, app: u32, kind: EventKind) -> bool {
        self.apps
            .by_index(app)
            .is_some_and(|a| a.wants_webhook(kind))
    }

    fn apply_occupancy(&self, app: u32, channel: &str, from: usize, occupied: bool) {
        let mut state = self.webhook_state.borrow_mut();
        if occupied {
            if state.occupied(app, channel, from)
                && self.wants_webhook(app, EventKind::ChannelOccupied)
            {
                drop(state);
                self.emit_webhook(WebhookEvent::new(app, EventKind::ChannelOccupied, channel));
            }
        } else if state.vacated(app, channel, from, Instant::now()) {
            self.webhook_scheduled.notify_one();
        }
    }

    /// Hands `msg` to shard `shard`: handled right here when that is this shard (the local fast path), otherwise
    /// posted in order through the mesh.
    pub fn send_to(&self, shard: usize, msg: ShardMsg) {
        if shard == self.id {
            self.handle_mesh(msg);
        } else {
            self.peers.post(shard, msg);
        }
    }

    /// The shard that keeps the presence members of `channel`.
    pub fn owner_of(&self, app: u32, channel: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (app, channel).hash(&mut h);
        (h.finish() % self.peers.nr_shards() as u64) as usize
    }

    /// Adds a socket (`except`, its socket id) of `user_id` to presence channel `channel` on the owner shard;
    /// answers the `subscription_succeeded` data. The owner announces `member_added` to everyone else.
    pub async fn presence_join(
        &self,
        app: u32,
        channel: &str,
        user_id: &str,
        info: Option<&str>,
        max_members: usize,
        except: &str,
    ) -> Result<String, JoinRefused> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.send_to(
            self.owner_of(app, channel),
            ShardMsg::PresenceJoin {
                app,
                channel: channel.into(),
                user_id: user_id.into(),
                info: info.map(Into::into),
                max_members,
                except: except.into(),
                reply,
            },
        );
        rx.await.unwrap_or(Err(JoinRefused::Unavailable))
    }

    fn apply_presence_join(
        &self,
        app: u32,
        channel: &str,
        user_id: &str,
        info: Option<&str>,
        max_members: usize,
        except: &str,
    ) -> Result<String, JoinRefused> {
        let joined = self
            .presence
            .borrow_mut()
            .join(app, channel, user_id, info, max_members)?;
        if let Some(added) = joined.member_added {
            let news = self
                .webhook_state
                .borrow_mut()
                .member_added(app, channel, user_id);
            if news && self.wants_webhook(app, EventKind::MemberAdded) {
                let mut event = WebhookEvent::new(app, EventKind::MemberAdded, channel);
                event.user_id = Some(user_id.into());
                self.emit_webhook(event);
            }
            let text =
                messages::internal_event("pusher_internal:member_added", Some(channel), &added);
            let frame = ws::encode_text(text.as_bytes());
            self.publish_now(app, vec![(channel.to_string(), frame)], Some(except), false);
        }
        Ok(joined.snapshot)
    }

    /// The shard that keeps `user`'s online count and watchers.
    pub fn user_owner(&self, app: u32, user: &str) -> usize {
        self.owner_of(app, &format!("#user:{user}"))
    }

    /// A socket signed in as `user` with `watchlist`: counts it on the user's owner, registers the watchlist and
    /// answers which watched users are online now.
    pub async fn user_online(&self, app: u32, user: &str, watchlist: &[Box<str>]) -> Vec<Box<str>> {
        self.send_to(
            self.user_owner(app, user),
            ShardMsg::WatchOnline {
                app,
                user: user.into(),
                watchlist: watchlist.to_vec(),
            },
        );
        let mut online = Vec::new();
        for watched in watchlist {
            let (reply, rx) = tokio::sync::oneshot::channel();
            self.send_to(
                self.user_owner(app, watched),
                ShardMsg::Watch {
                    app,
                    watched: watched.clone(),
                    watcher: user.into(),
                    reply,
                },
            );
            if rx.await.unwrap_or(false) {
                online.push(watched.clone());
            }
        }
        online
    }

    /// A socket signed in as `user` went away.
    pub fn user_offline(&self, app: u32, user: &str) {
        self.send_to(
            self.user_owner(app, user),
            ShardMsg::WatchOffline {
                app,
                user: user.into(),
            },
        );
    }

    fn apply_user_online(&self, app: u32, user: &str, watchlist: &[Box<str>]) {
        let transition = self.watch.borrow_mut().socket_online(app, user, watchlist);
        if let Some(t) = transition {
            let data = watchlist::events_json("online", &[user]);
            for watcher in &t.watchers {
                self.send_to_user_everywhere(app, watcher, &data);
            }
        }
    }

    fn apply_user_offline(&self, app: u32, user: &str) {
        let transition = self.watch.borrow_mut().socket_offline(app, user);
        let Some(t) = transition else { return };
        let data = watchlist::events_json("offline", &[user]);
        for watcher in &t.watchers {
            self.send_to_user_everywhere(app, watcher, &data);
        }
        for watched in &t.unwatch {
            self.send_to(
                self.user_owner(app, watched),
                ShardMsg::Unwatch {
                    app,
                    watched: watched.clone(),
                    watcher: user.into(),
                },
            );
        }
    }

    /// Sends `pusher_internal:watchlist_events` with `data` to every socket signed in as `user`, on every shard.
    fn send_to_user_everywhere(&self, app: u32, user: &str, data: &str) {
        let text = messages::internal_event("pusher_internal:watchlist_events", None, data);
        self.send_to_local_user(app, user, &text);
        for peer in self.peers.others() {
            self.peers.post(
                peer,
                ShardMsg::ToUser {
                    app,
                    user: user.into(),
                    text: text.as_str().into(),
                },
            );
        }
    }

    fn send_to_local_user(&self, app: u32, user: &str, text: &str) {
        if let Some(conns) = self.users.borrow().get(&(app, user.into())) {
            for conn in conns {
                conn.send_control(text);
            }
        }
    }

    /// Reports a change in the subscriptions of a non-presence channel to its owner shard.
    pub fn count_subscription(&self, app: u32, channel: &str, delta: i64) {
        self.send_to(
            self.owner_of(app, channel),
            ShardMsg::SubscriptionDelta {
                app,
                channel: channel.into(),
                delta,
            },
        );
    }

    /// Keeps `text` (a channel event) as the last event of cache channel `channel` on its owner shard; resolves
    /// once stored, so a subscriber arriving after the publish was answered gets this event.
    pub async fn cache_store(&self, app: u32, channel: &str, text: &str) {
        let (ack, stored) = tokio::sync::oneshot::channel();
        self.send_to(
            self.owner_of(app, channel),
            ShardMsg::CacheStore {
                app,
                channel: channel.into(),
                text: text.into(),
                ack,
            },
        );
        let _ = stored.await;
    }

    fn apply_cache_store(&self, app: u32, channel: &str, text: &str) {
        let ttl = Duration::from_secs(self.config.channel_limits.cache_ttl);
        self.cache
            .borrow_mut()
            .store(app, channel, text, ttl, Instant::now());
    }

    /// Removes one socket of `user_id` from presence channel `channel` on the owner shard.
    pub fn presence_leave(&self, app: u32, channel: &str, user_id: &str) {
        self.send_to(
            self.owner_of(app, channel),
            ShardMsg::PresenceLeave {
                app,
                channel: channel.into(),
                user_id: user_id.into(),
            },
        );
    }

    fn apply_presence_leave(&self, app: u32, channel: &str, user_id: &str) {
        let removed = self.presence.borrow_mut().leave(app, channel, user_id);
        if let Some(removed) = removed {
            if self.wants_webhook(app, EventKind::MemberRemoved) {
                self.webhook_state.borrow_mut().member_removed(
                    app,
                    channel,
                    user_id,
                    Instant::now(),
                );
                self.webhook_scheduled.notify_one();
            }
            let text =
                messages::internal_event("pusher_internal:member_removed", Some(channel), &removed);
            let frame = ws::encode_text(text.as_bytes());
            self.publish_now(app, vec![(channel.to_string(), frame)], None, false);
        }
    }

    /// Adds a local subscriber. When it is the shard's first for the channel, every other shard is told and
    /// this waits until all have applied it, so an event published anywhere after the client's
    /// `subscription_succeeded` reaches it.
    pub async fn join(&self, app: u32, channel: &str, conn: &Rc<Connection>) {
        self.metrics.subscriptions.inc();
        let first = self
            .channels
            .borrow_mut()
            .add_local(app, channel, conn.clone());
        if first {
            self.report_occupancy(app, channel, true);
        }
        if first && self.peers.nr_shards() > 1 {
            let mut acks = Vec::new();
            for peer in self.peers.others() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.peers.post(
                    peer,
                    ShardMsg::Interest {
                        app,
                        channel: channel.into(),
                        from: self.id,
                        interested: true,
                        ack: Some(tx),
                    },
                );
                acks.push(rx);
            }
            for ack in acks {
                // A peer that is gone (shutdown) cannot route anything anyway.
                let _ = ack.await;
            }
        }
    }

    /// Removes a local subscriber; the last one on this shard withdraws the shard's interest everywhere.
    pub fn leave(&self, app: u32, channel: &str, conn_id: u64) {
        self.metrics.unsubscriptions.inc();
        let last = self
            .channels
            .borrow_mut()
            .remove_local(app, channel, conn_id);
        if last {
            self.report_occupancy(app, channel, false);
        }
        if last {
            for peer in self.peers.others() {
                self.peers.post(
                    peer,
                    ShardMsg::Interest {
                        app,
                        channel: channel.into(),
                        from: self.id,
                        interested: false,
                        ack: None,
                    },
                );
            }
        }
    }

    /// Delivers encoded frames to every subscriber of their channels on every shard: local subscribers now, one
    /// message per interested peer shard. Resolves once every peer has queued the frames for its subscribers,
    /// so that events published one after another (each awaited) reach every client in that order, whichever
    /// shards handled the publishing requests.
    pub async fn publish(&self, app: u32, items: Vec<(String, Bytes)>, except: Option<&str>) {
        for ack in self.publish_now(app, items, except, true) {
            // A peer that stopped (shutdown) has no subscribers left to order against.
            let _ = ack.await;
        }
    }

    /// The synchronous part of [`Shard::publish`]: local delivery and posting to peers, in call order. With
    /// `want_acks`, returns one receiver per peer that answers once it has queued the frames.
    pub fn publish_now(
        &self,
        app: u32,
        items: Vec<(String, Bytes)>,
        except: Option<&str>,
        want_acks: bool,
    ) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        let mut per_peer: Vec<Vec<(Box<str>, Bytes)>> =
            (0..self.peers.nr_shards()).map(|_| Vec::new()).collect();
        {
            let index = self.channels.borrow();
            for (channel, frame) in &items {
                let Some(entry) = index.get(app, channel) else {
                    continue;
                };
                if !entry.local.is_empty() {
                    self.deliver_local(&entry.local, frame.clone(), except);
                }
                let mut remote = entry.remote;
                while remote != 0 {
                    let peer = remote.trailing_zeros() as usize;
                    remote &= remote - 1;
                    if let Some(list) = per_peer.get_mut(peer) {
                        list.push((channel.as_str().into(), frame.clone()));
                    }
                }
            }
        }
        let mut acks = Vec::new();
        for (peer, items) in per_peer.into_iter().enumerate() {
            if items.is_empty() {
                continue;
            }
            let ack = if want_acks {
                let (tx, rx) = tokio::sync::oneshot::channel();
                acks.push(rx);
                Some(tx)
            } else {
                None
            };
            self.peers.post(
                peer,
                ShardMsg::Deliver {
                    app,
                    items,
                    except: except.map(Into::into),
                    ack,
                },
            );
        }
        acks
    }

    fn deliver_local(&self, subscribers: &[Rc<Connection>], frame: Bytes, except: Option<&str>) {
        let frame = Rc::new(frame);
        let now = self.now();
        for conn in subscribers {
            if except.is_some_and(|s| *conn.socket_id == *s) {
                continue;
            }
            conn.send_event(&frame, &self.slow_consumer, now);
        }
    }

    /// Applies a message from another shard.
    pub fn handle_mesh(&self, msg: ShardMsg) {
        match msg {
            ShardMsg::Deliver {
                app,
                items,
                except,
                ack,
            } => {
                let index = self.channels.borrow();
                for (channel, frame) in items {
                    if let Some(entry) = index.get(app, &channel) {
                        if !entry.local.is_empty() {
                            self.deliver_local(&entry.local, frame, except.as_deref());
                        }
                    }
                }
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            ShardMsg::PresenceJoin {
                app,
                channel,
                user_id,
                info,
                max_members,
                except,
                reply,
            } => {
                let result = self.apply_presence_join(
                    app,
                    &channel,
                    &user_id,
                    info.as_deref(),
                    max_members,
                    &except,
                );
                let _ = reply.send(result);
            }
            ShardMsg::PresenceLeave {
                app,
                channel,
                user_id,
            } => self.apply_presence_leave(app, &channel, &user_id),
            ShardMsg::Query { app, query, reply } => {
                let _ = reply.send(self.answer(app, &query));
            }
            ShardMsg::CacheStore {
                app,
                channel,
                text,
                ack,
            } => {
                self.apply_cache_store(app, &channel, &text);
                let _ = ack.send(());
            }
            ShardMsg::SubscriptionDelta {
                app,
                channel,
                delta,
            } => self
                .subscription_counts
                .borrow_mut()
                .apply(app, &channel, delta),
            ShardMsg::WatchOnline {
                app,
                user,
                watchlist,
            } => self.apply_user_online(app, &user, &watchlist),
            ShardMsg::WatchOffline { app, user } => self.apply_user_offline(app, &user),
            ShardMsg::Watch {
                app,
                watched,
                watcher,
                reply,
            } => {
                let online = self.watch.borrow_mut().watch(app, &watched, &watcher);
                let _ = reply.send(online);
            }
            ShardMsg::Unwatch {
                app,
                watched,
                watcher,
            } => self.watch.borrow_mut().unwatch(app, &watched, &watcher),
            ShardMsg::ToUser { app, user, text } => self.send_to_local_user(app, &user, &text),
            ShardMsg::Occupancy {
                app,
                channel,
                from,
                occupied,
            } => self.apply_occupancy(app, &channel, from, occupied),
            ShardMsg::Interest {
                app,
                channel,
                from,
                interested,
                ack,
            } => {
                self.channels
                    .borrow_mut()
                    .set_remote(app, &channel, from, interested);
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
        }
    }

    /// The cached app with REST id `id` (see [`Shard::find_app`] to fill the cache).
    pub fn app_by_id(&self, id: &str) -> Option<Rc<App>> {
        self.apps.by_id(id)
    }

    /// The app `by` names, from this shard's cache or (database drivers) the app database, without blocking
    /// the shard.
    pub async fn find_app(
        &self,
        by: sockudo_io_shard::Lookup,
    ) -> Result<Option<Rc<App>>, crate::app::LookupError> {
        crate::app::lookup::resolve(&self.apps, by).await
    }
}

/// Runs shard `id` to completion on the current (pinned) thread's executor.
///
/// `thread` is the index of the thread that runs it (used for CPU placement and start-up errors). The shard's id
/// is its position in the cross-shard mesh, which glommio orders by executor id, so that "send to shard `s`" and
/// "bit `s` of an interest mask" name the same peer on every shard.
pub async fn run(
    thread: usize,
    seed: ShardSeed,
    ready: ReadySender,
    shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let config = Rc::new((*seed.config).clone());
    let addr = format!("{}:{}", config.host, config.port);
    let listener = match listen(&addr) {
        Ok(l) => l,
        Err(e) => {
            let _ = ready.send((
                thread,
                Err(format!("shard {thread}: cannot listen on {addr}: {e}")),
            ));
            return;
        }
    };
    let (id, senders, receivers) = if seed.nr_shards > 1 {
        match seed.mesh.join().await {
            Ok((s, r)) => (s.peer_id(), Some(s), Some(r)),
            Err(e) => {
                let _ = ready.send((
                    thread,
                    Err(format!(
                        "shard {thread}: cannot join the cross-shard mesh: {e}"
                    )),
                ));
                return;
            }
        }
    } else {
        (0, None, None)
    };
    let apps = Rc::new(seed.apps.registry(seed.io.clone()));
    let max_bytes = config.websocket.max_bytes.unwrap_or(usize::MAX);
    let shard = Rc::new(Shard {
        id,
        channels: RefCell::new(ChannelIndex::new()),
        presence: RefCell::new(PresenceRegistry::default()),
        cache: RefCell::new(cache::ChannelCache::default()),
        watch: RefCell::new(Default::default()),
        subscription_counts: RefCell::new(Default::default()),
        users: RefCell::new(HashMap::new()),
        apps,
        conns: RefCell::new(HashMap::new()),
        next_conn_id: Cell::new(1),
        peers: Peers::start(id, seed.nr_shards, senders),
        read_scratch: RefCell::new(vec![0u8; READ_SCRATCH_BYTES].into_boxed_slice()),
        started: Instant::now(),
        clock: Cell::new(0),
        shutting_down: Cell::new(false),
        slow_consumer: SlowConsumerPolicy {
            limits: QueueLimits {
                max_messages: config.websocket.max_messages,
                max_bytes,
            },
            disconnect: config.websocket.disconnect_on_buffer_full,
        },
        metrics: seed.metrics.shard(id),
        webhook_state: RefCell::new(Default::default()),
        webhook_scheduled: tokio::sync::Notify::new(),
        io: seed.io.clone(),
        io_full_logged_at: Cell::new(None),
        config,
    });
    if let Some(receivers) = receivers {
        spawn_mesh_receivers(&shard, receivers);
    }
    glommio::spawn_local(sweeper::run(shard.clone())).detach();
    glommio::spawn_local(subscription_count::run(shard.clone())).detach();
    glommio::spawn_local(send_delayed_webhooks(shard.clone())).detach();
    tracing::info!(shard = id, %addr, "shard serving");
    let _ = ready.send((id, Ok(())));

    let accept_loop = accept_connections(shard.clone(), listener);
    let stop = async {
        let _ = shutdown.await;
    };
    futures_lite::future::or(accept_loop, stop).await;
    drain(&shard).await;
}

fn spawn_mesh_receivers(shard: &Rc<Shard>, mut receivers: Receivers<ShardMsg>) {
    for (peer, stream) in receivers.streams() {
        let shard = shard.clone();
        glommio::spawn_local(async move {
            use futures_lite::StreamExt;
            let mut stream = stream;
            while let Some(msg) = stream.next().await {
                shard.handle_mesh(msg);
            }
            tracing::debug!(shard = shard.id, peer, "mesh stream from peer ended");
        })
        .detach();
    }
}

/// Listening backlog of each shard's socket: room for connection bursts (churn, reconnect storms).
const LISTEN_BACKLOG: i32 = 4096;

/// This shard's `SO_REUSEPORT` listener on `addr`. `TCP_NODELAY` is set on the listening socket: Linux copies it
/// to every accepted socket, which saves a `setsockopt` per connection.
fn listen(addr: &str) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    use std::os::fd::{FromRawFd, IntoRawFd};
    let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    // SAFETY: a bound, listening TCP socket whose ownership moves into the listener.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

async fn accept_connections(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                glommio::spawn_local(crate::conn::http_conn::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(shard = shard.id, error = %e, "accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Shutdown: close every connection with 4200, give clients the grace period to go, then cut the rest.
async fn drain(shard: &Rc<Shard>) {
    shard.shutting_down.set(true);
    let conns: Vec<Rc<Connection>> = shard.conns.borrow().values().cloned().collect();
    tracing::info!(shard = shard.id, connections = conns.len(), "shutting down");
    for conn in &conns {
        conn.close(
            crate::protocol::codes::RECONNECT,
            "Server shutting down",
            shard.now(),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(shard.config.shutdown_grace_period.max(1));
    while !shard.conns.borrow().is_empty() && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(20)).await;
    }
    for conn in shard.conns.borrow().values() {
        conn.abort();
    }
    // Let readers observe the abort and release their sockets.
    glommio::timer::sleep(Duration::from_millis(20)).await;
    // Nobody comes back now: send the vacates and removals still waiting for their delay.
    let pending = shard.webhook_state.borrow_mut().take_all();
    for event in pending {
        shard.emit_webhook(event);
    }
}

/// Sends `channel_vacated` / `member_removed` once their delay passed, unless cancelled meanwhile. Sleeps on
/// [`Shard::webhook_scheduled`] while nothing waits, so an idle shard has no timer firing.
async fn send_delayed_webhooks(shard: Rc<Shard>) {
    loop {
        let next = shard.webhook_state.borrow().next_due();
        match next {
            None => shard.webhook_scheduled.notified().await,
            Some(due) => {
                let now = Instant::now();
                if due > now {
                    // Every event waits the same delay, so one scheduled meanwhile is due later than `due`.
                    glommio::timer::sleep(due - now).await;
                }
                let events = shard.webhook_state.borrow_mut().take_due(Instant::now());
                for event in events {
                    shard.emit_webhook(event);
                }
            }
        }
    }
}

impl Shard {
    pub(crate) fn tick(&self) {
        self.clock.set(self.started.elapsed().as_secs() as u32);
    }
}

/// True when `channel`'s subscriptions are counted for `conn`'s app: announced with
/// `pusher_internal:subscription_count` or reported by the `subscription_count` webhook.
pub fn counts_subscriptions(conn: &Connection, channel: &str) -> bool {
    use crate::protocol::channel::{classify, ChannelKind};
    (conn.app.limits.enable_subscription_count
        || conn.app.wants_webhook(EventKind::SubscriptionCount))
        && matches!(
            classify(channel).kind,
            ChannelKind::Public | ChannelKind::Private | ChannelKind::PrivateEncrypted
        )
}
