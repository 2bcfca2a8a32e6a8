//! One shared topic against one topic per channel, on each compiled-in broker (issue #10): what a cluster
//! node pays for events of channels it has no subscriber for, and what per-channel topics cost instead.
//!
//! ```sh
//! for s in redis redis-cluster nats; do source scripts/services/$s.sh; done
//! cargo bench -p sockudo-bus --features redis-cluster,nats --bench topics [-- NODES CHANNELS RATE SECONDS]
//! ```
//!
//! `NODES` simulated nodes (default 8), each a [`Bus`] on its own thread and current-thread runtime (as on
//! the I/O shard), so a node's CPU is its thread's. A further bus publishes `RATE` events/s (default 2,000)
//! for `SECONDS` (default 5) round robin over `CHANNELS` channels (default 1,000), each payload naming its
//! channel. Each channel has subscribers on `m` nodes: `m = 1` (sparse: every node wants 1/NODES of the
//! channels) and `m = NODES` (broadcast). Two ways to route:
//! - `shared`: every node subscribes the one topic `all`, receives every event and drops those of channels
//!   it has no interest in (what the server does today);
//! - `per-channel`: every node subscribes `ch.<channel>` for its channels only.
//!
//! Per event: CPU of all receiving nodes together, of the publishing node and of the broker process(es)
//! (from /proc, minus the broker's idle rate). Then the cost of interest changes with per-channel topics:
//! the time from `subscribe()` until a publish on the topic is delivered (probes every ~100 µs, so it
//! includes one publish hop, reported next to it), and `BULK` (10,000) topics subscribed and unsubscribed
//! on every node at once: time until all are live, node and broker CPU per subscribe and per unsubscribe,
//! broker memory per subscription.

// Without a transport compiled in the bench only says so; its helpers are unused then.
#![cfg_attr(
    not(any(feature = "redis", feature = "nats")),
    allow(dead_code, unused_mut, unused_variables)
)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::{thread_cpu, wait_up, Broker};
use sockudo_bus::{Bus, BusConfig, BusEvent};
use tokio::sync::{mpsc, oneshot};

/// Cap on messages waiting in a bus's outbox while a node publishes (the outbox bound is 10,000).
const IN_FLIGHT: u64 = 4_000;
/// Topics subscribed per node in the bulk test.
const BULK: usize = 10_000;
/// Subscribe-to-live samples.
const LATENCY_SAMPLES: usize = 200;
/// Bytes per event payload (a small Pusher event in the server's envelope).
const PAYLOAD: usize = 200;
/// First four bytes of a probe (events carry their channel index there).
const PROBE: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routing {
    Shared,
    PerChannel,
}

