//! This node's end of the cluster bus, run on the I/O shard.
//!
//! Worker shards hand it message bodies ([`wire::ClusterMsg`], encoded once) through the I/O queue; it wraps
//! each in an envelope (format version, this node's id, a per-node sequence number, a routing hash) and
//! publishes it on the bus, in the order the queue gave them. Inbound, it keeps track of which nodes are alive
//! (heartbeats, any message counts) and hands each message to one worker shard: channel events (a non-zero
//! routing hash, this node's own included) to the worker their channel hashes to, so every node applies a
//! channel's events in the bus's order; everything else (this node's own dropped) to the worker chosen by the
//! origin node, so all that one node says is applied in the order it said it. Node arrivals, departures and
//! deaths, requests for this node's state and the bus's state go to every worker.

pub mod liveness;
pub mod wire;

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tracing::{info, warn};

use liveness::Liveness;
use wire::ClusterMsg;

/// Topic every node subscribes to.
pub const TOPIC_ALL: &str = "all";

/// The topic only node `node` subscribes to.
pub fn node_topic(node: u64) -> String {
    format!("node.{node:016x}")
}

/// What a worker shard sends to other nodes.
#[derive(Debug)]
pub enum ClusterOut {
    /// To every node.
    Broadcast(Bytes),
    /// A channel event to every node, this one included, routed by `route` (a hash of app and channel,
    /// never 0) on each.
    Event {
        /// Routing hash.
        route: u64,
        /// The body.
        body: Bytes,
    },
    /// To one node.
    ToNode(u64, Bytes),
}

/// What the I/O shard hands a worker shard.
#[derive(Debug)]
pub enum ClusterIn {
    /// A message body from node `origin`.
    Message {
        /// The sender.
        origin: u64,
        /// The body ([`wire::ClusterMsg::decode`]).
        body: Bytes,
    },
    /// Node `.0` is alive (first message seen from it).
    NodeUp(u64),
    /// Node `.0` is gone (said goodbye, or silent past the timeout): forget what it had.
    NodeGone(u64),
    /// Publish this shard's part of the node's state ([`wire::ClusterMsg::Sync`]): a node started, or lost
    /// messages.
    SyncRequested,
    /// The bus carries this node's messages (true: its own hello came back) or is down (false).
    Bus(bool),
    /// Messages between nodes may have been lost and every node is asked for its state again: remote state
    /// not re-announced soon is stale.
    Resync,
}

/// The envelope's first bytes: "SKC" and the format version.
const MAGIC: [u8; 4] = *b"SKC\x01";
/// Envelope length before the body.
const HEADER: usize = 4 + 8 + 8 + 8;

/// An opened envelope.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The sending node.
    pub origin: u64,
    /// Its sequence number.
    pub seq: u64,
    /// Routing hash of a channel event, 0 for other messages.
    pub route: u64,
    /// The body.
    pub body: Bytes,
}

/// Wraps `body` for the bus.
pub fn envelope(origin: u64, seq: u64, route: u64, body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER + body.len());
    out.put_slice(&MAGIC);
    out.put_u64_le(origin);
    out.put_u64_le(seq);
    out.put_u64_le(route);
    out.put_slice(body);
    out.freeze()
}

/// The envelope, or `None` when the payload is not one of ours (other format version, foreign publisher on
/// the same bus, truncated).
pub fn open(payload: &Bytes) -> Option<Envelope> {
    if payload.len() < HEADER || payload[..4] != MAGIC {
        return None;
    }
    let word = |at: usize| payload[at..at + 8].try_into().ok().map(u64::from_le_bytes);
    Some(Envelope {
        origin: word(4)?,
        seq: word(12)?,
        route: word(20)?,
        body: payload.slice(HEADER..),
    })
}

