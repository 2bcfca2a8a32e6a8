//! Cross-shard messages and the ordered, non-blocking way a shard posts them to its peers.
//!
//! Every message from shard A to shard B travels through one FIFO: a local queue per peer drained by one sender
//! task into glommio's bounded channel mesh. Posting never blocks the caller, and the order in which a shard
//! announces interest changes is the order in which its peers apply them.

use glommio::channels::channel_mesh::Senders;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};
use tokio::sync::oneshot;

/// A socket on some shard of this process.
#[derive(Debug, Clone)]
pub struct SocketRef {
    /// The shard that holds it.
    pub shard: usize,
    /// Its shard-local connection id.
    pub conn_id: u64,
    /// Its Pusher socket id.
    pub socket_id: Box<str>,
}

/// A socket of a user joining a presence channel, for the channel's owner.
#[derive(Debug)]
pub struct JoinRequest {
    /// App position.
    pub app: u32,
    /// Presence channel.
    pub channel: Box<str>,
    /// The member's user id.
    pub user_id: Box<str>,
    /// `user_info` JSON text, if any.
    pub info: Option<Box<str>>,
    /// The app's member limit.
    pub max_members: usize,
    /// The joining socket (gets the snapshot, and no `member_added` about itself).
    pub socket: SocketRef,
    /// The joiner's token for a cluster barrier (see [`ShardMsg::BarrierPassed`]).
    pub token: u64,
    /// A cache channel's replay goes with the snapshot (see [`ShardMsg::PresenceJoined`]).
    pub replay_cache: bool,
    /// Handed back with [`ShardMsg::PresenceJoined`] to the socket's shard.
    pub reply: oneshot::Sender<Result<(), crate::shard::presence::JoinRefused>>,
}

