//! Shared helpers and scenarios for the bus tests. The brokers come from `scripts/services/*.sh`, which
//! export `SOCKUDO_TEST_REDIS_URL`, `SOCKUDO_TEST_REDIS_CLUSTER_NODES`, `SOCKUDO_TEST_NATS_URL` and the
//! matching `*_CTL` scripts (used to stop and restart the broker); a missing variable fails the test.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sockudo_bus::{Bus, BusConfig, BusEvent, OutboxLimits};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Redis,
    RedisCluster,
    Nats,
}

impl Driver {
    fn env_prefix(self) -> &'static str {
        match self {
            Driver::Redis => "SOCKUDO_TEST_REDIS",
            Driver::RedisCluster => "SOCKUDO_TEST_REDIS_CLUSTER",
            Driver::Nats => "SOCKUDO_TEST_NATS",
        }
    }

    fn service_script(self) -> &'static str {
        match self {
            Driver::Redis => "scripts/services/redis.sh",
            Driver::RedisCluster => "scripts/services/redis-cluster.sh",
            Driver::Nats => "scripts/services/nats.sh",
        }
    }

    fn env(self, suffix: &str) -> String {
        let name = format!("{}_{suffix}", self.env_prefix());
        std::env::var(&name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: start the broker first, e.g. `source {}` (scripts/test.sh does it)",
                self.service_script()
            )
        })
    }

    /// A configuration for this broker with a prefix of its own, so tests running at once never meet.
    pub fn config(self) -> BusConfig {
        let prefix = unique_prefix();
        match self {
            Driver::Redis => BusConfig::Redis {
                url: self.env("URL"),
                prefix,
            },
            Driver::RedisCluster => BusConfig::RedisCluster {
                nodes: self.env("NODES").split(',').map(str::to_string).collect(),
                prefix,
            },
            Driver::Nats => BusConfig::Nats {
                servers: self.env("URL").split(',').map(str::to_string).collect(),
                prefix,
                username: None,
                password: None,
                token: None,
                connect_timeout: Duration::from_secs(2),
            },
        }
    }

    /// Runs the broker's control script (`stop`, `start`, `restart`, ...).
    pub fn control(self, action: &str) {
        let script = self.env("CTL");
        let output = Command::new("bash")
            .arg(&script)
            .args(action.split(' '))
            .output()
            .unwrap_or_else(|e| panic!("running {script} {action}: {e}"));
        assert!(
            output.status.success(),
            "{script} {action} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "bustest-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One bus and what it has received so far.
pub struct Node {
    pub bus: Bus,
    rx: mpsc::Receiver<BusEvent>,
    pub messages: VecDeque<(String, Bytes)>,
    /// Topics of the probes received (see [`Node::subscribe_synced`]); kept apart from `messages`.
    probes: Vec<String>,
    pub ups: usize,
    pub downs: usize,
}

const PROBE: &[u8] = b"\0probe";

pub const WAIT: Duration = Duration::from_secs(20);

impl Node {
    pub fn start(config: BusConfig) -> Node {
        Self::start_with(config, OutboxLimits::default(), 50_000)
    }

    pub fn start_with(config: BusConfig, limits: OutboxLimits, events: usize) -> Node {
        let (tx, rx) = mpsc::channel(events);
        let bus = Bus::start_with_limits(config, limits, tx).expect("bus starts");
        Node {
            bus,
            rx,
            messages: VecDeque::new(),
            probes: Vec::new(),
            ups: 0,
            downs: 0,
        }
    }

    /// Takes events until `done` holds; panics after `timeout` naming `what`.
    pub async fn pump_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&Node) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(BusEvent::Message { topic, payload })) => self.record(topic, payload),
                Ok(Some(BusEvent::Up)) => self.ups += 1,
                Ok(Some(BusEvent::Down { .. })) => self.downs += 1,
                Ok(None) => panic!("events channel closed while waiting for {what}"),
                Err(_) => panic!(
                    "timed out after {timeout:?} waiting for {what} (ups {}, downs {}, {} messages)",
                    self.ups,
                    self.downs,
                    self.messages.len()
                ),
            }
        }
    }

    /// Takes events for `quiet` and returns what arrived (for "nothing arrives" checks).
    pub async fn pump_for(&mut self, quiet: Duration) {
        let deadline = Instant::now() + quiet;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline.into(), self.rx.recv()).await {
            match event {
                BusEvent::Message { topic, payload } => self.record(topic, payload),
                BusEvent::Up => self.ups += 1,
                BusEvent::Down { .. } => self.downs += 1,
            }
        }
    }

    pub async fn wait_up(&mut self) {
        self.pump_until("Up", WAIT, |n| n.ups > 0).await;
    }

    fn record(&mut self, topic: String, payload: Bytes) {
        if payload.starts_with(PROBE) {
            self.probes.push(topic);
        } else {
            self.messages.push_back((topic, payload));
        }
    }

    /// Subscribes `topic` and waits until the broker delivers on it, by publishing probes to it from this
    /// bus until one comes back. Probes (from any bus) never show in `messages`.
    pub async fn subscribe_synced(&mut self, topic: &str) {
        self.bus.subscribe(topic);
        let deadline = Instant::now() + WAIT;
        loop {
            self.bus.publish(topic, Bytes::from_static(PROBE));
            self.pump_for(Duration::from_millis(100)).await;
            if self.probes.iter().any(|t| t == topic) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscription to {topic:?} never became active"
            );
        }
    }

    pub fn take_topic(&mut self, topic: &str) -> Vec<Bytes> {
        let mut taken = Vec::new();
        self.messages.retain(|(t, p)| {
            if t == topic {
                taken.push(p.clone());
                false
            } else {
                true
            }
        });
        taken
    }

    pub fn count_topic(&self, topic: &str) -> usize {
        self.messages.iter().filter(|(t, _)| t == topic).count()
    }
}

