//! Messages/s and CPU per message through each compiled-in broker on loopback, with the bus on a
//! current-thread tokio runtime as on the I/O shard.
//!
//! ```sh
//! source scripts/services/redis.sh; source scripts/services/redis-cluster.sh; source scripts/services/nats.sh
//! cargo bench -p sockudo-bus --features redis-cluster,nats --bench throughput [-- MESSAGES PAYLOAD_BYTES]
//! ```
//!
//! Two cases per broker: `publish` (one bus publishing, nobody subscribed: the pipelined publish path) and
//! `pub->sub` (one bus publishing, another subscribed, timed until the last message arrives). CPU is this
//! process's user+system time (both buses) and the broker's, from /proc, per message.

// Without a transport compiled in the bench only says so; its helpers are unused then.
#![cfg_attr(
    not(any(feature = "redis", feature = "nats")),
    allow(dead_code, unused_mut)
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{process_cpu, wait_up, Broker};
use sockudo_bus::{Bus, BusEvent};
use tokio::sync::mpsc;

/// Cap on messages waiting in the outbox while the bench publishes (the outbox bound is 10,000).
const IN_FLIGHT: u64 = 4_000;

/// Publishes `count` messages on `topics` (round robin), keeping at most IN_FLIGHT in the outbox.
async fn publish_all(bus: &Bus, topics: &[String], count: u64, payload: &Bytes) {
    let stats = bus.stats();
    for i in 0..count {
        while stats.queued.load(std::sync::atomic::Ordering::Relaxed) >= IN_FLIGHT {
            tokio::task::yield_now().await;
        }
        bus.publish(&topics[i as usize % topics.len()], payload.clone());
    }
}

struct Measured {
    seconds: f64,
    own_cpu: Duration,
    broker_cpu: Duration,
    count: u64,
}

impl Measured {
    fn print(&self, broker: &str, case: &str, extra: &str) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.count as f64;
        println!(
            "{broker:<14} {case:<9} {:>10.0} msg/s   bus CPU {:>6.2} us/msg   broker CPU {:>6.2} us/msg   {extra}",
            self.count as f64 / self.seconds,
            per(self.own_cpu),
            per(self.broker_cpu),
        );
    }
}

async fn publish_only(broker: &Broker, count: u64, payload: &Bytes) -> Measured {
    let (tx, mut rx) = mpsc::channel(1024);
    let bus = Bus::start(broker.config(&format!("bench-{}", std::process::id())), tx).expect("bus");
    wait_up(&mut rx).await;
    let topics: Vec<String> = (0..64).map(|i| format!("ch.app.room-{i}")).collect();
    let (cpu0, broker0, start) = (process_cpu(), broker.cpu(), Instant::now());
    publish_all(&bus, &topics, count, payload).await;
    let stats = bus.stats();
    while stats.published.load(std::sync::atomic::Ordering::Relaxed) < count {
        tokio::task::yield_now().await;
    }
    let measured = Measured {
        seconds: start.elapsed().as_secs_f64(),
        own_cpu: process_cpu() - cpu0,
        broker_cpu: broker.cpu() - broker0,
        count,
    };
    assert_eq!(stats.dropped(), 0);
    bus.shutdown().await;
    measured
}

async fn pub_sub(broker: &Broker, count: u64, payload: &Bytes) -> (Measured, u64) {
    let prefix = format!("bench-ps-{}", std::process::id());
    let (sub_tx, mut sub_rx) = mpsc::channel(100_000);
    let (pub_tx, mut pub_rx) = mpsc::channel(1024);
    let subscriber = Bus::start(broker.config(&prefix), sub_tx).expect("bus");
    let publisher = Bus::start(broker.config(&prefix), pub_tx).expect("bus");
    wait_up(&mut sub_rx).await;
    wait_up(&mut pub_rx).await;
    let topics: Vec<String> = (0..64).map(|i| format!("ch.app.room-{i}")).collect();
    for topic in &topics {
        subscriber.subscribe(topic);
    }
    // Wait until every subscription is live: probe each topic until its probe comes back.
    let mut live = std::collections::HashSet::new();
    while live.len() < topics.len() {
        for topic in topics.iter().filter(|t| !live.contains(*t)) {
            publisher.publish(topic, Bytes::from_static(b"probe"));
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline.into(), sub_rx.recv()).await {
            if let BusEvent::Message { topic, .. } = event {
                live.insert(topic);
            }
        }
    }
    let (cpu0, broker0, start) = (process_cpu(), broker.cpu(), Instant::now());
    let receive = async {
        let mut received = 0u64;
        while received < count {
            match tokio::time::timeout(Duration::from_secs(10), sub_rx.recv()).await {
                Ok(Some(BusEvent::Message { payload: p, .. })) if p.len() == payload.len() => {
                    received += 1
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        received
    };
    let (_, received) = tokio::join!(publish_all(&publisher, &topics, count, payload), receive);
    let measured = Measured {
        seconds: start.elapsed().as_secs_f64(),
        own_cpu: process_cpu() - cpu0,
        broker_cpu: broker.cpu() - broker0,
        count: received.max(1),
    };
    let dropped = subscriber.stats().dropped() + publisher.stats().dropped();
    subscriber.shutdown().await;
    publisher.shutdown().await;
    (measured, dropped)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let count = args.first().copied().unwrap_or(200_000);
    let payload = Bytes::from(vec![b'x'; args.get(1).copied().unwrap_or(100) as usize]);
    let brokers = common::brokers();
    assert!(
        !brokers.is_empty(),
        "no broker compiled in: run with --features redis, redis-cluster and/or nats"
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("{count} messages of {} bytes over 64 topics", payload.len());
    runtime.block_on(async {
        for broker in &brokers {
            publish_only(broker, count, &payload)
                .await
                .print(broker.name, "publish", "");
            let (measured, dropped) = pub_sub(broker, count, &payload).await;
            measured.print(
                broker.name,
                "pub->sub",
                &format!("received {} dropped {dropped}", measured.count),
            );
        }
    });
}
