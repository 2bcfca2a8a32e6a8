//! A worker shard: one glommio executor pinned to one CPU, owning its listener, sockets and subscriptions.
//!
//! All state here is `Rc`/`RefCell`, reachable only from the shard's own thread. Other shards are reached by
//! explicit [`mesh::ShardMsg`]s; nothing on the per-message path is shared or locked.

mod accept_errors;
pub mod cache;
pub mod channels;
pub mod cluster;
pub mod fanout;
pub mod liveness;
pub mod mesh;
pub mod presence;
pub mod query;
pub mod resync;
pub mod shared_state;
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
use channels::ChannelIndex;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers};
use glommio::net::TcpListener;
use mesh::{Peers, ShardMsg};
use presence::{JoinRefused, PresenceRegistry};
use sockudo_io_shard::cluster::ClusterIn;
use sockudo_io_shard::{IoRequest, IoSender};
use sockudo_webhooks::{EventKind, WebhookEvent};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
pub use webhooks::Place;

/// Size of the read buffer shared by all connections of a shard.
const READ_SCRATCH_BYTES: usize = 64 * 1024;

/// Signed-in connections by (app index, user id).
pub type UserIndex = HashMap<(u32, Box<str>), Vec<Rc<Connection>>>;

/// Per-core state.
pub struct Shard {
    /// Itself, for tasks a message handler starts (they outlive the `&self` borrow).
    me: std::rc::Weak<Shard>,
    /// This shard's index, 0-based.
    pub id: usize,
    /// The configuration, as loaded.
    pub config: Rc<Config>,
    /// This shard's apps (and its cache of database apps).
    pub apps: Rc<AppRegistry>,
    /// Open WebSocket connections by shard-local id.
    pub conns: RefCell<HashMap<u64, Rc<Connection>>>,
    next_conn_id: Cell<u64>,
    /// With `ssl.enabled`: the TLS configuration new connections start with (replaced on SIGHUP).
    tls: RefCell<Option<std::sync::Arc<rustls::ServerConfig>>>,
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
    /// Set by [`ShardControl::CloseNow`]: end the drain period at once.
    close_now: Cell<bool>,
    /// Wakes the drain sequence when a [`ShardControl`] changes the shard's phase.
    phase_changed: tokio::sync::Notify,
    /// Where the sweeper proves that this shard's executor still runs tasks (systemd watchdog).
    pub liveness: std::sync::Arc<liveness::Liveness>,
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
    /// This shard's share of the cluster, when the node is part of one (adapter other than `local`).
    pub cluster: Option<cluster::Link>,
    /// `delta_compression.*`, resolved.
    pub delta_settings: crate::delta::DeltaSettings,
    /// Tag filters and delta state of this shard's subscriptions.
    pub fanout: RefCell<fanout::Fanout>,
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
    /// This node's cluster membership, when the adapter is not `local`.
    pub cluster: Option<std::sync::Arc<ClusterSeed>>,
    /// Every shard's heartbeat slot.
    pub liveness: std::sync::Arc<liveness::Liveness>,
    /// The TLS configuration, when `ssl.enabled`.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// What every shard needs to take part in the cluster.
#[derive(Debug)]
pub struct ClusterSeed {
    /// This node's id.
    pub node_id: u64,
    /// Each shard's inbound queue from the I/O shard, taken by that shard at start.
    pub inbound: std::sync::Mutex<Vec<Option<tokio::sync::mpsc::Receiver<ClusterIn>>>>,
}

impl ClusterSeed {
    fn take_inbound(&self, shard: usize) -> Option<tokio::sync::mpsc::Receiver<ClusterIn>> {
        self.inbound.lock().ok()?.get_mut(shard)?.take()
    }
}

/// Applies what the I/O shard passes on from the bus, in order.
async fn receive_from_cluster(
    shard: Rc<Shard>,
    mut inbound: tokio::sync::mpsc::Receiver<ClusterIn>,
) {
    while let Some(input) = inbound.recv().await {
        shard.handle_cluster(input);
    }
}

/// What the process (main thread) asks of a running shard.
#[derive(Debug)]
pub enum ShardControl {
    /// Start draining: `/up` and new WebSocket upgrades answer 503, existing connections keep being served until
    /// `shutdown_grace_period` ends (or they all left), then they are closed with 4200 and the shard stops.
    Drain,
    /// End the drain period now (a second SIGTERM/SIGINT).
    CloseNow,
    /// Replace this shard's apps (SIGHUP with the memory driver); connections stay open.
    ReplaceApps(Box<crate::app::AppSeed>),
    /// Serve a connection accepted on the Unix socket listener.
    ServeUnix(std::os::fd::OwnedFd),
    /// New TLS connections use this configuration (SIGHUP re-read the certificate and key); open ones keep theirs.
    ReplaceTls(std::sync::Arc<rustls::ServerConfig>),
}

/// The receiving end of a shard's control channel.
pub type ControlReceiver = tokio::sync::mpsc::UnboundedReceiver<ShardControl>;

/// How a shard thread reports that it is serving (or why it could not start).
pub type ReadySender = std::sync::mpsc::Sender<(usize, Result<(), String>)>;

impl Shard {
    /// Seconds since the shard started, updated by the sweeper once a second.
    pub fn now(&self) -> u32 {
        self.clock.get()
    }

