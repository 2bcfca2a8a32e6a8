//! Several sockudo processes on one bus form one Pusher server: events, presence, REST reads and
//! terminations cross nodes; a killed node's members go away; a restarted bus heals. Every scenario runs on
//! each driver (Redis, Redis Cluster, NATS) with real server processes and real brokers on loopback.

mod common;
use common::broker::{Broker, Driver};
use common::presence::*;
use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn node(broker: &Broker, shards: usize) -> Server {
    node_with(broker, shards, json!({}))
}

fn node_with(broker: &Broker, shards: usize, app: Value) -> Server {
    Server::start_with(ServerOptions {
        shards,
        config: json!({
            "adapter": broker.adapter_config(),
            "app_manager": { "array": { "apps": [app_json(app)] } },
        }),
        env: broker.node_env(),
    })
}

/// Waits until an event published on `from` reaches a subscriber on `to` (the nodes see each other).
fn wait_linked(from: &Server, to: &Server) {
    let channel = format!("probe-{}", from.port);
    let mut probe = to.client();
    probe.subscribe(&channel);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        from.publish(&[&channel], "probe", "{}");
        if next_within(&mut probe, Duration::from_millis(200)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes {} and {} never linked",
            from.port,
            to.port
        );
    }
    // Drain probes still in flight.
    while next_within(&mut probe, Duration::from_millis(300)).is_some() {}
}

fn get(server: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, _, body) = server.signed("GET", path, params, b"");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

