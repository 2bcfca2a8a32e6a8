//! The cluster as one worker shard sees it: what this node tells the others, and what it does with what they
//! say. The bus itself runs on the I/O shard (`sockudo_io_shard::cluster`), which hands every message of one
//! origin node to one worker shard, in order; that shard applies it, forwarding presence and cache state to
//! the channel's owner shard through the (ordered) mesh.
//!
//! Rules: events are delivered on the node that accepted them first, then published once for every other
//! node (each delivers to its own sockets). Presence is replicated: each node announces its own first / last
//! socket of a user per channel, and every node derives `member_added` / `member_removed` for its sockets
//! from the union, in the order its owner shard applied the announcements. Webhooks that must fire once per
//! cluster are sent by the channel's *home* node, chosen by rendezvous hashing over the live nodes.

use super::fanout::{EventDetails, Outgoing};
use super::mesh::ShardMsg;
use super::presence::Transition;
use super::query::{Answer, Query};
use super::resync::Remote;
use super::Shard;
use crate::protocol::messages;
use crate::ws;
use sockudo_io_shard::cluster::wire::{
    ChannelMembers, ClusterMsg, EventDetails as WireEventDetails, RemoteAnswer, RemoteQuery,
    WireMember,
};
use sockudo_io_shard::cluster::{ClusterIn, ClusterOut};
use sockudo_io_shard::IoRequest;
use sockudo_webhooks::{EventKind, WebhookEvent};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// A shard's share of the cluster state.
#[derive(Debug)]
pub struct Link {
    /// This node's id.
    pub node_id: u64,
    /// Other live nodes.
    peers: RefCell<BTreeSet<u64>>,
    /// Request numbers of this shard's queries (the shard id in the top byte).
    next_request: Cell<u64>,
    /// Answers awaited, by request number.
    waiting: RefCell<HashMap<u64, tokio::sync::mpsc::UnboundedSender<RemoteAnswer>>>,
    /// How long a cluster-wide REST read waits for the other nodes.
    pub requests_timeout: Duration,
    /// The bus brings this node's messages back (see [`Shard::loopback`]).
    bus_ready: Cell<bool>,
    /// Wait tokens of this shard's events going round the bus (the shard id in the top byte).
    next_token: Cell<u64>,
    /// Publishes waiting for their event to be delivered on this node, by token.
    echo_waiting: RefCell<HashMap<u64, tokio::sync::oneshot::Sender<EchoAcks>>>,
    /// Tokens of this node's events delivered here (by this shard), so a copy is delivered once.
    seen: RefCell<SeenTokens>,
    /// Presence joins (on channels this shard owns) waiting for their barrier, by token.
    joins: RefCell<HashMap<u64, PendingJoin>>,
    /// Cache replays (of channels whose home is this shard) waiting for their barrier, by token.
    cache_waits: RefCell<HashMap<u64, PendingReplay>>,
    /// When each piece of other nodes' state held here was last announced (see [`super::resync`]).
    pub(super) freshness: RefCell<super::resync::Freshness>,
}

/// A presence join whose snapshot waits for its barrier.
#[derive(Debug)]
struct PendingJoin {
    app: u32,
    channel: Box<str>,
    socket: super::mesh::SocketRef,
    replay_cache: bool,
    reply: tokio::sync::oneshot::Sender<Result<(), super::presence::JoinRefused>>,
}

/// A cache channel's replay that waits for its barrier.
#[derive(Debug)]
struct PendingReplay {
    app: u32,
    channel: Box<str>,
    socket: super::mesh::SocketRef,
    reply: tokio::sync::oneshot::Sender<()>,
}

/// Answers of the other shards of this node once they queued an event.
type EchoAcks = Vec<tokio::sync::oneshot::Receiver<()>>;

/// How long a publish waits for its event to come back from the bus before it is delivered here directly.
pub const ECHO_TIMEOUT: Duration = Duration::from_secs(2);

/// Tokens delivered recently; a token is forgotten after [`SEEN_FOR`].
#[derive(Debug, Default)]
struct SeenTokens {
    set: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<(std::time::Instant, u64)>,
}

/// How long a delivered token is remembered: far longer than [`ECHO_TIMEOUT`] plus any bus delay.
const SEEN_FOR: Duration = Duration::from_secs(60);

impl SeenTokens {
    /// True the first time `token` is seen.
    fn first(&mut self, token: u64, now: std::time::Instant) -> bool {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) > SEEN_FOR)
        {
            if let Some((_, old)) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        if !self.set.insert(token) {
            return false;
        }
        self.order.push_back((now, token));
        true
    }
}