/// How the bus is reached: whatever carries opaque payloads on named topics.
pub trait Transport: 'static {
    /// Publishes without blocking, in call order.
    fn publish(&self, topic: &str, payload: Bytes);
    /// Receives `topic` from now on (and after every reconnect).
    fn subscribe(&self, topic: &str);
    /// Flushes what is queued (within the transport's own bound) and disconnects.
    fn shutdown(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        Box::pin(async {})
    }
}

impl Transport for Box<dyn Transport> {
    fn publish(&self, topic: &str, payload: Bytes) {
        (**self).publish(topic, payload)
    }
    fn subscribe(&self, topic: &str) {
        (**self).subscribe(topic)
    }
    fn shutdown(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
        (*self).shutdown()
    }
}

/// Builds the transport inside the I/O shard's runtime; it reports on the given sender.
pub type TransportFactory =
    Box<dyn FnOnce(mpsc::Sender<TransportEvent>) -> anyhow::Result<Box<dyn Transport>> + Send>;

/// Capacity of the queue of transport events (inbound messages) into the cluster task.
pub const EVENTS_CAPACITY: usize = 65_536;

/// The cluster part of the I/O shard's configuration.
pub struct ClusterConfig {
    /// This node and its workers.
    pub setup: ClusterSetup,
    /// How to reach the bus.
    pub transport: TransportFactory,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("setup", &self.setup)
            .finish_non_exhaustive()
    }
}

/// What the transport reports.
#[derive(Debug)]
pub enum TransportEvent {
    /// A message on a subscribed topic.
    Message(Bytes),
    /// Connected (again).
    Up,
    /// Connection lost.
    Down(String),
}

/// How this node takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSetup {
    /// This node's id (random at start).
    pub node_id: u64,
    /// How often this node says it is alive.
    pub heartbeat: Duration,
    /// A node silent for longer than this is dead.
    pub dead_after: Duration,
    /// One sender per worker shard.
    pub workers: Vec<mpsc::Sender<ClusterIn>>,
}

/// Counters of the cluster link.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Messages published.
    pub published: std::sync::atomic::AtomicU64,
    /// Messages received from other nodes.
    pub received: std::sync::atomic::AtomicU64,
    /// Inbound messages dropped because a worker's queue was full.
    pub dropped_inbound: std::sync::atomic::AtomicU64,
    /// Times a node's sequence jumped (messages from it were lost).
    pub gaps: std::sync::atomic::AtomicU64,
    /// Gauge: live peer nodes.
    pub peers: std::sync::atomic::AtomicU64,
    /// Gauge: 1 while the bus is connected.
    pub bus_up: std::sync::atomic::AtomicU64,
}

/// The running link: publishes what workers send, routes what arrives.
pub struct Node<T: Transport> {
    setup: ClusterSetup,
    transport: T,
    seq: u64,
    liveness: Liveness,
    stats: std::sync::Arc<ClusterStats>,
    was_down: bool,
    /// This node's own hello came back since the bus (re)connected: its messages go round.
    ready: bool,
}

impl<T: Transport> Node<T> {
    /// Subscribes this node's topics and announces it (the others answer with their state).
    pub fn start(setup: ClusterSetup, transport: T, stats: std::sync::Arc<ClusterStats>) -> Self {
        transport.subscribe(TOPIC_ALL);
        transport.subscribe(&node_topic(setup.node_id));
        let mut node = Node {
            liveness: Liveness::new(setup.dead_after),
            setup,
            transport,
            seq: 0,
            stats,
            was_down: false,
            ready: false,
        };
        node.publish(TOPIC_ALL, &ClusterMsg::Hello.encode());
        node
    }

    fn publish(&mut self, topic: &str, body: &[u8]) {
        self.publish_routed(topic, 0, body);
    }

    fn publish_routed(&mut self, topic: &str, route: u64, body: &[u8]) {
        self.seq += 1;
        self.transport
            .publish(topic, envelope(self.setup.node_id, self.seq, route, body));
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.published.fetch_add(1, Relaxed);
    }