fn events_reach_every_node_exactly_once_in_order(driver: Driver) {
    let broker = Broker::start(driver);
    let (a, b) = (node(&broker, 2), node(&broker, 2));
    wait_linked(&a, &b);
    wait_linked(&b, &a);
    let mut clients: Vec<Client> = vec![a.client(), a.client(), b.client(), b.client()];
    for c in &mut clients {
        c.subscribe("news");
    }
    for (origin, server) in [("a", &a), ("b", &b)] {
        for i in 0..100 {
            server.publish(
                &["news"],
                "n",
                &json!({"origin": origin, "i": i}).to_string(),
            );
        }
    }
    for (k, c) in clients.iter_mut().enumerate() {
        let mut next = [0i64, 0i64];
        for _ in 0..200 {
            let msg = c.next_event();
            assert_eq!(msg["event"], "n", "client {k}: {msg}");
            let data: Value = serde_json::from_str(msg["data"].as_str().unwrap()).unwrap();
            let slot = usize::from(data["origin"] == "b");
            assert_eq!(
                data["i"], next[slot],
                "client {k}: out of order or repeated: {msg}"
            );
            next[slot] += 1;
        }
        assert!(
            c.is_silent_for(Duration::from_millis(300)),
            "client {k}: more than 200 events"
        );
    }

    // `socket_id` exclusion across nodes: published on b, excluding a socket on a.
    let excluded = clients[0].socket_id.clone();
    let body = json!({"name":"x","channel":"news","data":"{}","socket_id":excluded}).to_string();
    let (status, _, _) = b.signed(
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    for (k, c) in clients.iter_mut().enumerate().skip(1) {
        assert_eq!(c.next_event()["event"], "x", "client {k}");
    }
    assert!(
        clients[0].is_silent_for(Duration::from_millis(500)),
        "excluded socket got the event"
    );

    // Client events cross nodes and are never echoed.
    let (mut sender, mut receiver) = (a.client(), b.client());
    sender.subscribe_private("private-chat");
    receiver.subscribe_private("private-chat");
    sender.send(json!({"event":"client-hi","channel":"private-chat","data":{"n":1}}));
    let got = receiver.next_event();
    assert_eq!(
        (got["event"].as_str(), got["channel"].as_str()),
        (Some("client-hi"), Some("private-chat"))
    );
    assert!(
        sender.is_silent_for(Duration::from_millis(300)),
        "client event echoed"
    );
    assert!(
        receiver.is_silent_for(Duration::from_millis(300)),
        "client event twice"
    );
}

fn rest_reads_and_terminations_cover_every_node(driver: Driver) {
    let broker = Broker::start(driver);
    let counted = json!({"enable_subscription_count": true});
    let (a, b) = (
        node_with(&broker, 2, counted.clone()),
        node_with(&broker, 2, counted),
    );
    wait_linked(&a, &b);
    wait_linked(&b, &a);
    // Counts of channels joined earlier may arrive before a later join's confirmation, so the joins are sent
    // without waiting for answers.
    let mut socks = vec![a.client(), b.client(), b.client()];
    for (i, channel) in [(0, "news"), (1, "news"), (2, "news"), (2, "sports")] {
        socks[i].send(json!({"event":"pusher:subscribe","data":{"channel":channel}}));
    }
    for (i, user) in [(0, "alice"), (1, "bob"), (2, "bob")] {
        send_join(&mut socks[i], "presence-room", user);
    }
    let mut on_a = socks.remove(0);
    let base = format!("/apps/{APP_ID}");
    // Presence state arrives asynchronously: poll until it settles.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let v = get(
            &a,
            &format!("{base}/channels/presence-room"),
            &[("info", "user_count")],
        );
        if v["user_count"] == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "user_count never reached 2: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for server in [&a, &b] {
        let v = get(
            server,
            &format!("{base}/channels/news"),
            &[("info", "subscription_count")],
        );
        assert_eq!(v["subscription_count"], 3, "{v}");
        assert_eq!(v["occupied"], true);
        let v = get(
            server,
            &format!("{base}/channels"),
            &[("info", "subscription_count")],
        );
        assert_eq!(v["channels"]["news"]["subscription_count"], 3, "{v}");
        assert_eq!(v["channels"]["sports"]["subscription_count"], 1, "{v}");
        assert_eq!(
            v["channels"]["presence-room"]["subscription_count"], 3,
            "{v}"
        );
        let v = get(server, &format!("{base}/channels/presence-room/users"), &[]);
        let ids: BTreeSet<&str> = v["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, BTreeSet::from(["alice", "bob"]), "{v}");
    }

    // Every subscriber hears the cluster's subscription count: the last announcement a socket got is 3.
    let mut last = 0;
    while let Some(msg) = next_within(&mut on_a, Duration::from_millis(400)) {
        if msg["event"] == "pusher_internal:subscription_count" && msg["channel"] == "news" {
            let data: Value = serde_json::from_str(msg["data"].as_str().unwrap()).unwrap();
            last = data["subscription_count"].as_i64().unwrap();
        }
    }
    assert_eq!(last, 3, "subscription_count announced to a socket on a");

    // terminate_connections on a closes the user's sockets on b.
    let mut target = b.client();
    let answer = target.signin(&json!({"id": "carol"}).to_string());
    assert_eq!(answer["event"], "pusher:signin_success", "{answer}");
    let (status, _, body) = a.signed(
        "POST",
        &format!("{base}/users/carol/terminate_connections"),
        &[],
        b"{}",
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    assert_eq!(target.close_code(), Some(4009));
}

fn presence_is_one_member_list_with_ordered_changes(driver: Driver) {
    let broker = Broker::start(driver);
    let (a, b) = (node(&broker, 3), node(&broker, 3));
    wait_linked(&a, &b);
    wait_linked(&b, &a);
    let servers = [&a, &b];
    for round in 0..2 {
        let channel = format!("presence-race-{round}");
        let mut clients: Vec<Client> = (0..30).map(|i| servers[i % 2].client()).collect();
        let mut views: Vec<MemberView> =
            clients.iter().map(|_| MemberView::new(&channel)).collect();
        // Users u0..u4 have a socket on each node.
        for (i, c) in clients.iter_mut().enumerate() {
            send_join(c, &channel, &format!("u{}", i % 25));
        }
        let all: BTreeSet<String> = (0..25).map(|i| format!("u{i}")).collect();
        for (i, (c, v)) in clients.iter_mut().zip(views.iter_mut()).enumerate() {
            settle(
                c,
                v,
                &all,
                &format!("round {round} socket {i} (node {})", i % 2),
            );
        }
        // Ten users leave and ten join, on both nodes at once; u0 loses one of its two sockets only.
        let leaving: Vec<Client> = clients.drain(5..15).collect();
        views.drain(5..15);
        let first_u0 = clients.remove(0);
        views.remove(0);
        let mut joiners: Vec<Client> = (0..10).map(|i| servers[i % 2].client()).collect();
        let mut joiner_views: Vec<MemberView> =
            joiners.iter().map(|_| MemberView::new(&channel)).collect();
        for (i, c) in joiners.iter_mut().enumerate() {
            send_join(c, &channel, &format!("n{i}"));
        }
        drop(leaving);
        drop(first_u0);
        let mut expected: BTreeSet<String> =
            (0..5).chain(15..25).map(|i| format!("u{i}")).collect();
        expected.extend((0..10).map(|i| format!("n{i}")));
        for (i, (c, v)) in clients.iter_mut().zip(views.iter_mut()).enumerate() {
            settle(c, v, &expected, &format!("round {round} stayer {i}"));
        }
        for (i, (c, v)) in joiners.iter_mut().zip(joiner_views.iter_mut()).enumerate() {
            settle(c, v, &expected, &format!("round {round} joiner {i}"));
        }
    }
}

fn a_killed_node_has_its_members_removed(driver: Driver) {
    let broker = Broker::start(driver);
    let a = node(&broker, 2);
    let mut c = node(&broker, 2);
    wait_linked(&a, &c);
    wait_linked(&c, &a);
    let mut observer = a.client();
    let mut view = MemberView::new("presence-kill");
    send_join(&mut observer, "presence-kill", "watcher");
    let mut doomed = c.client();
    send_join(&mut doomed, "presence-kill", "doomed");
    let both: BTreeSet<String> = ["watcher", "doomed"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    settle(&mut observer, &mut view, &both, "observer");
    let killed_at = Instant::now();
    unsafe {
        libc::kill(c.pid() as i32, libc::SIGKILL);
    }
    let _ = c.child.take().map(|mut ch| ch.wait());
    let only: BTreeSet<String> = BTreeSet::from(["watcher".to_string()]);
    settle(&mut observer, &mut view, &only, "observer after the kill");
    let took = killed_at.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "members of a dead node removed after {took:?}"
    );
    let v = get(
        &a,
        &format!("/apps/{APP_ID}/channels/presence-kill/users"),
        &[],
    );
    assert_eq!(v, json!({"users":[{"id":"watcher"}]}));
}

fn watchlists_follow_users_on_every_node(driver: Driver) {
    let broker = Broker::start(driver);
    let app = json!({"enable_watchlist_events": true});
    let (a, b) = (
        node_with(&broker, 2, app.clone()),
        node_with(&broker, 2, app),
    );
    wait_linked(&a, &b);
    wait_linked(&b, &a);
    let events_of = |msg: &Value| -> Value {
        assert_eq!(msg["event"], "pusher_internal:watchlist_events", "{msg}");
        serde_json::from_str::<Value>(msg["data"].as_str().unwrap()).unwrap()["events"].clone()
    };
    let mut carol = b.client();
    assert_eq!(
        carol.signin(r#"{"id":"carol"}"#)["event"],
        "pusher:signin_success"
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut alice = a.client();
    assert_eq!(
        alice.signin(r#"{"id":"alice","watchlist":["bob","carol"]}"#)["event"],
        "pusher:signin_success"
    );
    assert_eq!(
        events_of(&alice.next_event()),
        json!([{"name":"online","user_ids":["carol"]}])
    );
    // Bob signs in on both nodes: one online event; offline only after his last socket anywhere.
    let (mut bob_a, mut bob_b) = (a.client(), b.client());
    bob_b.signin(r#"{"id":"bob"}"#);
    assert_eq!(
        events_of(&alice.next_event()),
        json!([{"name":"online","user_ids":["bob"]}])
    );
    bob_a.signin(r#"{"id":"bob"}"#);
    assert!(
        alice.is_silent_for(Duration::from_millis(400)),
        "second socket: no event"
    );
    drop(bob_b);
    assert!(
        alice.is_silent_for(Duration::from_millis(400)),
        "still online on a"
    );
    drop(bob_a);
    assert_eq!(
        events_of(&alice.next_event()),
        json!([{"name":"offline","user_ids":["bob"]}])
    );
    drop(carol);
    assert_eq!(
        events_of(&alice.next_event()),
        json!([{"name":"offline","user_ids":["carol"]}])
    );
}

/// A cache channel's replay on any node is the last event published anywhere before the subscription (its
/// publish answered), then exactly the later events.
fn cache_replays_read_the_last_write_on_every_node(driver: Driver) {
    let broker = Broker::start(driver);
    let (a, b) = (node(&broker, 2), node(&broker, 2));
    wait_linked(&a, &b);
    wait_linked(&b, &a);
    let mut first = b.client();
    first.subscribe("cache-prices");
    assert_eq!(first.next_event()["event"], "pusher:cache_miss");
    for n in 0..20 {
        let (publisher, subscriber) = if n % 2 == 0 { (&a, &b) } else { (&b, &a) };
        publisher.publish(&["cache-prices"], "price", &n.to_string());
        let mut late = subscriber.client_on_shard(n % 2);
        late.subscribe("cache-prices");
        let replay = late.next_event();
        assert_eq!(
            replay["data"],
            n.to_string(),
            "replay on the other node after publish {n}"
        );
        publisher.publish(&["cache-prices"], "price", &format!("{n}+"));
        assert_eq!(late.next_event()["data"], format!("{n}+"));
    }
    for n in 0..20 {
        assert_eq!(first.next_event()["data"], n.to_string());
        assert_eq!(first.next_event()["data"], format!("{n}+"));
    }
}

fn a_restarted_bus_heals(driver: Driver) {
    let mut broker = Broker::start(driver);
    let (a, b) = (node(&broker, 2), node(&broker, 2));
    wait_linked(&a, &b);
    let mut local = a.client();
    local.subscribe("news");
    let mut observer = a.client();
    let mut view = MemberView::new("presence-heal");
    send_join(&mut observer, "presence-heal", "watcher");
    let mut leaver = b.client();
    send_join(&mut leaver, "presence-heal", "leaver");
    let before: BTreeSet<String> = ["watcher", "leaver"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    settle(
        &mut observer,
        &mut view,
        &before,
        "observer before the outage",
    );
    broker.kill();
    // Local delivery never stops.
    a.publish(&["news"], "during-outage", "{}");
    assert_eq!(local.next_event()["event"], "during-outage");
    // While the bus is down a member joins on b and another leaves there: a learns of both once the bus is
    // back (the leave may be lost on the way; the resync removes what b no longer announces).
    let mut joiner = b.client();
    send_join(&mut joiner, "presence-heal", "late");
    drop(leaver);
    std::thread::sleep(Duration::from_millis(500));
    broker.restart();
    wait_linked(&b, &a);
    let both: BTreeSet<String> = ["watcher", "late"].iter().map(|s| s.to_string()).collect();
    settle(
        &mut observer,
        &mut view,
        &both,
        "observer after the bus returned",
    );
}

/// Sockudo's shared Redis settings (`DATABASE_REDIS_HOST`/`_PORT`/`_DB`) reach the adapter when `REDIS_URL` is
/// not set.
#[test]
fn database_redis_settings_reach_the_adapter() {
    let broker = Broker::start(Driver::Redis);
    let env: Vec<(String, String)> = broker
        .node_env()
        .into_iter()
        .filter(|(k, _)| k != "REDIS_URL")
        .chain([
            ("DATABASE_REDIS_HOST".into(), "127.0.0.1".into()),
            ("DATABASE_REDIS_PORT".into(), broker.port.to_string()),
            ("DATABASE_REDIS_DB".into(), "0".into()),
        ])
        .collect();
    let start = || {
        Server::start_with(ServerOptions {
            shards: 1,
            config: json!({
                "adapter": broker.adapter_config(),
                "app_manager": { "array": { "apps": [app_json(json!({}))] } },
            }),
            env: env.clone(),
        })
    };
    let (a, b) = (start(), start());
    wait_linked(&a, &b);
}

macro_rules! on_every_driver {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use super::*;
            #[test]
            fn redis() {
                super::$scenario(Driver::Redis)
            }
            #[test]
            fn redis_cluster() {
                super::$scenario(Driver::RedisCluster)
            }
            #[test]
            fn nats() {
                super::$scenario(Driver::Nats)
            }
        }
    )*};
}

on_every_driver!(
    events_reach_every_node_exactly_once_in_order,
    rest_reads_and_terminations_cover_every_node,
    presence_is_one_member_list_with_ordered_changes,
    a_killed_node_has_its_members_removed,
    watchlists_follow_users_on_every_node,
    cache_replays_read_the_last_write_on_every_node,
);

mod a_restarted_bus_heals {
    use super::*;
    #[test]
    fn redis() {
        super::a_restarted_bus_heals(Driver::Redis)
    }
    #[test]
    fn nats() {
        super::a_restarted_bus_heals(Driver::Nats)
    }
}