/// A message from one shard to another.
#[derive(Debug)]
pub enum ShardMsg {
    /// Deliver encoded frames to the local subscribers of these channels, skipping `except` (a socket id).
    Deliver {
        /// App position in the registry.
        app: u32,
        /// Channel frames (bytes shared by every shard) with their routing details (tags, delta tracking).
        items: Vec<crate::shard::fanout::Outgoing>,
        /// Socket id excluded from delivery.
        except: Option<Box<str>>,
        /// Answered once the frames are queued for the local subscribers (publish ordering).
        ack: Option<oneshot::Sender<()>>,
    },
    /// Add a socket of a user to a presence channel this shard owns; answer the snapshot or the refusal.
    PresenceJoin(JoinRequest),
    /// Another node's presence announcement (`present: Some`, one member) or state sync (`present: None`: the
    /// node's members of the channel are exactly `members`), for the owner of the channel.
    RemotePresence {
        /// App position.
        app: u32,
        /// Presence channel.
        channel: Box<str>,
        /// The announcing node.
        node: u64,
        /// `(user id, user_info)` pairs.
        members: Vec<(String, Option<String>)>,
        /// Present or not; `None` for a sync.
        present: Option<bool>,
    },
    /// Another node's number of subscriptions of a channel this shard owns.
    RemoteCount {
        /// App position.
        app: u32,
        /// The channel.
        channel: Box<str>,
        /// The node.
        node: u64,
        /// Its subscriptions.
        count: i64,
    },
    /// Another node's first / last socket signed in as `user` (owned here), for watchlists.
    RemoteOnline {
        /// App position.
        app: u32,
        /// The user.
        user: Box<str>,
        /// The node.
        node: u64,
        /// Online there now.
        online: bool,
    },
    /// A presence join's barrier came back from the bus (or the joiner gave up waiting): send the snapshot now.
    BarrierPassed {
        /// The joiner's token.
        token: u64,
    },
    /// This node's own event whose copy the bus did not bring back in time: deliver it here, once.
    LoopbackDeliver {
        /// App position.
        app: u32,
        /// The publishing shard's token.
        token: u64,
        /// The event.
        item: crate::shard::fanout::Outgoing,
        /// Socket id excluded from delivery.
        except: Option<Box<str>>,
    },
    /// The event with this token (published by this shard) was delivered on this node.
    EchoDelivered {
        /// The token.
        token: u64,
        /// Answer once the other shards of this node queued it.
        acks: Vec<oneshot::Receiver<()>>,
    },
    /// Another node's answer to a cluster query of this shard.
    ClusterAnswer {
        /// The request number.
        request: u64,
        /// The answer.
        answer: sockudo_io_shard::cluster::wire::RemoteAnswer,
    },
    /// The owner's answer to [`ShardMsg::PresenceJoin`], sent to the socket's shard through the same FIFO as the
    /// channel's later member events, so the snapshot is queued before any of them.
    PresenceJoined {
        /// App position.
        app: u32,
        /// Presence channel.
        channel: Box<str>,
        /// The joining connection on the receiving shard.
        conn_id: u64,
        /// The `subscription_succeeded` data, or why the join was refused.
        outcome: Result<String, crate::shard::presence::JoinRefused>,
        /// Asked for with [`JoinRequest::replay_cache`]: the cache channel's last event (`None`: a cache miss),
        /// queued right after the snapshot.
        cached: Option<Option<String>>,
        /// Answered once the snapshot is queued.
        reply: oneshot::Sender<Result<(), crate::shard::presence::JoinRefused>>,
    },
    /// Remove a socket of a user from a presence channel this shard owns.
    PresenceLeave {
        /// App position.
        app: u32,
        /// Presence channel.
        channel: Box<str>,
        /// The member's user id.
        user_id: Box<str>,
    },
    /// Events of cache channels this shard owns: keep each as its channel's last event and deliver them, so
    /// that a new subscriber's replay (see [`ShardMsg::CacheReplay`]) and the channel's events reach it
    /// through one ordered path.
    CachePublish {
        /// App position.
        app: u32,
        /// Channel frames.
        items: Vec<crate::shard::fanout::Outgoing>,
        /// Socket id excluded from delivery.
        except: Option<Box<str>>,
        /// Answered once every shard has queued the frames.
        ack: oneshot::Sender<()>,
    },
    /// A socket joined (as pending) a cache channel this shard owns: answer with [`ShardMsg::CacheReplayed`].
    CacheReplay {
        /// App position.
        app: u32,
        /// Cache channel.
        channel: Box<str>,
        /// The subscribing socket.
        socket: SocketRef,
        /// Answered by the socket's shard once the replay is queued.
        reply: oneshot::Sender<()>,
    },
    /// The owner's answer to [`ShardMsg::CacheReplay`], sent after every event it delivered before: queue
    /// `subscription_succeeded` and the replay (or `pusher:cache_miss`), then let the channel's events through.
    CacheReplayed {
        /// App position.
        app: u32,
        /// Cache channel.
        channel: Box<str>,
        /// The subscribing connection on the receiving shard.
        conn_id: u64,
        /// The channel's last event, if it has one.
        cached: Option<String>,
        /// Answered once queued.
        reply: oneshot::Sender<()>,
    },
    /// Keep this event as the last one of a cache channel this shard owns.
    CacheStore {
        /// App position.
        app: u32,
        /// Cache channel.
        channel: Box<str>,
        /// The channel event as subscribers received it.
        text: Box<str>,
        /// Also write it to the shared cache (Redis): false for events another node published.
        persist: bool,
        /// Answered once stored.
        ack: oneshot::Sender<()>,
    },
    /// A change in the subscriptions of a channel this shard owns (subscription counts).
    SubscriptionDelta {
        /// App position.
        app: u32,
        /// Channel.
        channel: Box<str>,
        /// +1 or -1.
        delta: i64,
    },
    /// A socket signed in as `user` (owned here) with this watchlist.
    WatchOnline {
        /// App position.
        app: u32,
        /// The user.
        user: Box<str>,
        /// The user's watchlist.
        watchlist: Vec<Box<str>>,
    },
    /// A socket signed in as `user` (owned here) went away.
    WatchOffline {
        /// App position.
        app: u32,
        /// The user.
        user: Box<str>,
    },
    /// `watcher` watches `watched` (owned here); answer whether `watched` is online.
    Watch {
        /// App position.
        app: u32,
        /// The watched user.
        watched: Box<str>,
        /// The watching user.
        watcher: Box<str>,
        /// Online now.
        reply: oneshot::Sender<bool>,
    },
    /// `watcher` went offline and no longer watches `watched` (owned here).
    Unwatch {
        /// App position.
        app: u32,
        /// The watched user.
        watched: Box<str>,
        /// The watching user.
        watcher: Box<str>,
    },
    /// Send `text` to this shard's sockets signed in as `user`.
    ToUser {
        /// App position.
        app: u32,
        /// The user.
        user: Box<str>,
        /// A complete server message.
        text: Box<str>,
    },
    /// A REST question about this shard's state.
    Query {
        /// App position.
        app: u32,
        /// The question.
        query: crate::shard::query::Query,
        /// The answer.
        reply: oneshot::Sender<crate::shard::query::Answer>,
    },
    /// Shard `from` gained its first (`occupied`) or lost its last subscriber of a channel this shard owns, for
    /// the `channel_occupied` / `channel_vacated` webhooks.
    Occupancy {
        /// App position.
        app: u32,
        /// Channel name.
        channel: Box<str>,
        /// Announcing shard (or, from the cluster, node).
        from: crate::shard::Place,
        /// Has subscribers now.
        occupied: bool,
    },
    /// Shard `from` gained its first (`interested`) or lost its last subscriber of a channel.
    Interest {
        /// App position.
        app: u32,
        /// Channel name.
        channel: Box<str>,
        /// Announcing shard.
        from: usize,
        /// Has subscribers now.
        interested: bool,
        /// Answered once applied, so a subscriber is confirmed only when every shard will route to it.
        ack: Option<oneshot::Sender<()>>,
    },
}