    /// True once draining began: `/up` answers 503, no new WebSocket, no keep-alive.
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
            self.forget_subscription(conn.id, conn.app.index, &sub.name);
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
        self.forget_socket(conn.id);
        self.conns.borrow_mut().remove(&conn.id);
        conn.app.release_connection();
        self.connections_changed(&conn.app);
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
                    from: Place::Shard(self.id),
                    occupied,
                },
            );
        }
    }

    /// Wakes the task that sends delayed webhook events.
    pub fn notify_webhooks_scheduled(&self) {
        self.webhook_scheduled.notify_one();
    }

    fn wants_webhook(&self, app: u32, kind: EventKind) -> bool {
        self.apps
            .by_index(app)
            .is_some_and(|a| a.wants_webhook(kind))
    }

    /// `place` gained its first (`occupied`) or lost its last subscriber of `channel` (on the owner shard).
    /// This node's own transitions are told to the other nodes; `channel_occupied` is sent by the channel's
    /// home node, once for the cluster.
    pub fn apply_occupancy(&self, app: u32, channel: &str, place: Place, occupied: bool) {
        if let Place::Node(node) = place {
            self.heard_remote(resync::Remote::Occupancy, app, channel, node, occupied);
        }
        let mut state = self.webhook_state.borrow_mut();
        let was_here = state.occupied_here(app, channel);
        let fire = if occupied {
            state.occupied(app, channel, place)
        } else {
            if state.vacated(app, channel, place, Instant::now()) {
                self.webhook_scheduled.notify_one();
            }
            false
        };
        let is_here = state.occupied_here(app, channel);
        drop(state);
        if matches!(place, Place::Shard(_)) && was_here != is_here {
            self.announce_occupancy(app, channel, is_here);
        }
        if fire && self.is_home(app, channel) && self.wants_webhook(app, EventKind::ChannelOccupied)
        {
            self.emit_webhook(WebhookEvent::new(app, EventKind::ChannelOccupied, channel));
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
        let mut h = cluster::Fnv::new();
        h.write(&app.to_le_bytes());
        h.write(channel.as_bytes());
        (h.finish() % self.peers.nr_shards() as u64) as usize
    }

    /// Adds `conn` (a socket of `user_id`) to presence channel `channel` on the owner shard. The owner queues
    /// the `subscription_succeeded` snapshot to the socket through the same ordered path as the channel's
    /// member events (see [`ShardMsg::PresenceJoined`]) before announcing `member_added` to everyone else, so
    /// the socket sees its snapshot first and then exactly the changes after it. Resolves once the snapshot
    /// is queued (or the join was refused).
    pub async fn presence_join(
        &self,
        channel: &str,
        user_id: &str,
        info: Option<&str>,
        max_members: usize,
        replay_cache: bool,
        conn: &Connection,
    ) -> Result<(), JoinRefused> {
        let app = conn.app.index;
        let (reply, mut rx) = tokio::sync::oneshot::channel();
        let token = self.cluster.as_ref().map_or(0, |l| l.new_token());
        let owner = self.owner_of(app, channel);
        self.send_to(
            owner,
            ShardMsg::PresenceJoin(mesh::JoinRequest {
                app,
                channel: channel.into(),
                user_id: user_id.into(),
                info: info.map(Into::into),
                max_members,
                socket: mesh::SocketRef {
                    shard: self.id,
                    conn_id: conn.id,
                    socket_id: conn.socket_id.clone(),
                },
                token,
                replay_cache,
                reply,
            }),
        );
        let answer = glommio::timer::timeout(cluster::ECHO_TIMEOUT, async {
            (&mut rx)
                .await
                .map_err(|_| glommio::GlommioError::<()>::IoError(std::io::Error::other("gone")))
        })
        .await;
        match answer {
            Ok(outcome) => outcome,
            Err(_) => {
                // The bus did not bring the barrier back: take the snapshot as the owner knows it now.
                self.metrics.cluster_echo_timeouts.inc();
                self.send_to(owner, ShardMsg::BarrierPassed { token });
                rx.await.unwrap_or(Err(JoinRefused::Unavailable))
            }
        }
    }

    fn apply_presence_join(&self, request: mesh::JoinRequest) {
        let mesh::JoinRequest {
            app,
            channel,
            user_id,
            info,
            max_members,
            socket,
            token,
            replay_cache,
            reply,
        } = request;
        let (channel, user_id, info) = (&*channel, &*user_id, info.as_deref());
        let joined = self
            .presence
            .borrow_mut()
            .join(app, channel, user_id, info, max_members);
        let (outcome, member_added, node_first) = match joined {
            Ok(j) => (Ok(j.snapshot), j.member_added, j.node_first),
            Err(refused) => (Err(refused), None, false),
        };
        if node_first {
            self.announce_presence(app, channel, user_id, info, true);
        }
        let except = socket.socket_id.clone();
        match outcome {
            // In a cluster the snapshot waits for a barrier to go round the bus, so it holds every member
            // announced anywhere before this join.
            Ok(_) if self.loopback() && token != 0 => {
                self.await_presence_barrier(app, channel, socket, token, replay_cache, reply)
            }
            outcome => {
                let cached =
                    (replay_cache && outcome.is_ok()).then(|| self.cached_event(app, channel));
                self.send_to(
                    socket.shard,
                    ShardMsg::PresenceJoined {
                        app,
                        channel: channel.into(),
                        conn_id: socket.conn_id,
                        outcome,
                        cached,
                        reply,
                    },
                )
            }
        }
        if let Some(added) = member_added {
            let news = self.is_home(app, channel)
                && self
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
            self.publish_now(
                app,
                vec![(channel.to_string(), frame)],
                Some(&except),
                false,
            );
        }
    }

    /// On the joining socket's shard: queues the snapshot and a cache channel's replay (then lets the channel's
    /// deliveries reach the socket) and tells the waiting subscribe which way the join went.
    fn apply_presence_joined(
        &self,
        app: u32,
        channel: &str,
        conn_id: u64,
        outcome: Result<String, JoinRefused>,
        cached: Option<Option<String>>,
        reply: tokio::sync::oneshot::Sender<Result<(), JoinRefused>>,
    ) {
        let outcome = outcome.map(|snapshot| {
            let conn = self.conns.borrow().get(&conn_id).cloned();
            if let Some(conn) = conn.filter(|c| c.is_open()) {
                conn.send_control(&messages::internal_event(
                    "pusher_internal:subscription_succeeded",
                    Some(channel),
                    &snapshot,
                ));
                if let Some(cached) = cached {
                    self.send_cache_replay(&conn, channel, cached.as_deref());
                }
            }
            self.channels.borrow_mut().confirm(app, channel, conn_id);
        });
        let _ = reply.send(outcome);
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
            self.announce_online(app, user, true);
            self.tell_watchers(app, user, "online", &t.watchers);
        }
    }

    fn apply_user_offline(&self, app: u32, user: &str) {
        let transition = self.watch.borrow_mut().socket_offline(app, user);
        let Some(t) = transition else { return };
        self.announce_online(app, user, false);
        self.tell_watchers(app, user, "offline", &t.watchers);
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

    /// Sends `pusher_internal:watchlist_events` (`user` went `online` / `offline`) to every socket of this node
    /// signed in as one of `watchers`. Each node tells its own watchers.
    pub fn tell_watchers(&self, app: u32, user: &str, change: &str, watchers: &[Box<str>]) {
        if watchers.is_empty() {
            return;
        }
        let data = watchlist::events_json(change, &[user]);
        let text = messages::internal_event("pusher_internal:watchlist_events", None, &data);
        for watcher in watchers {
            self.send_to_user_on_this_node(app, watcher, &text);
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

    /// Keeps `text` as the channel's last event here (and, when `persist`, in the shared cache: events
    /// another node published were stored there by that node).
    fn apply_cache_store(&self, app: u32, channel: &str, text: &str, persist: bool) {
        if self.config.cache.driver == "none" {
            return;
        }
        let ttl = Duration::from_secs(self.config.channel_limits.cache_ttl);
        self.cache
            .borrow_mut()
            .store(app, channel, text, ttl, Instant::now());
        if persist {
            self.persist_cached(app, channel, text, ttl);
        }
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
        let left = self.presence.borrow_mut().leave(app, channel, user_id);
        if left.node_last {
            self.announce_presence(app, channel, user_id, None, false);
        }
        if let Some(removed) = left.member_removed {
            if self.is_home(app, channel) && self.wants_webhook(app, EventKind::MemberRemoved) {
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
    /// A presence subscriber joins as `pending`: it gets nothing of the channel until its snapshot is queued.
    pub async fn join(&self, app: u32, channel: &str, conn: &Rc<Connection>, pending: bool) {
        self.metrics.subscriptions.inc();
        let first = self
            .channels
            .borrow_mut()
            .add_local(app, channel, conn.clone(), pending);
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
    pub async fn publish<T: Into<fanout::Outgoing>>(
        &self,
        app: u32,
        items: Vec<T>,
        except: Option<&str>,
    ) {
        let items: Vec<fanout::Outgoing> = items.into_iter().map(Into::into).collect();
        if self.loopback() {
            self.publish_through_bus(app, items, except, true).await;
            return;
        }
        self.cluster_publish(app, &items, except);
        for ack in self.publish_now(app, items, except, true) {
            // A peer that stopped (shutdown) has no subscribers left to order against.
            let _ = ack.await;
        }
    }

    /// The synchronous part of [`Shard::publish`]: local delivery and posting to peers, in call order. With
    /// `want_acks`, returns one receiver per peer that answers once it has queued the frames.
    pub fn publish_now<T: Into<fanout::Outgoing>>(
        &self,
        app: u32,
        items: Vec<T>,
        except: Option<&str>,
        want_acks: bool,
    ) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        let mut per_peer: Vec<Vec<fanout::Outgoing>> =
            (0..self.peers.nr_shards()).map(|_| Vec::new()).collect();
        {
            let index = self.channels.borrow();
            for item in items {
                let item: fanout::Outgoing = item.into();
                let Some(entry) = index.get(app, &item.channel) else {
                    continue;
                };
                if !entry.local.is_empty() {
                    self.deliver_local(app, entry, &item, except);
                }
                let mut remote = entry.remote;
                while remote != 0 {
                    let peer = remote.trailing_zeros() as usize;
                    remote &= remote - 1;
                    if let Some(list) = per_peer.get_mut(peer) {
                        list.push(item.clone());
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
                for item in items {
                    if let Some(entry) = index.get(app, &item.channel) {
                        if !entry.local.is_empty() {
                            self.deliver_local(app, entry, &item, except.as_deref());
                        }
                    }
                }
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            ShardMsg::PresenceJoin(request) => self.apply_presence_join(request),
            ShardMsg::BarrierPassed { token } => self.barrier_passed(token),
            ShardMsg::RemotePresence {
                app,
                channel,
                node,
                members,
                present,
            } => self.apply_remote_presence(app, &channel, node, members, present),
            ShardMsg::ClusterAnswer { request, answer } => self.take_answer(request, answer),
            ShardMsg::LoopbackDeliver {
                app,
                token,
                item,
                except,
            } => self.deliver_loopback(app, token, item, except.as_deref()),
            ShardMsg::EchoDelivered { token, acks } => self.echo_delivered(token, acks),
            ShardMsg::RemoteOnline {
                app,
                user,
                node,
                online,
            } => self.apply_remote_online(app, &user, node, online),
            ShardMsg::RemoteCount {
                app,
                channel,
                node,
                count,
            } => {
                self.heard_remote(resync::Remote::Count, app, &channel, node, count > 0);
                self.subscription_counts
                    .borrow_mut()
                    .set_remote(app, &channel, node, count);
            }
            ShardMsg::PresenceJoined {
                app,
                channel,
                conn_id,
                outcome,
                cached,
                reply,
            } => self.apply_presence_joined(app, &channel, conn_id, outcome, cached, reply),
            ShardMsg::PresenceLeave {
                app,
                channel,
                user_id,
            } => self.apply_presence_leave(app, &channel, &user_id),
            ShardMsg::Query { app, query, reply } => {
                let _ = reply.send(self.answer(app, &query));
            }
            ShardMsg::CachePublish {
                app,
                items,
                except,
                ack,
            } => self.apply_cache_publish(app, items, except.as_deref(), ack),
            ShardMsg::CacheReplay {
                app,
                channel,
                socket,
                token,
                reply,
            } => self.apply_cache_replay(app, channel, socket, token, reply),
            ShardMsg::CacheReplayed {
                app,
                channel,
                conn_id,
                cached,
                reply,
            } => self.apply_cache_replayed(app, &channel, conn_id, cached, reply),
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

    /// The current copy of `app` (a connection's app, fixed when it connected), for checks that must follow a
    /// change in the app database within the cache TTL, such as a rotated secret on channel auth and signin: a
    /// fresh cache hit costs one map lookup, a stale entry is looked up again. When the app is gone, disabled
    /// or cannot be looked up now, the connection keeps its own copy (open connections stay).
    pub async fn current_app(&self, app: &Rc<App>) -> Rc<App> {
        match self
            .find_app(sockudo_io_shard::Lookup::Id(app.id.clone()))
            .await
        {
            Ok(Some(current)) if current.enabled => current,
            _ => app.clone(),
        }
    }
}

/// Runs shard `id` to completion on the current (pinned) thread's executor.
///
/// `thread` is the index of the thread that runs it (used for CPU placement and start-up errors). The shard's id
/// is its position in the cross-shard mesh, which glommio orders by executor id, so that "send to shard `s`" and
/// "bit `s` of an interest mask" name the same peer on every shard.
pub async fn run(thread: usize, seed: ShardSeed, ready: ReadySender, control: ControlReceiver) {
    let config = Rc::new((*seed.config).clone());
    // With the Unix socket listener on, connections come from its acceptor (ShardControl::ServeUnix) and, as in
    // Sockudo, the TCP port is not opened.
    let (addr, listener) = if config.unix_socket.enabled {
        (format!("unix:{}", config.unix_socket.path), None)
    } else {
        let addr = format!("{}:{}", config.host, config.port);
        match listen(&addr) {
            Ok(l) => (addr, Some(l)),
            Err(e) => {
                let _ = ready.send((
                    thread,
                    Err(format!("shard {thread}: cannot listen on {addr}: {e}")),
                ));
                return;
            }
        }
    };
    // The plain-HTTP listener that sends clients to https://, bound like the main port.
    let redirect = if config.ssl.enabled && config.ssl.redirect_http && listener.is_some() {
        let addr = format!("{}:{}", config.host, config.ssl.http_port);
        match listen(&addr) {
            Ok(l) => Some(l),
            Err(e) => {
                let _ = ready.send((
                    thread,
                    Err(format!(
                        "shard {thread}: cannot listen on {addr} (ssl.http_port, the https redirect): {e}"
                    )),
                ));
                return;
            }
        }
    } else {
        None
    };
    let (id, senders, receivers) = if seed.nr_shards > 1 {
        // glommio's mesh join can miss the wake-up of an executor that went to sleep just as a peer joined
        // (seen with more shards than CPUs: every shard asleep in io_uring, start-up hung). A short timer keeps
        // the executor polling its remote channels until the join completes.
        let joined = std::rc::Rc::new(Cell::new(false));
        let ticker = {
            let joined = joined.clone();
            glommio::spawn_local(async move {
                while !joined.get() {
                    glommio::timer::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let result = seed.mesh.join().await;
        joined.set(true);
        ticker.await;
        match result {
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
    let shard = Rc::new_cyclic(|me| Shard {
        me: me.clone(),
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
        tls: RefCell::new(seed.tls.clone()),
        peers: Peers::start(id, seed.nr_shards, senders),
        read_scratch: RefCell::new(vec![0u8; READ_SCRATCH_BYTES].into_boxed_slice()),
        started: Instant::now(),
        clock: Cell::new(0),
        shutting_down: Cell::new(false),
        close_now: Cell::new(false),
        phase_changed: tokio::sync::Notify::new(),
        liveness: seed.liveness.clone(),
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
        cluster: seed.cluster.as_ref().map(|c| {
            cluster::Link::new(
                c.node_id,
                id,
                Duration::from_millis(config.adapter.effective_requests_timeout_ms()),
            )
        }),
        delta_settings: crate::delta::DeltaSettings::from_config(&config.delta_compression),
        fanout: RefCell::new(Default::default()),
        config,
    });
    if let Some(inbound) = seed.cluster.as_ref().and_then(|c| c.take_inbound(id)) {
        glommio::spawn_local(receive_from_cluster(shard.clone(), inbound)).detach();
    }
    if let Some(receivers) = receivers {
        spawn_mesh_receivers(&shard, receivers);
    }
    glommio::spawn_local(sweeper::run(shard.clone())).detach();
    glommio::spawn_local(subscription_count::run(shard.clone())).detach();
    glommio::spawn_local(send_delayed_webhooks(shard.clone())).detach();
    tracing::info!(shard = id, %addr, "shard serving");
    let _ = ready.send((id, Ok(())));

    glommio::spawn_local(obey(shard.clone(), control)).detach();
    if let Some(redirect) = redirect {
        glommio::spawn_local(redirect_to_https(shard.clone(), redirect)).detach();
    }
    #[cfg(debug_assertions)]
    test_hooks::wedge_if_asked(id);

    // The listener stays open while draining, so health checks see 503 and a load balancer moves traffic away.
    let accept_loop = async {
        match listener {
            Some(listener) => accept_connections(shard.clone(), listener).await,
            None => futures_lite::future::pending().await,
        }
    };
    futures_lite::future::or(accept_loop, drain_period(&shard)).await;
    close_all(&shard).await;
    shard.liveness.finished(shard.id);
}

/// Applies the process's [`ShardControl`]s. A closed channel (the process is going away) ends the drain at once.
async fn obey(shard: Rc<Shard>, mut control: ControlReceiver) {
    loop {
        match control.recv().await {
            Some(ShardControl::Drain) => {
                shard.shutting_down.set(true);
                shard.phase_changed.notify_one();
            }
            Some(ShardControl::ReplaceApps(seed)) => {
                seed.fill(&shard.apps);
                tracing::debug!(
                    shard = shard.id,
                    apps = seed.app_ids().len(),
                    "apps replaced"
                );
            }
            Some(ShardControl::ServeUnix(fd)) => {
                use std::os::fd::IntoRawFd;
                // SAFETY: an accepted AF_UNIX stream socket whose ownership moves into the stream.
                let stream =
                    unsafe { crate::conn::stream::Stream::unix_from_raw_fd(fd.into_raw_fd()) };
                glommio::spawn_local(crate::conn::http_conn::serve(shard.clone(), stream)).detach();
            }
            Some(ShardControl::ReplaceTls(config)) => {
                *shard.tls.borrow_mut() = Some(config);
                tracing::debug!(shard = shard.id, "TLS certificate replaced");
            }
            Some(ShardControl::CloseNow) | None => {
                shard.shutting_down.set(true);
                shard.close_now.set(true);
                shard.phase_changed.notify_one();
                return;
            }
        }
    }
}

/// Resolves when the shard's connections should be closed: after draining for `shutdown_grace_period`, as soon
/// as no WebSocket is left, or at once on [`ShardControl::CloseNow`].
async fn drain_period(shard: &Rc<Shard>) {
    while !shard.is_shutting_down() {
        shard.phase_changed.notified().await;
    }
    let grace = Duration::from_secs(shard.config.shutdown_grace_period);
    tracing::info!(
        shard = shard.id,
        connections = shard.conns.borrow().len(),
        grace_secs = grace.as_secs(),
        "draining: /up and new WebSocket connections answer 503"
    );
    let deadline = Instant::now() + grace;
    while !shard.close_now.get() && !shard.conns.borrow().is_empty() && Instant::now() < deadline {
        let tick = glommio::timer::sleep(Duration::from_millis(50));
        futures_lite::future::or(tick, shard.phase_changed.notified()).await;
    }
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
    let mut errors = accept_errors::AcceptErrors::default();
    loop {
        match listener.accept().await {
            Ok(stream) => {
                if let accept_errors::Report::Recovered { failures } = errors.accepted() {
                    tracing::warn!(shard = shard.id, failures, "accepting connections again");
                }
                let tls = shard.tls.borrow().clone();
                let stream = match tls {
                    None => crate::conn::stream::Stream::Tcp(stream),
                    Some(config) => match crate::tls::TlsStream::new(stream, config) {
                        Ok(tls) => crate::conn::stream::Stream::Tls(Box::new(tls)),
                        Err(e) => {
                            tracing::warn!(shard = shard.id, error = %e, "cannot start a TLS connection");
                            continue;
                        }
                    },
                };
                // With TLS the handshake happens while the first request is read, so the header timeout bounds it.
                glommio::spawn_local(crate::conn::http_conn::serve(shard.clone(), stream)).detach();
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning, and say so at most every 10 s.
                // Connections that time out in the HTTP phase give their descriptors back.
                if let accept_errors::Report::Failing { suppressed } = errors.failed(Instant::now())
                {
                    tracing::warn!(shard = shard.id, error = %e, suppressed, "accept failed (out of file descriptors?)");
                }
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves `ssl.redirect_http`'s plain-HTTP port: every request gets a 301 to https on the main port.
async fn redirect_to_https(shard: Rc<Shard>, listener: TcpListener) {
    let limits = crate::http::Limits {
        max_header_bytes: shard.config.http_api.max_header_bytes,
        // The body is never read: any request is redirected.
        max_body_bytes: usize::MAX,
    };
    let header_timeout = Duration::from_secs(shard.config.http_api.header_timeout);
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let serve =
                    crate::tls::redirect::serve(stream, shard.config.port, limits, header_timeout);
                glommio::spawn_local(serve).detach();
            }
            Err(e) => {
                tracing::debug!(shard = shard.id, error = %e, "redirect port: accept failed");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long clients get to answer the 4200 close frame before their sockets are cut.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// The end of the drain: close every connection with 4200, give clients [`CLOSE_WAIT`] to go, then cut the rest.
async fn close_all(shard: &Rc<Shard>) {
    shard.shutting_down.set(true);
    let conns: Vec<Rc<Connection>> = shard.conns.borrow().values().cloned().collect();
    tracing::info!(
        shard = shard.id,
        connections = conns.len(),
        "closing connections (4200)"
    );
    for conn in &conns {
        conn.close_with_error(
            crate::protocol::codes::RECONNECT,
            "Server shutting down",
            shard.now(),
        );
    }
    let deadline = Instant::now() + CLOSE_WAIT;
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
        if shard.is_home(event.app, &event.channel) {
            shard.emit_webhook(event);
        }
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
                    if shard.is_home(event.app, &event.channel) {
                        shard.emit_webhook(event);
                    }
                }
            }
        }
    }
}

impl Shard {
    pub(crate) fn tick(&self) {
        let now = Instant::now();
        self.clock
            .set(now.saturating_duration_since(self.started).as_secs() as u32);
        self.liveness.beat(self.id, now);
    }
}

/// Debug builds only: ways for tests to put a shard in states production code must survive.
#[cfg(debug_assertions)]
mod test_hooks {
    use std::time::Duration;

    /// `SOCKUDO_TEST_WEDGE_SHARD=<shard>:<after_ms>` blocks that shard's thread for good after `after_ms`, as a
    /// blocking call or a busy loop would, so the systemd watchdog test can see the pings stop.
    pub fn wedge_if_asked(shard: usize) {
        let Ok(spec) = std::env::var("SOCKUDO_TEST_WEDGE_SHARD") else {
            return;
        };
        let Some((target, after)) = spec.split_once(':') else {
            return;
        };
        let (Ok(target), Ok(after)) = (target.parse::<usize>(), after.parse::<u64>()) else {
            return;
        };
        if target != shard {
            return;
        }
        glommio::spawn_local(async move {
            glommio::timer::sleep(Duration::from_millis(after)).await;
            tracing::warn!(shard, "test hook: wedging this shard");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        })
        .detach();
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