/// The routing hash of a channel's events: the same on every node and in every build, never 0.
pub fn route_of(app_id: &str, channel: &str) -> u64 {
    let mut h = Fnv::new();
    h.write(app_id.as_bytes());
    h.write(&[0]);
    h.write(channel.as_bytes());
    h.finish().max(1)
}

impl Link {
    /// The link of shard `shard` on node `node_id`.
    pub fn new(node_id: u64, shard: usize, requests_timeout: Duration) -> Link {
        Link {
            node_id,
            peers: RefCell::new(BTreeSet::new()),
            next_request: Cell::new((shard as u64) << 56),
            waiting: RefCell::new(HashMap::new()),
            requests_timeout,
            bus_ready: Cell::new(false),
            next_token: Cell::new((shard as u64) << 56),
            echo_waiting: RefCell::new(HashMap::new()),
            seen: RefCell::new(SeenTokens::default()),
            joins: RefCell::new(HashMap::new()),
            cache_waits: RefCell::new(HashMap::new()),
            freshness: RefCell::new(Default::default()),
        }
    }

    /// A fresh token of this shard (the shard id in the top byte).
    pub fn new_token(&self) -> u64 {
        let token = self.next_token.get() + 1;
        self.next_token.set(token);
        token
    }

    /// Number of other live nodes.
    pub fn peer_count(&self) -> usize {
        self.peers.borrow().len()
    }

    /// True when this node is the one that sends the once-per-cluster webhooks of `channel`.
    pub fn is_home(&self, app_id: &str, channel: &str) -> bool {
        let score = |node: u64| {
            let mut h = Fnv::new();
            h.write(&node.to_le_bytes());
            h.write(app_id.as_bytes());
            h.write(&[0]);
            h.write(channel.as_bytes());
            h.finish()
        };
        let mine = score(self.node_id);
        self.peers
            .borrow()
            .iter()
            .all(|&p| (score(p), p) < (mine, self.node_id))
    }
}

/// FNV-1a, 64 bit: a hash that is the same in every build and process (owner shards, home nodes).
pub struct Fnv(u64);

impl Fnv {
    /// The offset basis.
    pub fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    /// Mixes in `bytes`.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// The hash.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Self {
        Fnv::new()
    }
}

impl Shard {
    /// Sends `msg` to every other node; nothing when this node runs alone.
    pub fn cluster_broadcast(&self, msg: &ClusterMsg) {
        if self.cluster.is_some() {
            self.cluster_send(ClusterOut::Broadcast(msg.encode()));
        }
    }

    /// Sends `msg` about presence channel `channel` to every node, routed like the channel's events, so that
    /// on every node all presence messages of the channel (this node's barriers included) are applied in the
    /// bus's order.
    fn cluster_send_routed(&self, app_id: &str, channel: &str, msg: &ClusterMsg) {
        if self.cluster.is_some() {
            self.cluster_send(ClusterOut::Event {
                route: route_of(app_id, channel),
                body: msg.encode(),
            });
        }
    }

    fn cluster_send(&self, out: ClusterOut) {
        if let Some(io) = &self.io {
            if !io.send(IoRequest::Cluster(out)) {
                self.metrics.cluster_dropped_outbound.inc();
            }
        }
    }

    /// The id of the app in slot `app`, from the process-wide slot table: a shard that never looked the app up
    /// (a database app manager caches per shard) still knows it.
    pub(super) fn app_id(&self, app: u32) -> Option<String> {
        self.apps.slots.get(app).map(|s| s.id.to_string())
    }

    /// The slot of app `app_id` named by another node: a configured app (memory driver), or with a database
    /// driver any id (its slot is stable; its subscribers, if any, are in the channel index by slot).
    fn slot_of(&self, app_id: &str) -> Option<u32> {
        self.apps.by_id(app_id).map(|a| a.index).or_else(|| {
            self.apps
                .is_database()
                .then(|| self.apps.slots.intern(app_id).slot)
        })
    }

    /// True when events go round the bus: this node is in a cluster and its own messages come back. Then
    /// every node, this one included, delivers a channel's events in the order the bus gave them, so one
    /// publisher's accepted requests reach every subscriber in the order they were answered, whatever node
    /// took each. While the bus is down, events are delivered here first (and published for later).
    pub fn loopback(&self) -> bool {
        self.cluster.as_ref().is_some_and(|l| l.bus_ready.get())
    }

    fn event_msg(
        &self,
        app_id: &str,
        item: &Outgoing,
        except: Option<&str>,
        token: u64,
    ) -> ClusterMsg {
        ClusterMsg::Event {
            app_id: app_id.to_string(),
            channel: item.channel.to_string(),
            frame: item.frame.clone(),
            details: item.event.as_ref().map(|d| WireEventDetails {
                name: d.name.to_string(),
                tags: d.tags.as_ref().map(|t| {
                    t.pairs()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect()
                }),
                track: d.track,
            }),
            except: except.map(Into::into),
            token,
        }
    }

