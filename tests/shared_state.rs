//! State shared through Redis by nodes that do not otherwise talk (local adapter): a cache channel's last
//! event published on one node is replayed on another (and read with `?info=cache`), a REST rate limit is
//! counted once for the pair, and a Redis outage is survived (fail open, counted) and healed. Runs on a
//! Redis of its own and on the test Redis Cluster (`scripts/services/redis-cluster.sh`, which
//! `scripts/test.sh` starts; missing: the test fails).

mod common;
use common::broker::{Broker, Driver};
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Environment and config of a node keeping its cache and rate limits in `broker` (prefix `tag`, so tests
/// sharing the Redis Cluster never see each other's keys).
fn shared_node(broker: &Broker, tag: &str, app: Value, metrics_port: Option<u16>) -> Server {
    let driver = broker.driver_name();
    let mut env = vec![
        ("CACHE_DRIVER".to_string(), driver.to_string()),
        ("RATE_LIMITER_DRIVER".to_string(), driver.to_string()),
    ];
    match broker.driver {
        Driver::Redis => env.push((
            "REDIS_URL".into(),
            format!("redis://127.0.0.1:{}", broker.port),
        )),
        _ => env.extend(
            broker
                .node_env()
                .into_iter()
                .filter(|(k, _)| k == "REDIS_CLUSTER_NODES"),
        ),
    }
    if let Some(port) = metrics_port {
        env.push(("METRICS_ENABLED".into(), "true".into()));
        env.push(("METRICS_HOST".into(), "127.0.0.1".into()));
        env.push(("METRICS_PORT".into(), port.to_string()));
    }
    let prefix = format!("t{}-{}-{tag}:", std::process::id(), broker.port);
    Server::start_with(ServerOptions {
        shards: 2,
        config: json!({
            "cache": { "redis": { "prefix": format!("{prefix}cache:") } },
            "rate_limiter": { "redis": { "prefix": format!("{prefix}rl:") } },
            "app_manager": { "array": { "apps": [app_json(app)] } },
        }),
        env,
    })
}

/// Subscribes to `channel` and returns what follows `subscription_succeeded` (the replay or the miss).
fn replay_on(server: &Server, channel: &str) -> Value {
    let mut client = server.client();
    client.subscribe(channel);
    next_within(&mut client, Duration::from_secs(5)).expect("a replay or pusher:cache_miss")
}

fn cache_info(server: &Server, channel: &str) -> Value {
    let (status, _, body) = server.signed(
        "GET",
        &format!("/apps/{APP_ID}/channels/{channel}"),
        &[("info", "cache")],
        b"",
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["cache"].clone()
}

fn cache_is_replayed_on_another_node(driver: Driver) {
    let broker = Broker::start(driver);
    let a = shared_node(&broker, "cache", json!({}), None);
    a.publish(&["cache-news"], "headline", "{\"n\":1}");
    a.publish(&["cache-news"], "headline", "{\"n\":2}");
    // A node started after the publish, sharing nothing with `a` but Redis.
    let b = shared_node(&broker, "cache", json!({}), None);
    let replay = replay_on(&b, "cache-news");
    assert_eq!(replay["event"], "headline", "{replay}");
    assert_eq!(replay["channel"], "cache-news");
    assert_eq!(
        replay["data"], "{\"n\":2}",
        "the last event, not an older one"
    );
    let info = cache_info(&b, "cache-news");
    assert_eq!(info["data"], "{\"n\":2}", "{info}");
    let ttl = info["ttl"].as_u64().expect("ttl");
    assert!(
        (1790..=1800).contains(&ttl),
        "ttl {ttl} (channel_limits.cache_ttl 1800)"
    );
    // Nothing published: a miss on both nodes.
    assert_eq!(replay_on(&b, "cache-quiet")["event"], "pusher:cache_miss");
    assert_eq!(cache_info(&b, "cache-quiet"), Value::Null);
    // Private and presence cache channels read the same store.
    a.publish(&["presence-cache-room"], "state", "{\"s\":1}");
    let mut member = b.client();
    member.join_presence("presence-cache-room", "u1", json!({}));
    let replay = next_within(&mut member, Duration::from_secs(5)).expect("presence-cache replay");
    assert_eq!(
        (&replay["event"], &replay["data"]),
        (&json!("state"), &json!("{\"s\":1}")),
        "{replay}"
    );
    // A newer event published on `b` is what a third node replays.
    b.publish(&["cache-news"], "headline", "{\"n\":3}");
    let c = shared_node(&broker, "cache", json!({}), None);
    assert_eq!(replay_on(&c, "cache-news")["data"], "{\"n\":3}");
}

#[test]
fn cache_is_replayed_on_another_node_redis() {
    cache_is_replayed_on_another_node(Driver::Redis);
}

#[test]
fn cache_is_replayed_on_another_node_redis_cluster() {
    cache_is_replayed_on_another_node(Driver::RedisCluster);
}

fn publish_status(server: &Server, channel: &str) -> u16 {
    let body = json!({ "name": "e", "channels": [channel], "data": "{}" }).to_string();
    server
        .signed(
            "POST",
            &format!("/apps/{APP_ID}/events"),
            &[],
            body.as_bytes(),
        )
        .0
}

/// Publishes `n` events alternately on `nodes` as fast as they answer; returns how many got 200 (every other
/// answer must be 429).
fn burst(nodes: &[&Server], n: usize) -> usize {
    let mut ok = 0;
    for i in 0..n {
        match publish_status(nodes[i % nodes.len()], "limited") {
            200 => ok += 1,
            429 => {}
            other => panic!("publish answered {other}"),
        }
    }
    ok
}

/// Waits for the start of a fresh second, so a burst (well under a second) meets one window.
fn at_second_start() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    std::thread::sleep(
        Duration::from_nanos(u64::from(1_000_000_000 - nanos)) + Duration::from_millis(5),
    );
}

const LIMIT: usize = 20;

fn limit_is_shared_by_two_nodes(driver: Driver) {
    let broker = Broker::start(driver);
    let app = json!({ "max_backend_events_per_second": LIMIT, "max_read_requests_per_second": 5 });
    let (a, b) = (
        shared_node(&broker, "rl", app.clone(), None),
        shared_node(&broker, "rl", app, None),
    );
    // Redis counts for both nodes: the pair grants the app's limit, not twice it. (The window slides: a
    // burst crossing a window boundary may get a few more, never 2x.)
    std::thread::sleep(Duration::from_millis(1100));
    at_second_start();
    let ok = burst(&[&a, &b], 3 * LIMIT);
    assert!(
        (LIMIT..LIMIT * 3 / 2).contains(&ok),
        "{ok} of {} publishes accepted by two nodes at a limit of {LIMIT}/s",
        3 * LIMIT
    );
    // Read requests too.
    std::thread::sleep(Duration::from_millis(1100));
    let mut reads_ok = 0;
    for i in 0..15 {
        let node = if i % 2 == 0 { &a } else { &b };
        let (status, _, _) = node.signed("GET", &format!("/apps/{APP_ID}/channels"), &[], b"");
        assert!(status == 200 || status == 429, "{status}");
        reads_ok += usize::from(status == 200);
    }
    assert!(
        (5..8).contains(&reads_ok),
        "{reads_ok} reads accepted at 5/s"
    );
    // The window slides on: a second later the app may publish again.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(publish_status(&b, "limited"), 200);
}

#[test]
fn limit_is_shared_by_two_nodes_redis() {
    limit_is_shared_by_two_nodes(Driver::Redis);
}

#[test]
fn limit_is_shared_by_two_nodes_redis_cluster() {
    limit_is_shared_by_two_nodes(Driver::RedisCluster);
}

/// The control: with the memory limiter each node counts alone, so the pair grants twice the limit.
#[test]
fn memory_limiter_counts_per_node() {
    let app = json!({ "max_backend_events_per_second": LIMIT });
    let start = || {
        Server::start_with(ServerOptions {
            config: json!({ "app_manager": { "array": { "apps": [app_json(app.clone())] } } }),
            ..ServerOptions::default()
        })
    };
    let (a, b) = (start(), start());
    at_second_start();
    let ok = burst(&[&a, &b], 3 * LIMIT);
    assert!(ok >= 2 * LIMIT, "{ok} accepted");
}

#[test]
fn redis_stopped_mid_run_fails_open_and_recovers() {
    let mut broker = Broker::start(Driver::Redis);
    let metrics_port = free_port();
    let app = json!({ "max_backend_events_per_second": 5 });
    let a = shared_node(&broker, "outage", app.clone(), Some(metrics_port));
    let b = shared_node(&broker, "outage", app, None);
    std::thread::sleep(Duration::from_millis(1100));
    at_second_start();
    assert!(burst(&[&a], 15) < 10, "limited while Redis runs");
    assert_eq!(metric(metrics_port, "sockudo_rate_limiter_backend_up"), 1.0);
    assert_eq!(
        metric(metrics_port, "sockudo_rate_limiter_errors_total"),
        0.0
    );

    broker.kill();
    // Fail open: every publish is served, none waits long, and the failures are counted.
    let started = Instant::now();
    assert_eq!(burst(&[&a], 30), 30, "served unlimited while Redis is down");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "publishes waited on the dead limiter: {:?}",
        started.elapsed()
    );
    assert!(metric(metrics_port, "sockudo_rate_limiter_errors_total") >= 1.0);
    assert_eq!(metric(metrics_port, "sockudo_rate_limiter_backend_up"), 0.0);
    // Cache channels keep working on the node (from memory); the write to Redis is lost and counted.
    a.publish(&["cache-outage"], "e", "{\"during\":true}");
    assert_eq!(replay_on(&a, "cache-outage")["data"], "{\"during\":true}");
    eventually(Duration::from_secs(5), "cache errors counted", || {
        metric(metrics_port, "sockudo_cache_errors_total") >= 1.0
    });
    // On the other node: a miss (not an error, not a hang).
    assert_eq!(replay_on(&b, "cache-outage")["event"], "pusher:cache_miss");

    broker.restart();
    // Reconnects by itself: limited again, and the cache is shared again.
    eventually(Duration::from_secs(15), "the limiter is back", || {
        std::thread::sleep(Duration::from_millis(1100));
        burst(&[&a, &b], 15) < 12
    });
    assert_eq!(metric(metrics_port, "sockudo_rate_limiter_backend_up"), 1.0);
    std::thread::sleep(Duration::from_millis(2100));
    a.publish(&["cache-after"], "e", "{\"after\":true}");
    assert_eq!(replay_on(&b, "cache-after")["data"], "{\"after\":true}");
}