    /// Publishes what a worker sent.
    pub fn send(&mut self, out: ClusterOut) {
        match out {
            ClusterOut::Broadcast(body) => self.publish(TOPIC_ALL, &body),
            ClusterOut::Event { route, body } => {
                self.publish_routed(TOPIC_ALL, route.max(1), &body)
            }
            ClusterOut::ToNode(node, body) => self.publish(&node_topic(node), &body),
        }
    }

    /// Says this node is alive and declares silent peers dead.
    pub fn tick(&mut self, now: Instant) {
        self.publish(TOPIC_ALL, &ClusterMsg::Heartbeat.encode());
        for dead in self.liveness.sweep(now) {
            warn!(
                node = format_args!("{dead:016x}"),
                "cluster node silent for too long: forgetting its members"
            );
            self.to_all(|| ClusterIn::NodeGone(dead));
        }
        self.count_peers();
    }

    /// Handles what the transport reported.
    pub fn on_event(&mut self, event: TransportEvent, now: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        match event {
            TransportEvent::Up => {
                self.stats.bus_up.store(1, Relaxed);
                if self.was_down {
                    // Messages were lost both ways: ask everyone for their state, and give ours to everyone
                    // (peers may have declared this node dead meanwhile).
                    info!("cluster bus back: resynchronising state");
                    self.to_all(|| ClusterIn::Resync);
                    self.publish(TOPIC_ALL, &ClusterMsg::Hello.encode());
                    self.to_all(|| ClusterIn::SyncRequested);
                    self.was_down = false;
                }
            }
            TransportEvent::Down(reason) => {
                self.stats.bus_up.store(0, Relaxed);
                if !self.was_down {
                    warn!(%reason, "cluster bus down: events stay on this node until it returns");
                }
                self.was_down = true;
                if self.ready {
                    self.ready = false;
                    self.to_all(|| ClusterIn::Bus(false));
                }
            }
            TransportEvent::Message(payload) => self.on_message(payload, now),
        }
    }