    /// Tells the other nodes about events this node delivered already (the bus is down, or no cluster).
    pub fn cluster_publish(&self, app: u32, items: &[Outgoing], except: Option<&str>) {
        let (Some(_), Some(app_id)) = (&self.cluster, self.app_id(app)) else {
            return;
        };
        for item in items {
            let body = self.event_msg(&app_id, item, except, 0).encode();
            self.cluster_send(ClusterOut::Event {
                route: route_of(&app_id, &item.channel),
                body,
            });
        }
    }

    /// Publishes `items` through the bus; with `wait`, resolves once this node delivered its own copies (so
    /// the next request of the same publisher is ordered after them everywhere). A copy the bus does not
    /// bring back within [`ECHO_TIMEOUT`] is delivered here directly, once.
    pub async fn publish_through_bus(
        &self,
        app: u32,
        items: Vec<Outgoing>,
        except: Option<&str>,
        wait: bool,
    ) {
        let (Some(link), Some(app_id)) = (&self.cluster, self.app_id(app)) else {
            return;
        };
        let mut waits = Vec::new();
        for item in items {
            let token = link.new_token();
            let route = route_of(&app_id, &item.channel);
            let body = self.event_msg(&app_id, &item, except, token).encode();
            if wait {
                let (tx, rx) = tokio::sync::oneshot::channel();
                link.echo_waiting.borrow_mut().insert(token, tx);
                waits.push((token, route, item, rx));
            }
            self.cluster_send(ClusterOut::Event { route, body });
        }
        for (token, route, item, rx) in waits {
            let came_back = glommio::timer::timeout(ECHO_TIMEOUT, async {
                rx.await.map_err(|_| {
                    glommio::GlommioError::<()>::IoError(std::io::Error::other("dropped"))
                })
            })
            .await;
            if let Ok(acks) = came_back {
                for ack in acks {
                    let _ = ack.await;
                }
                continue;
            }
            self.metrics.cluster_echo_timeouts.inc();
            let (tx, rx) = tokio::sync::oneshot::channel();
            link.echo_waiting.borrow_mut().insert(token, tx);
            self.send_to(
                (route % self.peers.nr_shards() as u64) as usize,
                ShardMsg::LoopbackDeliver {
                    app,
                    token,
                    item,
                    except: except.map(Into::into),
                },
            );
            if let Ok(acks) = rx.await {
                for ack in acks {
                    let _ = ack.await;
                }
            }
        }
    }

    /// This node's own event, back from the bus (or given up on): delivered here once, then the waiting
    /// shard is told.
    pub fn deliver_loopback(&self, app: u32, token: u64, item: Outgoing, except: Option<&str>) {
        let Some(link) = &self.cluster else { return };
        let waiter = (token >> 56) as usize;
        let acks = if link
            .seen
            .borrow_mut()
            .first(token, std::time::Instant::now())
        {
            self.store_if_cached(app, &item, true);
            self.publish_now(app, vec![item], except, true)
        } else {
            Vec::new()
        };
        self.send_to(waiter, ShardMsg::EchoDelivered { token, acks });
    }

    /// A cache channel's event received from the bus, on the channel's home (the worker its route names):
    /// kept as the channel's last before it is delivered (see [`super::cache`]).
    fn store_if_cached(&self, app: u32, item: &Outgoing, persist: bool) {
        // REST events only: client events carry details too, and are never cached.
        let from_rest = item
            .event
            .as_ref()
            .is_some_and(|d| !d.name.starts_with("client-"));
        if from_rest && crate::protocol::channel::classify(&item.channel).cache {
            self.store_cached(app, item, persist);
        }
    }

    /// Holds a presence join's snapshot until a barrier for the channel comes back from the bus.
    pub fn await_presence_barrier(
        &self,
        app: u32,
        channel: &str,
        socket: super::mesh::SocketRef,
        token: u64,
        replay_cache: bool,
        reply: tokio::sync::oneshot::Sender<Result<(), super::presence::JoinRefused>>,
    ) {
        let (Some(link), Some(app_id)) = (&self.cluster, self.app_id(app)) else {
            return;
        };
        link.joins.borrow_mut().insert(
            token,
            PendingJoin {
                app,
                channel: channel.into(),
                socket,
                replay_cache,
                reply,
            },
        );
        let body = ClusterMsg::Barrier {
            app_id: app_id.clone(),
            channel: channel.into(),
            token,
        }
        .encode();
        self.cluster_send(ClusterOut::Event {
            route: route_of(&app_id, channel),
            body,
        });
    }