fn seq(n: u64) -> Bytes {
    Bytes::copy_from_slice(&n.to_be_bytes())
}

fn seq_of(payload: &Bytes) -> u64 {
    u64::from_be_bytes(payload[..8].try_into().expect("8-byte sequence payload"))
}

fn shared_config(a: &BusConfig) -> BusConfig {
    a.clone()
}

/// One bus publishes, the same bus receives: binary payloads arrive intact.
pub async fn round_trip(driver: Driver) {
    let mut node = Node::start(driver.config());
    node.wait_up().await;
    node.subscribe_synced("state").await;
    let payload = Bytes::from_static(&[0, 159, 146, 150, 255, b'\n', 0]);
    node.bus.publish("state", payload.clone());
    node.pump_until("the binary message", WAIT, |n| n.count_topic("state") == 1)
        .await;
    assert_eq!(node.take_topic("state"), vec![payload]);
    let stats = node.bus.stats();
    assert!(stats.is_up());
    assert_eq!(stats.dropped(), 0);
    node.bus.shutdown().await;
}

/// Two buses on one prefix, like two nodes: each gets what the other sends to it, both get `state`.
pub async fn two_nodes(driver: Driver) {
    let config = driver.config();
    let mut a = Node::start(config.clone());
    let mut b = Node::start(shared_config(&config));
    a.wait_up().await;
    b.wait_up().await;
    a.subscribe_synced("node.a").await;
    b.subscribe_synced("node.b").await;
    a.subscribe_synced("state").await;
    b.subscribe_synced("state").await;

    a.bus.publish("node.b", Bytes::from_static(b"a->b"));
    b.bus.publish("node.a", Bytes::from_static(b"b->a"));
    b.bus.publish("state", Bytes::from_static(b"b->all"));
    a.pump_until("b's messages", WAIT, |n| n.messages.len() >= 2)
        .await;
    b.pump_until("a's message and its own state", WAIT, |n| {
        n.messages.len() >= 2
    })
    .await;
    assert_eq!(a.take_topic("node.a"), vec![Bytes::from_static(b"b->a")]);
    assert_eq!(a.take_topic("state"), vec![Bytes::from_static(b"b->all")]);
    assert_eq!(b.take_topic("node.b"), vec![Bytes::from_static(b"a->b")]);
    assert_eq!(b.take_topic("state"), vec![Bytes::from_static(b"b->all")]);
    // Nothing else: a never sees node.b traffic, and nobody sees anything twice.
    a.pump_for(Duration::from_millis(300)).await;
    b.pump_for(Duration::from_millis(300)).await;
    assert!(a.messages.is_empty(), "a got extra {:?}", a.messages);
    assert!(b.messages.is_empty(), "b got extra {:?}", b.messages);
    a.bus.shutdown().await;
    b.bus.shutdown().await;
}

/// 10,000 messages from one bus arrive at another complete and in order.
pub async fn order_kept(driver: Driver) {
    const N: u64 = 10_000;
    let config = driver.config();
    let mut receiver = Node::start(config.clone());
    let sender = Node::start(config);
    receiver.wait_up().await;
    receiver.subscribe_synced("ch.app.orders").await;
    for i in 0..N {
        sender.bus.publish("ch.app.orders", seq(i));
    }
    receiver
        .pump_until("10,000 messages", Duration::from_secs(60), |n| {
            n.messages.len() as u64 >= N
        })
        .await;
    let got: Vec<u64> = receiver
        .take_topic("ch.app.orders")
        .iter()
        .map(seq_of)
        .collect();
    assert_eq!(got.len() as u64, N);
    assert!(
        got.iter().copied().eq(0..N),
        "messages out of order or missing"
    );
    assert_eq!(sender.bus.stats().published.load(Ordering::Relaxed), N);
    assert_eq!(sender.bus.stats().dropped(), 0);
    assert_eq!(receiver.bus.stats().dropped(), 0);
    receiver.bus.shutdown().await;
    sender.bus.shutdown().await;
}