/// `cache.driver = none`: nothing is kept, every subscriber gets `pusher:cache_miss`.
#[test]
fn cache_driver_none_always_misses() {
    let server = Server::start_with(ServerOptions {
        env: vec![("CACHE_DRIVER".into(), "none".into())],
        ..ServerOptions::default()
    });
    server.publish(&["cache-none"], "e", "{}");
    assert_eq!(
        replay_on(&server, "cache-none")["event"],
        "pusher:cache_miss"
    );
    assert_eq!(cache_info(&server, "cache-none"), Value::Null);
    // Events are still delivered live.
    let mut live = server.client();
    live.subscribe("cache-none");
    assert_eq!(
        next_within(&mut live, Duration::from_secs(5)).expect("miss")["event"],
        "pusher:cache_miss"
    );
    server.publish(&["cache-none"], "e", "{\"live\":1}");
    assert_eq!(
        next_within(&mut live, Duration::from_secs(5)).expect("live event")["data"],
        "{\"live\":1}"
    );
}

/// A Redis that stops answering (SIGSTOP: connections open, no replies) is as good as down: every publish is
/// served within the limiter's bound, counted; once it answers again the limit applies again.
#[test]
fn a_frozen_redis_fails_open_within_the_bound() {
    let broker = Broker::start(Driver::Redis);
    let metrics_port = free_port();
    let app = json!({ "max_backend_events_per_second": 5 });
    let a = shared_node(&broker, "frozen", app, Some(metrics_port));
    std::thread::sleep(Duration::from_millis(1100));
    at_second_start();
    assert!(burst(&[&a], 15) < 10, "limited while Redis answers");

    broker.pause();
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(
            publish_status(&a, "limited"),
            200,
            "served while Redis is frozen"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a publish waited {:?} on a frozen limiter",
            started.elapsed()
        );
    }
    assert!(metric(metrics_port, "sockudo_rate_limiter_errors_total") >= 1.0);

    broker.resume();
    eventually(Duration::from_secs(15), "the limiter is back", || {
        std::thread::sleep(Duration::from_millis(1100));
        burst(&[&a], 15) < 12
    });
}