    /// Holds a cache channel's replay (on its home) until a barrier for the channel comes back from the bus.
    pub fn await_cache_barrier(
        &self,
        app: u32,
        channel: Box<str>,
        socket: super::mesh::SocketRef,
        token: u64,
        reply: tokio::sync::oneshot::Sender<()>,
    ) {
        let (Some(link), Some(app_id)) = (&self.cluster, self.app_id(app)) else {
            return;
        };
        let body = ClusterMsg::Barrier {
            app_id: app_id.clone(),
            channel: channel.to_string(),
            token,
        }
        .encode();
        link.cache_waits.borrow_mut().insert(
            token,
            PendingReplay {
                app,
                channel: channel.clone(),
                socket,
                reply,
            },
        );
        self.cluster_send(ClusterOut::Event {
            route: route_of(&app_id, &channel),
            body,
        });
    }

    /// A barrier came back (or its waiter gave up waiting): the cache replay or presence snapshot waiting for
    /// it is answered, as of now.
    pub fn barrier_passed(&self, token: u64) {
        let Some(link) = &self.cluster else { return };
        let replay = link.cache_waits.borrow_mut().remove(&token);
        if let Some(r) = replay {
            self.answer_cache_replay(r.app, r.channel, r.socket, r.reply);
            return;
        }
        let Some(join) = link.joins.borrow_mut().remove(&token) else {
            return;
        };
        let snapshot = self.presence.borrow().snapshot(join.app, &join.channel);
        let cached = join
            .replay_cache
            .then(|| self.cached_event(join.app, &join.channel));
        self.send_to(
            join.socket.shard,
            ShardMsg::PresenceJoined {
                app: join.app,
                channel: join.channel,
                conn_id: join.socket.conn_id,
                outcome: Ok(snapshot),
                cached,
                reply: join.reply,
            },
        );
    }

    /// One of this shard's events was delivered on this node; `acks` answer once the other shards queued it.
    pub fn echo_delivered(&self, token: u64, acks: Vec<tokio::sync::oneshot::Receiver<()>>) {
        if let Some(link) = &self.cluster {
            if let Some(tx) = link.echo_waiting.borrow_mut().remove(&token) {
                let _ = tx.send(acks);
            }
        }
    }

    /// True when this node sends the once-per-cluster webhooks of `channel` (always, alone).
    pub fn is_home(&self, app: u32, channel: &str) -> bool {
        match (&self.cluster, self.app_id(app)) {
            (Some(link), Some(app_id)) => link.is_home(&app_id, channel),
            _ => true,
        }
    }

    /// Announces that `user` is (or no longer is) present on this node in presence channel `channel`.
    pub fn announce_presence(
        &self,
        app: u32,
        channel: &str,
        user: &str,
        info: Option<&str>,
        present: bool,
    ) {
        if self.cluster.is_none() {
            return;
        }
        let Some(app_id) = self.app_id(app) else {
            return;
        };
        self.cluster_send_routed(
            &app_id,
            channel,
            &ClusterMsg::Presence {
                app_id: app_id.clone(),
                channel: channel.into(),
                member: WireMember {
                    user_id: user.into(),
                    info: info.map(Into::into),
                },
                present,
            },
        );
    }

    /// Tells the other nodes this node's open connections per app (all of them with `all`, else those that
    /// changed since last told), so `max_connections` counts the whole cluster. Run by shard 0 only.
    pub fn announce_connections(&self, all: bool) {
        if self.cluster.is_none() {
            return;
        }
        for slot in self.apps.slots.all() {
            let now = slot.connections.load(std::sync::atomic::Ordering::Relaxed);
            let told = slot
                .announced
                .swap(now, std::sync::atomic::Ordering::Relaxed);
            if now != told || (all && now > 0) {
                self.cluster_broadcast(&ClusterMsg::Connections {
                    app_id: slot.id.to_string(),
                    count: now,
                });
            }
        }
    }

    /// A connection of `app` opened or closed here: an app with `max_connections` tells the other nodes at once
    /// (the others wait for the 100 ms announcement), so the limit holds for the cluster as closely as the bus
    /// allows.
    pub fn connections_changed(&self, app: &crate::app::App) {
        if self.cluster.is_none() || app.limits.max_connections == 0 {
            return;
        }
        let count = app.connection_count();
        if let Some(slot) = self.apps.slots.get(app.index) {
            slot.announced
                .store(count, std::sync::atomic::Ordering::Relaxed);
        }
        self.cluster_broadcast(&ClusterMsg::Connections {
            app_id: app.id.clone(),
            count,
        });
    }