/// Pending messages towards one peer.
#[derive(Default)]
struct Outbox {
    queue: RefCell<VecDeque<ShardMsg>>,
    waker: Cell<Option<Waker>>,
}

/// The sending side of the mesh for one shard.
pub struct Peers {
    me: usize,
    nr_shards: usize,
    outboxes: Vec<Rc<Outbox>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers")
            .field("me", &self.me)
            .field("nr_shards", &self.nr_shards)
            .finish()
    }
}

impl Peers {
    /// Creates the outboxes and spawns one sender task per peer.
    pub fn start(me: usize, nr_shards: usize, senders: Option<Senders<ShardMsg>>) -> Self {
        let outboxes: Vec<Rc<Outbox>> =
            (0..nr_shards).map(|_| Rc::new(Outbox::default())).collect();
        if let Some(senders) = senders {
            // Messages are addressed by shard id, which is the mesh's peer number (`shard::run`).
            debug_assert_eq!(
                senders.peer_id(),
                me,
                "shard {me} has mesh peer number {}: shard executors were not created in order",
                senders.peer_id()
            );
            let senders = Rc::new(senders);
            for (peer, outbox) in outboxes.iter().enumerate() {
                if peer == me {
                    continue;
                }
                let outbox = outbox.clone();
                let senders = senders.clone();
                glommio::spawn_local(async move {
                    loop {
                        let msg = futures_lite::future::poll_fn(|cx| {
                            match outbox.queue.borrow_mut().pop_front() {
                                Some(m) => Poll::Ready(m),
                                None => {
                                    outbox.waker.set(Some(cx.waker().clone()));
                                    Poll::Pending
                                }
                            }
                        })
                        .await;
                        if senders.send_to(peer, msg).await.is_err() {
                            tracing::debug!(peer, "peer shard gone; dropping cross-shard messages");
                            return;
                        }
                    }
                })
                .detach();
            }
        }
        Peers {
            me,
            nr_shards,
            outboxes,
        }
    }

    /// This shard's id.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards.
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }

    /// Every shard but this one.
    pub fn others(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nr_shards).filter(move |&s| s != self.me)
    }

    /// Queues `msg` for `peer` in order; never blocks.
    pub fn post(&self, peer: usize, msg: ShardMsg) {
        let Some(outbox) = self.outboxes.get(peer) else {
            return;
        };
        outbox.queue.borrow_mut().push_back(msg);
        if let Some(w) = outbox.waker.take() {
            w.wake();
        }
    }

    /// Messages waiting towards each peer (for metrics and debugging).
    pub fn backlog(&self) -> Vec<usize> {
        self.outboxes
            .iter()
            .map(|o| o.queue.borrow().len())
            .collect()
    }
}