impl Routing {
    fn name(self) -> &'static str {
        match self {
            Routing::Shared => "shared",
            Routing::PerChannel => "per-channel",
        }
    }

    fn topic(self, channel: u32) -> String {
        match self {
            Routing::Shared => "all".into(),
            Routing::PerChannel => format!("ch.{channel}"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Events received.
    received: u64,
    /// Events of a channel this node has interest in.
    wanted: u64,
}

#[derive(Debug)]
struct BulkTimes {
    live_after: Duration,
    subscribe_and_probe_cpu: Duration,
    probe_cpu: Duration,
    unsubscribe_cpu: Duration,
}

enum Command {
    /// Subscribe these topics and answer once a probe on each of them came back.
    SubscribeLive(Vec<String>, oneshot::Sender<()>),
    /// Which channels (by index) this node wants.
    Interest(Vec<bool>),
    /// This thread's CPU time and the counts so far.
    Mark(oneshot::Sender<(Duration, Counts)>),
    /// Publish `total` events at `rate`/s round robin over `channels`; answers with this thread's CPU.
    Publish {
        routing: Routing,
        channels: u32,
        rate: u64,
        total: u64,
        done: oneshot::Sender<Duration>,
    },
    /// Subscribe-to-live and publish-to-delivery times.
    Latency(oneshot::Sender<(Vec<Duration>, Vec<Duration>)>),
    /// Subscribe `BULK` topics until live, probe them again, unsubscribe them. Each step waits for a go.
    Bulk {
        tag: usize,
        steps: mpsc::UnboundedReceiver<()>,
        done: mpsc::UnboundedSender<()>,
        result: oneshot::Sender<BulkTimes>,
    },
}

fn probe(seq: u32) -> Bytes {
    let mut payload = BytesMut::with_capacity(8);
    payload.put_u32_le(PROBE);
    payload.put_u32_le(seq);
    payload.freeze()
}

fn event(channel: u32, seq: u32) -> Bytes {
    let mut payload = BytesMut::with_capacity(PAYLOAD);
    payload.put_u32_le(channel);
    payload.put_u32_le(seq);
    payload.resize(PAYLOAD, b'x');
    payload.freeze()
}

/// One simulated node: a bus on the thread's own runtime, counting what it receives.
struct Node {
    bus: Bus,
    rx: mpsc::Receiver<BusEvent>,
    interest: Vec<bool>,
    counts: Counts,
    /// Sequence number of the last probe sent.
    probes: u32,
}

impl Node {
    /// Counts an event; returns the topic and sequence number of a probe.
    fn take(&mut self, event: BusEvent) -> Option<(String, u32)> {
        let BusEvent::Message { topic, payload } = event else {
            return None;
        };
        let first = payload
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
        if first == PROBE {
            let seq = payload
                .get(4..8)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))?;
            return Some((topic, seq));
        }
        self.counts.received += 1;
        if self.interest.get(first as usize).copied().unwrap_or(false) {
            self.counts.wanted += 1;
        }
        None
    }

    async fn publish_paced(&self, topic: &str, payload: Bytes) {
        let stats = self.bus.stats();
        while stats.queued.load(Ordering::Relaxed) >= IN_FLIGHT {
            tokio::task::yield_now().await;
        }
        self.bus.publish(topic, payload);
    }

    /// Probes every topic (again every 300 ms while missing) until each probe came back.
    async fn probe_until_live(&mut self, topics: &[String]) {
        let mut missing: HashSet<&str> = topics.iter().map(String::as_str).collect();
        while !missing.is_empty() {
            let round: Vec<&str> = missing.iter().copied().collect();
            for topic in round {
                self.probes += 1;
                self.publish_paced(topic, probe(self.probes)).await;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
            while !missing.is_empty() {
                match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                    Ok(Some(event)) => {
                        if let Some((topic, _)) = self.take(event) {
                            missing.remove(topic.as_str());
                        }
                    }
                    Ok(None) => panic!("bus closed"),
                    Err(_) => break,
                }
            }
        }
    }

    /// Publishes a probe on `topic` every ~100 µs until one of them (not an earlier call's) comes back.
    async fn until_delivered(&mut self, topic: &str) {
        let first = self.probes + 1;
        loop {
            self.probes += 1;
            self.bus.publish(topic, probe(self.probes));
            let sent = Instant::now();
            while sent.elapsed() < Duration::from_micros(100) {
                match self.rx.try_recv() {
                    Ok(event) => {
                        if let Some((probed, seq)) = self.take(event) {
                            if probed == topic && seq >= first {
                                return;
                            }
                        }
                    }
                    // Lets the bus's tasks (on this thread) run; the runtime polls the sockets first.
                    Err(_) => tokio::task::yield_now().await,
                }
            }
        }
    }

    async fn latency(&mut self) -> (Vec<Duration>, Vec<Duration>) {
        let mut to_live = Vec::with_capacity(LATENCY_SAMPLES);
        for i in 0..LATENCY_SAMPLES {
            let topic = format!("lat.{i}");
            let start = Instant::now();
            self.bus.subscribe(&topic);
            self.until_delivered(&topic).await;
            to_live.push(start.elapsed());
            self.bus.unsubscribe(&topic);
        }
        let hop_topic = "lat.hop".to_string();
        self.bus.subscribe(&hop_topic);
        self.until_delivered(&hop_topic).await;
        let mut hop = Vec::with_capacity(LATENCY_SAMPLES);
        for _ in 0..LATENCY_SAMPLES {
            let start = Instant::now();
            self.until_delivered(&hop_topic).await;
            hop.push(start.elapsed());
        }
        self.bus.unsubscribe(&hop_topic);
        (to_live, hop)
    }

    async fn publish(&self, routing: Routing, channels: u32, rate: u64, total: u64) -> Duration {
        let cpu = thread_cpu();
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < total {
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
            while sent < due {
                let channel = (sent % channels as u64) as u32;
                self.publish_paced(&routing.topic(channel), event(channel, sent as u32))
                    .await;
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let stats = self.bus.stats();
        while stats.published.load(Ordering::Relaxed) < total {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        thread_cpu() - cpu
    }

    async fn bulk(
        &mut self,
        tag: usize,
        mut steps: mpsc::UnboundedReceiver<()>,
        done: mpsc::UnboundedSender<()>,
    ) -> BulkTimes {
        let topics: Vec<String> = (0..BULK).map(|i| format!("bulk.{tag}.{i}")).collect();
        steps.recv().await;
        let (cpu0, start) = (thread_cpu(), Instant::now());
        for topic in &topics {
            self.bus.subscribe(topic);
        }
        self.probe_until_live(&topics).await;
        let (cpu1, live_after) = (thread_cpu(), start.elapsed());
        let _ = done.send(());
        steps.recv().await;
        let cpu2 = thread_cpu();
        self.probe_until_live(&topics).await;
        let cpu3 = thread_cpu();
        let _ = done.send(());
        steps.recv().await;
        let cpu4 = thread_cpu();
        for topic in &topics {
            self.bus.unsubscribe(topic);
        }
        // Subscriptions are applied in order on one connection: once a topic subscribed after the
        // unsubscribes is live, they were applied (per slot on Redis Cluster: close enough here).
        let sentinel = format!("bulk.{tag}.done");
        self.bus.subscribe(&sentinel);
        self.until_delivered(&sentinel).await;
        let cpu5 = thread_cpu();
        self.bus.unsubscribe(&sentinel);
        let _ = done.send(());
        BulkTimes {
            live_after,
            subscribe_and_probe_cpu: cpu1 - cpu0,
            probe_cpu: cpu3 - cpu2,
            unsubscribe_cpu: cpu5 - cpu4,
        }
    }

    async fn serve(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            tokio::select! {
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    match command {
                        Command::SubscribeLive(topics, done) => {
                            for topic in &topics {
                                self.bus.subscribe(topic);
                            }
                            self.probe_until_live(&topics).await;
                            let _ = done.send(());
                        }
                        Command::Interest(interest) => self.interest = interest,
                        Command::Mark(reply) => {
                            let _ = reply.send((thread_cpu(), self.counts));
                        }
                        Command::Publish { routing, channels, rate, total, done } => {
                            let cpu = self.publish(routing, channels, rate, total).await;
                            let _ = done.send(cpu);
                        }
                        Command::Latency(reply) => {
                            let _ = reply.send(self.latency().await);
                        }
                        Command::Bulk { tag, steps, done, result } => {
                            let _ = result.send(self.bulk(tag, steps, done).await);
                        }
                    }
                }
                event = self.rx.recv() => {
                    let Some(event) = event else { break };
                    self.take(event);
                }
            }
        }
        self.bus.shutdown().await;
    }
}

/// Starts a node on its own thread; dropping the handle stops it.
fn spawn_node(config: BusConfig) -> (mpsc::UnboundedSender<Command>, std::thread::JoinHandle<()>) {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let (tx, mut rx) = mpsc::channel(100_000);
            let bus = Bus::start(config, tx).expect("bus");
            wait_up(&mut rx).await;
            let _ = ready_tx.send(());
            let node = Node {
                bus,
                rx,
                interest: Vec::new(),
                counts: Counts::default(),
                probes: 0,
            };
            node.serve(commands_rx).await;
        });
    });
    ready_rx.recv().expect("node started");
    (commands_tx, thread)
}