    /// Tells the other nodes that this node gained its first or lost its last socket signed in as `user`.
    pub fn announce_online(&self, app: u32, user: &str, online: bool) {
        if !self
            .apps
            .by_index(app)
            .is_some_and(|a| a.limits.enable_watchlist_events)
        {
            return;
        }
        self.broadcast_for_app(app, |app_id| ClusterMsg::Online {
            app_id,
            user: user.into(),
            online,
        });
    }

    /// Sends the message `make` builds from app `app`'s id to every other node; nothing alone (then `make` is
    /// not called) or for an app without an id.
    fn broadcast_for_app(&self, app: u32, make: impl FnOnce(String) -> ClusterMsg) {
        if self.cluster.is_none() {
            return;
        }
        if let Some(app_id) = self.app_id(app) {
            self.cluster_broadcast(&make(app_id));
        }
    }

    /// Another node's online announcement, on the user's owner shard.
    pub fn apply_remote_online(&self, app: u32, user: &str, node: u64, online: bool) {
        self.heard_remote(Remote::Online, app, user, node, online);
        let watchers = self.watch.borrow_mut().set_remote(app, user, node, online);
        self.tell_watchers(
            app,
            user,
            if online { "online" } else { "offline" },
            &watchers,
        );
    }

    /// Tells the other nodes this node's subscriptions of `channel` (owner shard, coalesced).
    pub fn announce_count(&self, app: u32, channel: &str, count: i64) {
        self.broadcast_for_app(app, |app_id| ClusterMsg::Count {
            app_id,
            channel: channel.into(),
            count: count.max(0) as u64,
        });
    }

    /// Tells the other nodes that this node gained its first or lost its last subscriber of `channel`.
    pub fn announce_occupancy(&self, app: u32, channel: &str, occupied: bool) {
        self.broadcast_for_app(app, |app_id| ClusterMsg::Occupancy {
            app_id,
            channel: channel.into(),
            occupied,
        });
    }

    /// Applies a member change of the union on this (owner) shard: member events to this node's sockets, and
    /// the webhook when this node is the channel's home.
    pub fn apply_presence_transition(&self, app: u32, channel: &str, change: Transition) {
        let (event, data, user) = match &change {
            Transition::Added(data) => ("pusher_internal:member_added", data, user_of(data)),
            Transition::Removed(data) => ("pusher_internal:member_removed", data, user_of(data)),
        };
        if self.is_home(app, channel) {
            match &change {
                Transition::Added(_) => {
                    let news = self
                        .webhook_state
                        .borrow_mut()
                        .member_added(app, channel, &user);
                    if news && self.wants_webhook(app, EventKind::MemberAdded) {
                        let mut hook = WebhookEvent::new(app, EventKind::MemberAdded, channel);
                        hook.user_id = Some(user.as_str().into());
                        self.emit_webhook(hook);
                    }
                }
                Transition::Removed(_) => {
                    if self.wants_webhook(app, EventKind::MemberRemoved) {
                        self.webhook_state.borrow_mut().member_removed(
                            app,
                            channel,
                            &user,
                            std::time::Instant::now(),
                        );
                        self.notify_webhooks_scheduled();
                    }
                }
            }
        }
        let text = messages::internal_event(event, Some(channel), data);
        let frame = ws::encode_text(text.as_bytes());
        self.publish_now(app, vec![(channel.to_string(), frame)], None, false);
    }

    /// Handles what the I/O shard passed on from the bus.
    pub fn handle_cluster(self: &Rc<Self>, input: ClusterIn) {
        let Some(link) = &self.cluster else { return };
        match input {
            ClusterIn::NodeUp(node) => {
                link.peers.borrow_mut().insert(node);
            }
            ClusterIn::NodeGone(node) => {
                link.peers.borrow_mut().remove(&node);
                if self.id == 0 {
                    for slot in self.apps.slots.all() {
                        slot.set_remote_connections(node, 0);
                    }
                }
                link.freshness.borrow_mut().forget_node(node);
                let gone = self.presence.borrow_mut().drop_node(node);
                for (app, channel, change) in gone {
                    self.apply_presence_transition(app, &channel, change);
                }
                self.subscription_counts.borrow_mut().drop_node(node);
                let offline = self.watch.borrow_mut().drop_node(node);
                for (app, user, watchers) in offline {
                    self.tell_watchers(app, &user, "offline", &watchers);
                }
                let vacated = self
                    .webhook_state
                    .borrow_mut()
                    .drop_node(node, std::time::Instant::now());
                if vacated > 0 {
                    self.notify_webhooks_scheduled();
                }
            }
            ClusterIn::Bus(ready) => link.bus_ready.set(ready),
            ClusterIn::Resync => self.begin_resync(),
            ClusterIn::SyncRequested => {
                self.publish_sync_part();
                if self.id == 0 {
                    self.announce_connections(true);
                }
                for (app, channel, count) in self.subscription_counts.borrow().local_totals() {
                    self.announce_count(app, &channel, count);
                }
                for (app, channel) in self.webhook_state.borrow().occupied_channels() {
                    self.announce_occupancy(app, &channel, true);
                }
                for (app, user) in self.watch.borrow().local_online() {
                    self.announce_online(app, &user, true);
                }
            }
            ClusterIn::Message { origin, body } => match ClusterMsg::decode(&body) {
                Ok(msg) => self.apply_remote(origin, msg),
                Err(e) => {
                    tracing::warn!(error = %e, origin = format_args!("{origin:016x}"), "undecodable cluster message dropped");
                }
            },
        }
    }