/// After `unsubscribe` nothing more arrives on the topic; other topics keep flowing.
pub async fn unsubscribe_stops_delivery(driver: Driver) {
    let config = driver.config();
    let mut a = Node::start(config.clone());
    let b = Node::start(config);
    a.wait_up().await;
    a.subscribe_synced("gone").await;
    a.bus.subscribe("gone"); // idempotent: one subscription, one copy of each message
    a.bus.unsubscribe("gone");
    // Changes are applied in order: once "kept" is live, "gone" is unsubscribed.
    a.subscribe_synced("kept").await;
    b.bus.publish("gone", Bytes::from_static(b"late"));
    b.bus.publish("kept", Bytes::from_static(b"marker"));
    a.pump_until("the marker", WAIT, |n| n.count_topic("kept") == 1)
        .await;
    a.pump_for(Duration::from_millis(300)).await;
    assert_eq!(a.count_topic("gone"), 0, "delivered after unsubscribe");
    a.bus.shutdown().await;
    b.bus.shutdown().await;
}

/// Topics with NATS separators and wildcards, spaces, `%` and non-ASCII are carried as themselves, and a
/// topic that looks like a wildcard matches only itself.
pub async fn special_topics(driver: Driver) {
    let topics = [
        "ch.app-1.presence-room.1",
        "a.*",
        "a.>",
        "with space",
        "tab\tand%25",
        "{tag}x",
        "ünïcødé",
    ];
    let config = driver.config();
    let mut a = Node::start(config.clone());
    let b = Node::start(config);
    a.wait_up().await;
    for topic in topics {
        a.subscribe_synced(topic).await;
    }
    for topic in topics {
        b.bus.publish(topic, Bytes::from(topic.to_string()));
    }
    b.bus
        .publish("a.b", Bytes::from_static(b"must not match a.* or a.>"));
    a.pump_until("one message per topic", WAIT, |n| {
        n.messages.len() >= topics.len()
    })
    .await;
    a.pump_for(Duration::from_millis(300)).await;
    for topic in topics {
        assert_eq!(
            a.take_topic(topic),
            vec![Bytes::from(topic.to_string())],
            "topic {topic:?}"
        );
    }
    assert!(a.messages.is_empty(), "unexpected {:?}", a.messages);
    a.bus.shutdown().await;
    b.bus.shutdown().await;
}

/// The broker is stopped and started again: the buses report Down then Up, resubscribe by themselves and
/// messages flow again; what a bus published during the outage is delivered after it, except the oldest
/// ones past the outbox bound, which are counted as dropped.
pub async fn broker_restart(driver: Driver) {
    const BOUND: usize = 50;
    const DURING_OUTAGE: u64 = 200;
    let config = driver.config();
    let limits = OutboxLimits {
        max_messages: BOUND,
        max_bytes: 1 << 20,
    };
    let mut a = Node::start_with(config.clone(), limits, 50_000);
    let mut b = Node::start(config);
    a.wait_up().await;
    b.wait_up().await;
    a.subscribe_synced("outage").await;
    a.subscribe_synced("after").await;

    driver.control("stop");
    a.pump_until("Down", WAIT, |n| n.downs > 0).await;
    b.pump_until("Down", WAIT, |n| n.downs > 0).await;
    assert!(!a.bus.stats().is_up());
    // While down: a publishes to its own topic; only the newest BOUND are kept.
    for i in 0..DURING_OUTAGE {
        a.bus.publish("outage", seq(i));
    }
    let dropped = a.bus.stats().dropped_outbound.load(Ordering::Relaxed);
    assert_eq!(dropped, DURING_OUTAGE - BOUND as u64);
    assert_eq!(a.bus.stats().queued.load(Ordering::Relaxed), BOUND as u64);
    tokio::time::sleep(Duration::from_millis(500)).await;

    driver.control("start");
    a.pump_until("Up after the restart", Duration::from_secs(60), |n| {
        n.ups > 1
    })
    .await;
    b.pump_until("Up after the restart", Duration::from_secs(60), |n| {
        n.ups > 1
    })
    .await;
    assert!(a.bus.stats().reconnects.load(Ordering::Relaxed) >= 1);

    // The outage messages come back to a (it resubscribed before flushing), in order.
    a.pump_until("the messages queued during the outage", WAIT, |n| {
        n.count_topic("outage") >= BOUND
    })
    .await;
    let got: Vec<u64> = a.take_topic("outage").iter().map(seq_of).collect();
    let expected: Vec<u64> = (DURING_OUTAGE - BOUND as u64..DURING_OUTAGE).collect();
    assert_eq!(got, expected);

    // And b's new messages reach a's resubscribed topic (b may need a moment to be flushing again).
    let deadline = Instant::now() + WAIT;
    let mut sent = 0;
    while a.count_topic("after") == 0 {
        assert!(
            Instant::now() < deadline,
            "no message from b after the restart"
        );
        b.bus.publish("after", seq(sent));
        sent += 1;
        a.pump_for(Duration::from_millis(200)).await;
    }
    assert_eq!(a.bus.stats().dropped_inbound.load(Ordering::Relaxed), 0);
    a.bus.shutdown().await;
    b.bus.shutdown().await;
}