    fn on_message(&mut self, payload: Bytes, now: Instant) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(Envelope {
            origin,
            seq,
            route,
            body,
        }) = open(&payload)
        else {
            return;
        };
        if origin == self.setup.node_id {
            if route != 0 {
                self.to_worker(route, ClusterIn::Message { origin, body });
            } else if !self.ready
                && [
                    ClusterMsg::Hello.encode()[0],
                    ClusterMsg::Heartbeat.encode()[0],
                ]
                .contains(body.first().unwrap_or(&0))
            {
                // Our own hello or heartbeat came round: what we publish reaches every node, us included (a
                // message published before the subscription was in place never comes back, so heartbeats keep
                // trying).
                self.ready = true;
                self.to_all(|| ClusterIn::Bus(true));
            }
            return;
        }
        self.stats.received.fetch_add(1, Relaxed);
        let kind = body.first().copied();
        if kind == Some(ClusterMsg::Bye.encode()[0]) {
            if self.liveness.remove(origin) {
                info!(node = format_args!("{origin:016x}"), "cluster node left");
                self.to_all(|| ClusterIn::NodeGone(origin));
            }
            self.count_peers();
            return;
        }
        let seen = self.liveness.on_message(origin, seq, now);
        if seen.new_node {
            info!(node = format_args!("{origin:016x}"), "cluster node joined");
            self.to_all(|| ClusterIn::NodeUp(origin));
            self.count_peers();
        }
        if seen.gap {
            self.stats.gaps.fetch_add(1, Relaxed);
            warn!(
                node = format_args!("{origin:016x}"),
                "messages from a cluster node were lost: asking for its state again"
            );
            self.to_all(|| ClusterIn::Resync);
            self.publish(TOPIC_ALL, &ClusterMsg::Hello.encode());
        }
        if kind == Some(ClusterMsg::Hello.encode()[0]) {
            self.to_all(|| ClusterIn::SyncRequested);
            return;
        }
        if kind == Some(ClusterMsg::Heartbeat.encode()[0]) {
            return;
        }
        let key = if route != 0 { route } else { origin };
        self.to_worker(key, ClusterIn::Message { origin, body });
    }

    fn to_worker(&self, key: u64, msg: ClusterIn) {
        let workers = &self.setup.workers;
        if workers.is_empty() {
            return;
        }
        let worker = &workers[(key % workers.len() as u64) as usize];
        if worker.try_send(msg).is_err() {
            self.stats
                .dropped_inbound
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Says goodbye, so peers forget this node's members now.
    pub fn leave(&mut self) {
        self.publish(TOPIC_ALL, &ClusterMsg::Bye.encode());
    }

    fn to_all(&self, msg: impl Fn() -> ClusterIn) {
        for worker in &self.setup.workers {
            if worker.try_send(msg()).is_err() {
                self.stats
                    .dropped_inbound
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    fn count_peers(&self) {
        self.stats.peers.store(
            self.liveness.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

/// Runs `node` until `out` closes (the I/O shard stops): publishes what workers send, handles transport
/// events, heartbeats; says goodbye at the end.
pub async fn run(
    mut node: Node<Box<dyn Transport>>,
    mut out: mpsc::UnboundedReceiver<ClusterOut>,
    mut events: mpsc::Receiver<TransportEvent>,
) {
    let mut heartbeat = tokio::time::interval(node.setup.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            msg = out.recv() => match msg {
                Some(msg) => node.send(msg),
                None => break,
            },
            event = events.recv() => match event {
                Some(event) => node.on_event(event, Instant::now()),
                None => break,
            },
            _ = heartbeat.tick() => node.tick(Instant::now()),
        }
    }
    node.leave();
    Box::new(node.transport).shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Recorder(Rc<RefCell<Vec<(String, Bytes)>>>);

    impl Transport for Recorder {
        fn publish(&self, topic: &str, payload: Bytes) {
            self.0.borrow_mut().push((topic.to_string(), payload));
        }
        fn subscribe(&self, _topic: &str) {}
    }

    fn node(id: u64, workers: usize) -> (Node<Recorder>, Recorder, Vec<mpsc::Receiver<ClusterIn>>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::channel(64)).unzip();
        let recorder = Recorder::default();
        let node = Node::start(
            ClusterSetup {
                node_id: id,
                heartbeat: Duration::from_secs(1),
                dead_after: Duration::from_secs(5),
                workers: senders,
            },
            recorder.clone(),
            Arc::default(),
        );
        (node, recorder, receivers)
    }

    #[test]
    fn envelopes_round_trip_and_foreign_payloads_are_ignored() {
        let e = envelope(42, 7, 9, b"body");
        assert_eq!(
            open(&e),
            Some(Envelope {
                origin: 42,
                seq: 7,
                route: 9,
                body: Bytes::from_static(b"body")
            })
        );
        assert_eq!(
            open(&Bytes::from_static(
                b"SKC\x02................................"
            )),
            None
        );
        assert_eq!(open(&Bytes::from_static(b"short")), None);
    }

    #[test]
    fn starting_says_hello_and_sequences_every_publish() {
        let (mut n, rec, _) = node(1, 2);
        n.send(ClusterOut::ToNode(2, Bytes::from_static(b"\x06")));
        let sent = rec.0.borrow();
        assert_eq!(sent[0].0, TOPIC_ALL);
        assert_eq!(open(&sent[0].1).unwrap().body, ClusterMsg::Hello.encode());
        assert_eq!(sent[1].0, node_topic(2));
        assert_eq!(
            open(&sent[1].1).unwrap().seq,
            2,
            "sequence numbers count up"
        );
    }

    #[test]
    fn messages_go_to_the_origin_worker_in_order_and_echoes_are_dropped() {
        let (mut n, _, mut rx) = node(1, 2);
        let t = Instant::now();
        let event = ClusterMsg::TerminateUser {
            app_id: "a".into(),
            user: "u".into(),
        }
        .encode();
        n.on_event(TransportEvent::Message(envelope(1, 1, 0, &event)), t);
        for seq in 1..=3 {
            n.on_event(TransportEvent::Message(envelope(3, seq, 0, &event)), t);
        }
        // Node 3 is new: both workers hear of it; its messages go to worker 3 % 2 = 1, in order.
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::NodeUp(3))));
        assert!(rx[0].try_recv().is_err());
        assert!(matches!(rx[1].try_recv(), Ok(ClusterIn::NodeUp(3))));
        for _ in 1..=3 {
            assert!(matches!(
                rx[1].try_recv(),
                Ok(ClusterIn::Message { origin: 3, .. })
            ));
        }
        assert!(rx[1].try_recv().is_err());
    }

    #[test]
    fn hello_asks_every_worker_for_its_state_and_bye_forgets_the_node() {
        let (mut n, _, mut rx) = node(1, 2);
        let t = Instant::now();
        n.on_event(
            TransportEvent::Message(envelope(5, 1, 0, &ClusterMsg::Hello.encode())),
            t,
        );
        n.on_event(
            TransportEvent::Message(envelope(5, 2, 0, &ClusterMsg::Bye.encode())),
            t,
        );
        for r in &mut rx {
            assert!(matches!(r.try_recv(), Ok(ClusterIn::NodeUp(5))));
            assert!(matches!(r.try_recv(), Ok(ClusterIn::SyncRequested)));
            assert!(matches!(r.try_recv(), Ok(ClusterIn::NodeGone(5))));
        }
    }

    #[test]
    fn silent_nodes_are_declared_gone_and_a_gap_asks_for_state() {
        let (mut n, rec, mut rx) = node(1, 1);
        let t = Instant::now();
        let hb = ClusterMsg::Heartbeat.encode();
        n.on_event(TransportEvent::Message(envelope(9, 1, 0, &hb)), t);
        n.on_event(TransportEvent::Message(envelope(9, 4, 0, &hb)), t);
        let hellos = rec
            .0
            .borrow()
            .iter()
            .filter(|(_, p)| open(p).unwrap().body == ClusterMsg::Hello.encode())
            .count();
        assert_eq!(
            hellos, 2,
            "start-up hello and the one asking for state after the gap"
        );
        n.tick(t + Duration::from_secs(6));
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::NodeUp(9))));
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::Resync)));
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::NodeGone(9))));
    }

    #[test]
    fn the_bus_counts_as_working_once_an_own_hello_or_heartbeat_comes_back() {
        let (mut n, _, mut rx) = node(1, 1);
        let t = Instant::now();
        n.on_event(
            TransportEvent::Message(envelope(1, 2, 0, &ClusterMsg::Heartbeat.encode())),
            t,
        );
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::Bus(true))));
        n.on_event(TransportEvent::Down("reset".into()), t);
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::Bus(false))));
        // Own channel events come back to the worker their route names.
        let event = envelope(1, 3, 7, b"x");
        n.on_event(TransportEvent::Message(event), t);
        assert!(matches!(
            rx[0].try_recv(),
            Ok(ClusterIn::Message { origin: 1, .. })
        ));
    }

    #[test]
    fn bus_back_after_an_outage_resynchronises_both_ways() {
        let (mut n, rec, mut rx) = node(1, 1);
        let t = Instant::now();
        n.on_event(TransportEvent::Up, t);
        assert!(
            rx[0].try_recv().is_err(),
            "first connection: nothing to resync"
        );
        n.on_event(TransportEvent::Down("reset".into()), t);
        n.on_event(TransportEvent::Up, t);
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::Resync)));
        assert!(matches!(rx[0].try_recv(), Ok(ClusterIn::SyncRequested)));
        let last = rec.0.borrow().last().unwrap().1.clone();
        assert_eq!(open(&last).unwrap().body, ClusterMsg::Hello.encode());
    }
}