    /// This shard's presence members (of the channels it owns) for a node that asked for our state.
    fn publish_sync_part(&self) {
        let channels: Vec<ChannelMembers> = self
            .presence
            .borrow()
            .local_members()
            .into_iter()
            .filter_map(|(app, channel, members)| {
                Some(ChannelMembers {
                    app_id: self.app_id(app)?,
                    channel: channel.to_string(),
                    members: members
                        .into_iter()
                        .map(|(user_id, info)| WireMember { user_id, info })
                        .collect(),
                })
            })
            .collect();
        // One message per channel, routed like the channel's announcements (one order per channel).
        for c in channels {
            let (app_id, channel) = (c.app_id.clone(), c.channel.clone());
            self.cluster_send_routed(
                &app_id,
                &channel,
                &ClusterMsg::Sync {
                    part: self.id as u16,
                    parts: self.peers.nr_shards() as u16,
                    channels: vec![c],
                },
            );
        }
    }

    fn apply_remote(self: &Rc<Self>, origin: u64, msg: ClusterMsg) {
        let app_of = |app_id: &str| self.slot_of(app_id);
        let mine = self.cluster.as_ref().is_some_and(|l| l.node_id == origin);
        if mine {
            // Only events and barriers come back to their own node; presence state was applied when made.
            match msg {
                ClusterMsg::Event { .. } => {}
                ClusterMsg::Barrier {
                    app_id,
                    channel,
                    token,
                } => {
                    let waits_here = self
                        .cluster
                        .as_ref()
                        .is_some_and(|l| l.cache_waits.borrow().contains_key(&token));
                    if waits_here {
                        self.barrier_passed(token);
                    } else if let Some(app) = app_of(&app_id) {
                        self.send_to(
                            self.owner_of(app, &channel),
                            ShardMsg::BarrierPassed { token },
                        );
                    }
                    return;
                }
                _ => return,
            }
        }
        match msg {
            ClusterMsg::Event {
                app_id,
                channel,
                frame,
                details,
                except,
                token,
            } => {
                let Some(app) = app_of(&app_id) else { return };
                let item = Outgoing {
                    channel: channel.into(),
                    frame,
                    event: details.map(|d| {
                        Arc::new(EventDetails {
                            name: d.name.into(),
                            tags: d.tags.and_then(|pairs| {
                                crate::tags::Tags::new(pairs.into_iter().collect()).ok()
                            }),
                            track: d.track,
                        })
                    }),
                };
                let mine = self.cluster.as_ref().is_some_and(|l| l.node_id == origin);
                if !mine {
                    self.metrics.cluster_events_received.inc();
                    // The publishing node wrote it to the shared cache.
                    self.store_if_cached(app, &item, false);
                    self.publish_now(app, vec![item], except.as_deref(), false);
                } else if token != 0 {
                    self.deliver_loopback(app, token, item, except.as_deref());
                }
            }
            ClusterMsg::Presence {
                app_id,
                channel,
                member,
                present,
            } => {
                if let Some(app) = app_of(&app_id) {
                    self.send_to(
                        self.owner_of(app, &channel),
                        ShardMsg::RemotePresence {
                            app,
                            channel: channel.into(),
                            node: origin,
                            members: vec![(member.user_id, member.info)],
                            present: Some(present),
                        },
                    );
                }
            }
            ClusterMsg::Sync { channels, .. } => {
                for c in channels {
                    if let Some(app) = app_of(&c.app_id) {
                        self.send_to(
                            self.owner_of(app, &c.channel),
                            ShardMsg::RemotePresence {
                                app,
                                channel: c.channel.into(),
                                node: origin,
                                members: c
                                    .members
                                    .into_iter()
                                    .map(|m| (m.user_id, m.info))
                                    .collect(),
                                present: None,
                            },
                        );
                    }
                }
            }
            ClusterMsg::Online {
                app_id,
                user,
                online,
            } => {
                if let Some(app) = app_of(&app_id) {
                    self.send_to(
                        self.user_owner(app, &user),
                        ShardMsg::RemoteOnline {
                            app,
                            user: user.into(),
                            node: origin,
                            online,
                        },
                    );
                }
            }
            ClusterMsg::TerminateUser { app_id, user } => {
                if let Some(app) = app_of(&app_id) {
                    let shard = Rc::clone(self);
                    glommio::spawn_local(async move {
                        let _ = shard.ask_all(app, Query::TerminateUser { user }).await;
                    })
                    .detach();
                }
            }
            ClusterMsg::Query {
                request,
                app_id,
                query,
            } => {
                let Some(app) = app_of(&app_id) else { return };
                let shard = Rc::clone(self);
                glommio::spawn_local(async move {
                    let local = match query {
                        RemoteQuery::Channels { prefix } => Query::Channels { prefix },
                        RemoteQuery::SubscriptionCount { channel } => {
                            Query::SubscriptionCount { channel }
                        }
                    };
                    let Ok(answers) = shard.ask_all(app, local).await else {
                        return;
                    };
                    let answer = to_remote(answers);
                    shard.cluster_send(ClusterOut::ToNode(
                        origin,
                        ClusterMsg::Answer {
                            to: origin,
                            request,
                            answer,
                        }
                        .encode(),
                    ));
                })
                .detach();
            }
            ClusterMsg::Answer {
                to,
                request,
                answer,
            } => {
                let Some(link) = &self.cluster else { return };
                if to != link.node_id {
                    return;
                }
                let shard = (request >> 56) as usize;
                if shard == self.id {
                    self.take_answer(request, answer);
                } else {
                    self.send_to(shard, ShardMsg::ClusterAnswer { request, answer });
                }
            }
            ClusterMsg::Count {
                app_id,
                channel,
                count,
            } => {
                if let Some(app) = app_of(&app_id) {
                    self.send_to(
                        self.owner_of(app, &channel),
                        ShardMsg::RemoteCount {
                            app,
                            channel: channel.into(),
                            node: origin,
                            count: count.min(i64::MAX as u64) as i64,
                        },
                    );
                }
            }
            ClusterMsg::Occupancy {
                app_id,
                channel,
                occupied,
            } => {
                if let Some(app) = app_of(&app_id) {
                    self.send_to(
                        self.owner_of(app, &channel),
                        ShardMsg::Occupancy {
                            app,
                            channel: channel.into(),
                            from: super::Place::Node(origin),
                            occupied,
                        },
                    );
                }
            }
            ClusterMsg::Connections { app_id, count } => {
                self.apps
                    .slots
                    .intern(&app_id)
                    .set_remote_connections(origin, count);
            }
            ClusterMsg::Hello
            | ClusterMsg::Bye
            | ClusterMsg::Heartbeat
            | ClusterMsg::Barrier { .. } => {}
        }
    }