fn ask<T>(
    node: &mpsc::UnboundedSender<Command>,
    command: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> T {
    let (tx, rx) = oneshot::channel();
    node.send(command(tx)).expect("node running");
    rx.blocking_recv().expect("node answered")
}

struct Params {
    nodes: usize,
    channels: u32,
    rate: u64,
    seconds: u64,
}

struct Cluster {
    nodes: Vec<mpsc::UnboundedSender<Command>>,
    publisher: mpsc::UnboundedSender<Command>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Cluster {
    fn start(broker: &Broker, nodes: usize, tag: &str) -> Cluster {
        let prefix = format!("bench-topics-{}-{tag}", std::process::id());
        let mut threads = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..=nodes {
            let (handle, thread) = spawn_node(broker.config(&prefix));
            handles.push(handle);
            threads.push(thread);
        }
        let publisher = handles.pop().expect("publisher");
        Cluster {
            nodes: handles,
            publisher,
            threads,
        }
    }

    fn stop(self) {
        drop(self.nodes);
        drop(self.publisher);
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The broker's CPU per second while nobody uses it.
fn broker_idle_rate(broker: &Broker) -> f64 {
    let (cpu0, start) = (broker.cpu(), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    (broker.cpu() - cpu0).as_secs_f64() / start.elapsed().as_secs_f64()
}

fn us(d: Duration, per: u64) -> f64 {
    d.as_secs_f64() * 1e6 / per.max(1) as f64
}

/// Events at a steady rate with each channel wanted by `m` nodes, routed one way.
fn fanout(broker: &Broker, idle: f64, params: &Params, routing: Routing, m: usize) {
    let k = params.nodes;
    let cluster = Cluster::start(broker, k, &format!("{}-{m}", routing.name()));
    let wants = |node: usize, channel: u32| (0..m).any(|j| (channel as usize + j) % k == node);
    for (n, node) in cluster.nodes.iter().enumerate() {
        let interest: Vec<bool> = (0..params.channels).map(|c| wants(n, c)).collect();
        let topics: Vec<String> = match routing {
            Routing::Shared => vec!["all".into()],
            Routing::PerChannel => (0..params.channels)
                .filter(|&c| interest[c as usize])
                .map(|c| routing.topic(c))
                .collect(),
        };
        node.send(Command::Interest(interest))
            .expect("node running");
        ask(node, |done| Command::SubscribeLive(topics, done));
    }
    let total = params.rate * params.seconds;
    let marks = |nodes: &[mpsc::UnboundedSender<Command>]| -> Vec<(Duration, Counts)> {
        nodes.iter().map(|n| ask(n, Command::Mark)).collect()
    };
    let before = marks(&cluster.nodes);
    let (broker0, start) = (broker.cpu(), Instant::now());
    let publisher_cpu = ask(&cluster.publisher, |done| Command::Publish {
        routing,
        channels: params.channels,
        rate: params.rate,
        total,
        done,
    });
    let expected_wanted = total * m as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let after = marks(&cluster.nodes);
        let wanted: u64 = after
            .iter()
            .zip(&before)
            .map(|(a, b)| a.1.wanted - b.1.wanted)
            .sum();
        if wanted >= expected_wanted || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let seconds = start.elapsed().as_secs_f64();
    let broker_cpu = (broker.cpu() - broker0).as_secs_f64() - idle * seconds;
    let nodes_cpu: Duration = after.iter().zip(&before).map(|(a, b)| a.0 - b.0).sum();
    let received: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.1.received - b.1.received)
        .sum();
    let wanted: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.1.wanted - b.1.wanted)
        .sum();
    let shape = if m == 1 {
        "sparse".to_string()
    } else if m == k {
        "broadcast".to_string()
    } else {
        format!("m={m}")
    };
    println!(
        "{:<14} {:<10} {:<12} nodes CPU {:>7.2} us/event ({:>5.2} us/received)   publisher {:>5.2} us/event   broker {:>6.2} us/event   received {received} (wanted {wanted} of {expected_wanted})",
        broker.name,
        shape,
        routing.name(),
        us(nodes_cpu, total),
        us(nodes_cpu, received),
        us(publisher_cpu, total),
        broker_cpu * 1e6 / total as f64,
    );
    cluster.stop();
}

fn quantile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[index].as_secs_f64() * 1e3
}

fn interest_changes(broker: &Broker, idle: f64, nodes: usize) {
    let cluster = Cluster::start(broker, nodes, "changes");
    let (mut to_live, mut hop) = ask(&cluster.publisher, Command::Latency);
    println!(
        "{:<14} subscribe -> live: median {:.3} ms, p99 {:.3} ms   (one publish hop on a live topic: median {:.3} ms, p99 {:.3} ms)",
        broker.name,
        quantile(&mut to_live, 0.5),
        quantile(&mut to_live, 0.99),
        quantile(&mut hop, 0.5),
        quantile(&mut hop, 0.99),
    );

    // Every node subscribes BULK topics at once; each step is timed on the broker between the nodes' steps.
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut steps = Vec::new();
    let mut results = Vec::new();
    for (n, node) in cluster.nodes.iter().enumerate() {
        let (step_tx, step_rx) = mpsc::unbounded_channel();
        let (result_tx, result_rx) = oneshot::channel();
        node.send(Command::Bulk {
            tag: n,
            steps: step_rx,
            done: done_tx.clone(),
            result: result_tx,
        })
        .expect("node running");
        steps.push(step_tx);
        results.push(result_rx);
    }
    let mut step = || -> f64 {
        let (cpu0, start) = (broker.cpu(), Instant::now());
        for s in &steps {
            s.send(()).expect("node running");
        }
        for _ in 0..nodes {
            done_rx.blocking_recv().expect("node step");
        }
        (broker.cpu() - cpu0).as_secs_f64() - idle * start.elapsed().as_secs_f64()
    };
    let rss0 = broker.rss();
    let broker_subscribe_and_probe = step();
    let rss1 = broker.rss();
    let broker_probe = step();
    let broker_unsubscribe = step();
    let rss2 = broker.rss();
    let times: Vec<BulkTimes> = results
        .into_iter()
        .map(|r| r.blocking_recv().expect("bulk"))
        .collect();
    let total = (nodes * BULK) as f64;
    let mut live: Vec<Duration> = times.iter().map(|t| t.live_after).collect();
    let sub_cpu: Duration = times
        .iter()
        .map(|t| t.subscribe_and_probe_cpu.saturating_sub(t.probe_cpu))
        .sum();
    let unsub_cpu: Duration = times.iter().map(|t| t.unsubscribe_cpu).sum();
    println!(
        "{:<14} {nodes} nodes x {BULK} topics: all live after median {:.0} ms (max {:.0} ms)   node CPU {:.2} us/subscribe {:.2} us/unsubscribe   broker CPU {:.2} us/subscribe {:.2} us/unsubscribe   broker RSS +{:.0} bytes/subscription (after unsubscribing: {:+.0} bytes/subscription)",
        broker.name,
        quantile(&mut live, 0.5),
        quantile(&mut live, 1.0),
        sub_cpu.as_secs_f64() * 1e6 / total,
        unsub_cpu.as_secs_f64() * 1e6 / total,
        (broker_subscribe_and_probe - broker_probe).max(0.0) * 1e6 / total,
        broker_unsubscribe * 1e6 / total,
        (rss1 as f64 - rss0 as f64) / total,
        (rss2 as f64 - rss0 as f64) / total,
    );
    cluster.stop();
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let params = Params {
        nodes: args.first().copied().unwrap_or(8) as usize,
        channels: args.get(1).copied().unwrap_or(1_000) as u32,
        rate: args.get(2).copied().unwrap_or(2_000),
        seconds: args.get(3).copied().unwrap_or(5),
    };
    assert!(params.nodes >= 2 && params.channels >= 1 && params.rate >= 1);
    let brokers = common::brokers();
    assert!(
        !brokers.is_empty(),
        "no broker compiled in: run with --features redis, redis-cluster and/or nats"
    );
    println!(
        "{} nodes, {} channels, {} events/s of {PAYLOAD} bytes for {} s; sparse = each channel on 1 node, broadcast = on every node",
        params.nodes, params.channels, params.rate, params.seconds
    );
    for broker in &brokers {
        let idle = broker_idle_rate(broker);
        for m in [1, params.nodes] {
            for routing in [Routing::Shared, Routing::PerChannel] {
                fanout(broker, idle, &params, routing, m);
            }
        }
        interest_changes(broker, idle, params.nodes);
    }
}