/// A consumer that does not read: inbound messages beyond the events channel are dropped and counted, the
/// connection keeps being read, and delivery resumes once the consumer reads again.
pub async fn slow_consumer_drops_and_counts(driver: Driver) {
    const SENT: u64 = 2_000;
    const CAPACITY: usize = 100;
    let config = driver.config();
    let mut slow = Node::start_with(config.clone(), OutboxLimits::default(), CAPACITY);
    let sender = Node::start(config);
    slow.wait_up().await;
    slow.subscribe_synced("busy").await;
    for i in 0..SENT {
        sender.bus.publish("busy", seq(i));
    }
    // Without reading, every message is either queued for the consumer or counted as dropped.
    let stats = slow.bus.stats();
    let deadline = Instant::now() + WAIT;
    while stats.received.load(Ordering::Relaxed) + stats.dropped_inbound.load(Ordering::Relaxed)
        < SENT
    {
        assert!(
            Instant::now() < deadline,
            "messages neither delivered nor counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stats.dropped_inbound.load(Ordering::Relaxed) >= SENT - CAPACITY as u64);
    assert!(
        stats.is_up(),
        "a full events channel must not cost the connection"
    );
    slow.pump_for(Duration::from_millis(200)).await;
    let kept: Vec<u64> = slow.take_topic("busy").iter().map(seq_of).collect();
    assert!(
        kept.len() <= CAPACITY && kept.windows(2).all(|w| w[0] < w[1]),
        "kept {kept:?}"
    );
    sender.bus.publish("busy", Bytes::from_static(b"after"));
    slow.pump_until("a message after the drops", WAIT, |n| {
        n.messages
            .iter()
            .any(|(t, p)| t == "busy" && &p[..] == b"after")
    })
    .await;
    slow.bus.shutdown().await;
    sender.bus.shutdown().await;
}

/// The broker freezes without closing connections (SIGSTOP): the liveness check notices, the bus reports
/// Down, and once the broker answers again it reconnects and resubscribes.
pub async fn frozen_broker_is_detected(driver: Driver) {
    let config = driver.config();
    let mut a = Node::start(config.clone());
    a.wait_up().await;
    a.subscribe_synced("frozen").await;
    driver.control("pause");
    let detected = std::panic::AssertUnwindSafe(a.pump_until(
        "Down while frozen",
        Duration::from_secs(40),
        |n| n.downs > 0,
    ));
    let outcome = futures_util::FutureExt::catch_unwind(detected).await;
    driver.control("resume");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    a.pump_until("Up after the thaw", Duration::from_secs(60), |n| n.ups > 1)
        .await;
    a.bus.publish("frozen", Bytes::from_static(b"thawed"));
    a.pump_until("a message after the thaw", WAIT, |n| {
        n.count_topic("frozen") == 1
    })
    .await;
    a.bus.shutdown().await;
}

/// One master of the Redis Cluster stops and comes back: the bus reports Down, then Up, and every topic,
/// whichever master holds it, delivers again.
pub async fn one_cluster_master_restarts() {
    let driver = Driver::RedisCluster;
    let topics: Vec<String> = (0..24).map(|i| format!("ch.app.room-{i}")).collect();
    let mut a = Node::start(driver.config());
    a.wait_up().await;
    for topic in &topics {
        a.subscribe_synced(topic).await;
    }
    driver.control("stop-node 2");
    let down = std::panic::AssertUnwindSafe(
        a.pump_until("Down", Duration::from_secs(40), |n| n.downs > 0),
    );
    let outcome = futures_util::FutureExt::catch_unwind(down).await;
    driver.control("start-node 2");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    a.pump_until(
        "Up after the master came back",
        Duration::from_secs(60),
        |n| n.ups > 1,
    )
    .await;
    a.messages.clear();
    let deadline = Instant::now() + WAIT;
    for topic in &topics {
        while a.count_topic(topic) == 0 {
            assert!(
                Instant::now() < deadline,
                "{topic} does not deliver after the master came back"
            );
            a.bus.publish(topic, Bytes::from_static(b"again"));
            a.pump_for(Duration::from_millis(100)).await;
        }
    }
    a.bus.shutdown().await;
}