    /// An answer to one of this shard's cluster queries.
    pub fn take_answer(&self, request: u64, answer: RemoteAnswer) {
        let Some(link) = &self.cluster else { return };
        if let Some(tx) = link.waiting.borrow().get(&request) {
            let _ = tx.send(answer);
        }
    }

    /// Applies another node's presence announcement (`present: Some`) or sync (`None`) on this owner shard.
    pub fn apply_remote_presence(
        &self,
        app: u32,
        channel: &str,
        node: u64,
        members: Vec<(String, Option<String>)>,
        present: Option<bool>,
    ) {
        let changes = match present {
            Some(present) => {
                let Some((user, info)) = members.into_iter().next() else {
                    return;
                };
                self.presence
                    .borrow_mut()
                    .set_remote(app, channel, node, &user, info.as_deref(), present)
                    .into_iter()
                    .collect()
            }
            None => self
                .presence
                .borrow_mut()
                .replace_remote(app, channel, node, &members),
        };
        for change in changes {
            self.apply_presence_transition(app, channel, change);
        }
        let held = self.presence.borrow().node_present(app, channel, node);
        self.heard_remote(Remote::Presence, app, channel, node, held);
    }

    /// `query` answered by every shard of this node and every other live node. A node that does not answer
    /// within `requests_timeout` is left out (the answer covers the nodes that did).
    pub async fn ask_cluster(&self, app: u32, query: Query) -> Result<Vec<Answer>, ()> {
        let remote_query = match &query {
            Query::Channels { prefix } => Some(RemoteQuery::Channels {
                prefix: prefix.clone(),
            }),
            Query::SubscriptionCount { channel } => Some(RemoteQuery::SubscriptionCount {
                channel: channel.clone(),
            }),
            _ => None,
        };
        let mut answers = self.ask_all(app, query).await?;
        let (Some(link), Some(remote_query), Some(app_id)) =
            (&self.cluster, remote_query, self.app_id(app))
        else {
            return Ok(answers);
        };
        let expected = link.peer_count();
        if expected == 0 {
            return Ok(answers);
        }
        let request = link.next_request.get() + 1;
        link.next_request.set(request);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        link.waiting.borrow_mut().insert(request, tx);
        self.cluster_broadcast(&ClusterMsg::Query {
            request,
            app_id,
            query: remote_query,
        });
        let deadline = std::time::Instant::now() + link.requests_timeout;
        let mut received = 0;
        while received < expected {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let next =
                glommio::timer::timeout(left, async {
                    rx.recv().await.ok_or(glommio::GlommioError::<()>::IoError(
                        std::io::Error::other("closed"),
                    ))
                })
                .await;
            match next {
                Ok(answer) => {
                    received += 1;
                    answers.push(match answer {
                        RemoteAnswer::Counts(counts) => Answer::Counts(
                            counts.into_iter().map(|(c, n)| (c, n as usize)).collect(),
                        ),
                        RemoteAnswer::Count(n) => Answer::Count(n as usize),
                    });
                }
                Err(_) => {
                    self.metrics.cluster_requests_incomplete.inc();
                    tracing::debug!(
                        expected,
                        received,
                        "cluster query answered by some nodes only"
                    );
                    break;
                }
            }
        }
        link.waiting.borrow_mut().remove(&request);
        Ok(answers)
    }

    /// Sends `text` to this node's sockets signed in as `user`, on every shard.
    pub fn send_to_user_on_this_node(&self, app: u32, user: &str, text: &str) {
        self.send_to_local_user(app, user, text);
        for peer in self.peers.others() {
            self.peers.post(
                peer,
                ShardMsg::ToUser {
                    app,
                    user: user.into(),
                    text: text.into(),
                },
            );
        }
    }
}

/// The user id in `{"user_id":"..",...}` member event data.
fn user_of(data: &str) -> String {
    serde_json::from_str::<serde_json::Value>(data)
        .ok()
        .and_then(|v| {
            v.get("user_id")
                .and_then(|u| u.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

fn to_remote(answers: Vec<Answer>) -> RemoteAnswer {
    let mut counts: Vec<(String, u64)> = Vec::new();
    let mut total = 0u64;
    let mut is_count = true;
    for answer in answers {
        match answer {
            Answer::Count(n) => total += n as u64,
            Answer::Counts(pairs) => {
                is_count = false;
                counts.extend(pairs.into_iter().map(|(c, n)| (c, n as u64)));
            }
            _ => {}
        }
    }
    if is_count {
        RemoteAnswer::Count(total)
    } else {
        RemoteAnswer::Counts(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_live_node_is_home_for_each_channel() {
        let nodes = [11u64, 22, 33];
        for channel in ["a", "presence-b", "cache-c", "d", "e", "f"] {
            let homes = nodes
                .iter()
                .filter(|&&me| {
                    let link = Link::new(me, 0, Duration::from_secs(1));
                    for &other in nodes.iter().filter(|&&n| n != me) {
                        link.peers.borrow_mut().insert(other);
                    }
                    link.is_home("app", channel)
                })
                .count();
            assert_eq!(homes, 1, "{channel}");
        }
    }

    #[test]
    fn a_token_is_delivered_once_and_forgotten_after_a_minute() {
        let t0 = std::time::Instant::now();
        let mut seen = SeenTokens::default();
        assert!(seen.first(5, t0));
        assert!(!seen.first(5, t0 + Duration::from_secs(1)));
        assert!(seen.first(6, t0 + SEEN_FOR + Duration::from_secs(1)));
        assert!(seen.first(5, t0 + SEEN_FOR + Duration::from_secs(2)));
    }

    #[test]
    fn routes_are_never_zero_and_differ_by_app_and_channel() {
        assert_ne!(route_of("a", "bc"), route_of("ab", "c"));
        assert_ne!(route_of("a", "x"), 0);
    }

    #[test]
    fn alone_a_node_is_home_for_everything() {
        assert!(Link::new(5, 0, Duration::from_secs(1)).is_home("app", "x"));
    }

    #[test]
    fn fnv_is_the_published_function() {
        let mut h = Fnv::new();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
