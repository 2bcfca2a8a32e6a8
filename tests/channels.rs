//! Channel semantics across shards (PROTOCOL.md 1.6-1.12): private, presence, encrypted, client events,
//! user sign-in and `#server-to-user-`, origins and the authorization timeout.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn data_of(msg: &serde_json::Value) -> serde_json::Value {
    serde_json::from_str(msg["data"].as_str().expect("string data")).unwrap()
}

#[test]
fn private_channels_need_a_valid_signature_and_stay_connected_otherwise() {
    let server = Server::start();
    let mut c = server.client();
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-a","auth":format!("{APP_KEY}:{}", "0".repeat(64))}}));
    let err = c.next_event();
    assert_eq!(err["event"], "pusher:error");
    assert_eq!(err["channel"], "private-a");
    assert!(err["data"]["message"]
        .as_str()
        .unwrap()
        .contains("Invalid signature"));
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-a"}}));
    assert_eq!(c.next_event()["event"], "pusher:error");
    // Another socket's signature is not valid for this one.
    let other = channel_auth("1.1", "private-a", None);
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-a","auth":other}}));
    assert_eq!(c.next_event()["event"], "pusher:error");
    c.subscribe_private("private-a");
    c.subscribe_private("private-encrypted-a");
    server.publish(&["private-a"], "e", "d");
    assert_eq!(c.next_event()["channel"], "private-a");
}

#[test]
fn presence_members_span_shards_and_are_announced_once_per_user() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut b = server.client_on_shard(1);
    let mut b2 = server.client_on_shard(0);
    let p = a.join_presence("presence-room", "alice", json!({"name":"Alice"}));
    assert_eq!(p["count"], 1);
    assert_eq!(p["ids"], json!(["alice"]));
    let p = b.join_presence("presence-room", "bob", json!({"name":"Bob"}));
    assert_eq!(p["count"], 2);
    assert_eq!(p["hash"]["alice"]["name"], "Alice");
    let added = a.next_event();
    assert_eq!(added["event"], "pusher_internal:member_added");
    assert_eq!(data_of(&added)["user_id"], "bob");
    assert_eq!(data_of(&added)["user_info"]["name"], "Bob");
    // Bob's second socket (other shard): no new member_added, count stays 2.
    let p = b2.join_presence("presence-room", "bob", json!({"name":"Bob"}));
    assert_eq!(p["count"], 2);
    assert!(a.is_silent_for(Duration::from_millis(300)));
    assert!(
        b.is_silent_for(Duration::from_millis(100)),
        "the joining user never hears about itself"
    );
    // Bob's first socket leaves: Bob is still there through b2.
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"presence-room"}}));
    assert!(a.is_silent_for(Duration::from_millis(300)));
    // The last socket goes away: member_removed, once.
    drop(b2);
    let removed = a.next_event();
    assert_eq!(removed["event"], "pusher_internal:member_removed");
    assert_eq!(data_of(&removed)["user_id"], "bob");
    assert!(a.is_silent_for(Duration::from_millis(300)));
}

#[test]
fn presence_user_ids_are_strings_and_limits_are_errors() {
    let config = json!({"app_manager":{"array":{"apps":[app_json(json!({
        "max_presence_members_per_channel": 2, "max_presence_member_size_in_kb": 1
    }))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let mut a = server.client();
    // Numeric user id, signed exactly as sent.
    let channel_data = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;
    let auth = channel_auth(&a.socket_id, "presence-x", Some(channel_data));
    a.send(json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth,"channel_data":channel_data}}));
    let ok = a.next_event();
    assert_eq!(data_of(&ok)["presence"]["ids"], json!(["10"]));
    let mut b = server.client();
    b.join_presence("presence-x", "2", json!({}));
    // Third distinct user: refused with an error, connection kept.
    let mut c = server.client();
    let channel_data = json!({"user_id":"3"}).to_string();
    let auth = channel_auth(&c.socket_id, "presence-x", Some(&channel_data));
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"presence-x","auth":auth,"channel_data":channel_data}}));
    let err = c.next_event();
    assert_eq!(err["event"], "pusher:error", "{err}");
    // Oversized user_info.
    let channel_data = json!({"user_id":"4","user_info":{"bio":"x".repeat(2000)}}).to_string();
    let auth = channel_auth(&c.socket_id, "presence-y", Some(&channel_data));
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"presence-y","auth":auth,"channel_data":channel_data}}));
    assert_eq!(c.next_event()["event"], "pusher:error");
    // Missing channel_data.
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"presence-y","auth":"x:y"}}));
    assert_eq!(c.next_event()["event"], "pusher:error");
    c.subscribe("still-connected");
}

#[test]
fn client_events_reach_others_on_other_shards_never_the_sender() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut b = server.client_on_shard(1);
    a.subscribe_private("private-chat");
    b.subscribe_private("private-chat");
    a.send(json!({"event":"client-typing","channel":"private-chat","data":{"who":"a"}}));
    let got = b.next_event();
    assert_eq!(got["event"], "client-typing");
    assert_eq!(got["data"]["who"], "a");
    assert!(got.get("user_id").is_none());
    assert!(a.is_silent_for(Duration::from_millis(300)));

    a.join_presence("presence-chat", "alice", json!({}));
    b.join_presence("presence-chat", "bob", json!({}));
    let _ = a.next_event(); // member_added bob
    b.send(json!({"event":"client-hi","channel":"presence-chat","data":{}}));
    let got = a.next_event();
    assert_eq!(got["event"], "client-hi");
    assert_eq!(got["user_id"], "bob");
}

/// A server whose default app has the client event limit `max` in Sockudo's nested `policy.limits` shape.
fn client_event_limited(limits: Value) -> Server {
    Server::start_with(ServerOptions {
        config: json!({"app_manager":{"array":{"apps":[app_json(json!({"policy":{"limits": limits}}))]}}}),
        ..Default::default()
    })
}

#[test]
fn client_event_limits_count_in_decay_seconds_windows() {
    let server =
        client_event_limited(json!({"max_client_events_per_second": 2, "decay_seconds": 3}));
    let mut a = server.client();
    a.subscribe_private("private-w");
    let first = Instant::now();
    for _ in 0..3 {
        a.send(json!({"event":"client-x","channel":"private-w","data":{}}));
    }
    assert_eq!(a.next_event()["data"]["code"], 4301);
    // 1.2 s on, a one-second window would have begun again; this one lasts 3 s.
    std::thread::sleep(Duration::from_millis(1200));
    a.send(json!({"event":"client-x","channel":"private-w","data":{}}));
    let err = a.next_event();
    assert_eq!(err["data"]["code"], 4301, "{err}");
    assert!(
        err["data"]["message"]
            .as_str()
            .unwrap()
            .contains("in 3 seconds"),
        "{err}"
    );
    // Once the window has run out, events are relayed again (no error; the connection answers pings).
    std::thread::sleep(Duration::from_millis(3100).saturating_sub(first.elapsed()));
    a.send(json!({"event":"client-x","channel":"private-w","data":{}}));
    a.send(json!({"event":"pusher:ping","data":{}}));
    assert_eq!(a.next_event()["event"], "pusher:pong");
}

#[test]
fn terminate_on_limit_closes_the_connection_with_4301() {
    let server = client_event_limited(
        json!({"max_client_events_per_second": 1, "terminate_on_limit": true}),
    );
    let mut a = server.client();
    a.subscribe_private("private-t");
    a.send(json!({"event":"client-x","channel":"private-t","data":{}}));
    a.send(json!({"event":"client-x","channel":"private-t","data":{}}));
    let err = a.next_event();
    assert_eq!(err["event"], "pusher:error", "{err}");
    assert_eq!(err["data"]["code"], 4301, "{err}");
    assert_eq!(a.close_code(), Some(4301));
}

#[test]
fn client_events_are_refused_where_pusher_refuses_them() {
    let config = json!({"app_manager":{"array":{"apps":[
        app_json(json!({"max_client_events_per_second": 3})),
        {"id":"7","key":"quiet-key","secret":"quiet-secret","enable_client_messages":false}
    ]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let mut a = server.client();
    a.subscribe("public");
    a.send(json!({"event":"client-x","channel":"public","data":{}}));
    assert_eq!(a.next_event()["event"], "pusher:error");
    a.subscribe_private("private-encrypted-x");
    a.send(json!({"event":"client-x","channel":"private-encrypted-x","data":{}}));
    assert_eq!(a.next_event()["event"], "pusher:error");
    a.send(json!({"event":"client-x","channel":"private-not-joined","data":{}}));
    assert_eq!(a.next_event()["event"], "pusher:error");
    // Rate limit: 3 per second, the 4th gets 4301 as an error, never a close.
    a.subscribe_private("private-r");
    for _ in 0..4 {
        a.send(json!({"event":"client-x","channel":"private-r","data":{}}));
    }
    let err = a.next_event();
    assert_eq!(err["data"]["code"], 4301, "{err}");
    a.send(json!({"event":"pusher:ping","data":{}}));
    assert_eq!(a.next_event()["event"], "pusher:pong");
    // An app with client events disabled.
    let (ws, _) = server.ws("/app/quiet-key");
    let mut q = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    let est = q.next_event();
    q.socket_id = data_of(&est)["socket_id"].as_str().unwrap().to_string();
    let auth = sockudo::protocol::auth::expected_auth(
        "quiet-key",
        "quiet-secret",
        &sockudo::protocol::auth::channel_string_to_sign(&q.socket_id, "private-q", None),
    );
    q.send(json!({"event":"pusher:subscribe","data":{"channel":"private-q","auth":auth}}));
    assert_eq!(
        q.next_event()["event"],
        "pusher_internal:subscription_succeeded"
    );
    q.send(json!({"event":"client-x","channel":"private-q","data":{}}));
    let err = q.next_event();
    assert!(err["data"]["message"]
        .as_str()
        .unwrap()
        .contains("enable this feature"));
}

#[test]
fn signin_and_server_to_user_channels() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut a2 = server.client_on_shard(1);
    let mut eve = server.client();
    let ok = a.signin(r#"{"id":"u1","user_info":{"name":"A"}}"#);
    assert_eq!(ok["event"], "pusher:signin_success", "{ok}");
    assert_eq!(
        data_of(&ok)["user_data"],
        r#"{"id":"u1","user_info":{"name":"A"}}"#
    );
    assert_eq!(
        a2.signin(r#"{"id":"u1"}"#)["event"],
        "pusher:signin_success"
    );
    a.subscribe("#server-to-user-u1");
    a2.subscribe("#server-to-user-u1");
    // Someone else cannot listen in.
    eve.send(json!({"event":"pusher:subscribe","data":{"channel":"#server-to-user-u1"}}));
    assert_eq!(eve.next_event()["event"], "pusher:error");
    // A signed-in connection cannot become someone else.
    let err = a.signin(r#"{"id":"u2"}"#);
    assert_eq!(err["event"], "pusher:error");
    // Bad signature and bad user_data.
    a.send(json!({"event":"pusher:signin","data":{"auth":"x:y","user_data":"{\"id\":\"u1\"}"}}));
    assert_eq!(a.next_event()["event"], "pusher:error");
    assert_eq!(eve.signin(r#"{"id":5}"#)["event"], "pusher:error");
    // sendToUser: an HTTP event on the user's channel reaches both of its sockets.
    let body = json!({"name":"note","channel":"#server-to-user-u1","data":"hello"}).to_string();
    let (status, _, _) = server.signed(
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(a.next_event()["data"], "hello");
    assert_eq!(a2.next_event()["data"], "hello");
    assert!(eve.is_silent_for(Duration::from_millis(300)));
    // Watchlist over 100 ids: 4302 error, sign-in still succeeds.
    let ids: Vec<String> = (0..101).map(|i| format!("w{i}")).collect();
    let user_data = json!({"id":"u3","watchlist":ids}).to_string();
    let err = eve.signin(&user_data);
    assert_eq!(err["data"]["code"], 4302, "{err}");
    assert_eq!(eve.next_event()["event"], "pusher:signin_success");
}

#[test]
fn origins_outside_the_allow_list_are_refused_4009() {
    let config = json!({"app_manager":{"array":{"apps":[app_json(json!({"allowed_origins":["https://*.example.com"]}))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let connect = |origin: &str| {
        let stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut req = tungstenite::client::IntoClientRequest::into_client_request(
            server.url(&format!("/app/{APP_KEY}")),
        )
        .unwrap();
        req.headers_mut().insert("Origin", origin.parse().unwrap());
        let (ws, _) = tungstenite::client::client(req, stream).unwrap();
        Client {
            ws,
            shard: 0,
            socket_id: String::new(),
        }
    };
    let mut ok = connect("https://app.example.com");
    assert_eq!(ok.next_event()["event"], "pusher:connection_established");
    let mut bad = connect("https://evil.com");
    assert_eq!(bad.next_event()["data"]["code"], 4009);
    assert_eq!(bad.close_code(), Some(4009));
}

#[test]
fn user_authentication_timeout_closes_4009() {
    let config = json!({"user_authentication_timeout": 1, "app_manager":{"array":{"apps":[app_json(json!({"enable_user_authentication": true}))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let mut idle = server.client();
    let mut signed = server.client();
    assert_eq!(
        signed.signin(r#"{"id":"ok"}"#)["event"],
        "pusher:signin_success"
    );
    let msg = idle.next_event();
    assert_eq!(msg["data"]["code"], 4009, "{msg}");
    assert_eq!(idle.close_code(), Some(4009));
    assert!(signed.is_silent_for(Duration::from_millis(2500)));
}

#[test]
fn cache_channels_replay_the_last_http_event_or_send_cache_miss() {
    let server = Server::start();
    let mut early = server.client();
    early.subscribe("cache-prices");
    let miss = early.next_event();
    assert_eq!(miss["event"], "pusher:cache_miss", "{miss}");
    assert_eq!(miss["channel"], "cache-prices");
    server.publish(&["cache-prices"], "price", "41");
    server.publish(&["cache-prices"], "price", "42");
    assert_eq!(early.next_event()["data"], "41");
    assert_eq!(early.next_event()["data"], "42");
    // Late subscribers on either shard get the last event right after subscription_succeeded.
    for shard in [0, 1] {
        let mut late = server.client_on_shard(shard);
        late.subscribe("cache-prices");
        let replay = late.next_event();
        assert_eq!(
            (replay["event"].as_str(), replay["data"].as_str()),
            (Some("price"), Some("42"))
        );
    }
    let (status, _, body) = server.signed(
        "GET",
        &format!("/apps/{APP_ID}/channels/cache-prices"),
        &[("info", "cache")],
        b"",
    );
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["cache"]["data"], "42");
    assert!(v["cache"]["ttl"].as_u64().unwrap() > 1700);
    // Client events are never cached.
    let mut p = server.client();
    p.subscribe_private("private-cache-chat");
    assert_eq!(p.next_event()["event"], "pusher:cache_miss");
    let mut q = server.client();
    q.subscribe_private("private-cache-chat");
    assert_eq!(q.next_event()["event"], "pusher:cache_miss");
    p.send(json!({"event":"client-x","channel":"private-cache-chat","data":{}}));
    assert_eq!(q.next_event()["event"], "client-x");
    let mut r = server.client();
    r.subscribe_private("private-cache-chat");
    assert_eq!(r.next_event()["event"], "pusher:cache_miss");
}

/// A subscriber joining while events are published gets the last event as of its join and then exactly the
/// events after it: never one twice, none missing, on either shard, for cache and presence-cache channels.
#[test]
fn cache_replay_and_live_events_neither_repeat_nor_skip_while_publishing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let server = Server::start();
    let stop = AtomicBool::new(false);
    let channels = ["cache-live", "presence-cache-live"];
    let number = |event: &serde_json::Value| -> Option<u64> {
        event["data"].as_str().and_then(|d| d.parse().ok())
    };
    /// Stops the publisher however the checks end (a failed assert must not leave the scope waiting forever).
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let _stop = StopOnDrop(&stop);
        scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                server.publish(&channels, "tick", &n.to_string());
            }
        });
        for i in 0..40 {
            let mut c = server.client_on_shard(i % 2);
            let presence = i % 4 >= 2;
            let channel = channels[usize::from(presence)];
            if presence {
                c.join_presence(channel, &format!("u{i}"), json!({}));
            } else {
                c.subscribe(channel);
            }
            let replay = c.next_event();
            let last = match replay["event"].as_str() {
                Some("pusher:cache_miss") => 0,
                Some("tick") => number(&replay).expect("numbered replay"),
                _ => panic!("expected the replay right after subscription_succeeded, got {replay}"),
            };
            for expected in last + 1..=last + 3 {
                let next = c.next_event();
                assert_eq!(next["channel"], channel, "{next}");
                assert_eq!(
                    number(&next),
                    Some(expected),
                    "after the replay of {last} on shard {}: {next}",
                    c.shard
                );
            }
        }
    });
}

/// Every message until nothing arrives for `quiet`.
fn drain(c: &mut Client, quiet: Duration) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    c.ws.get_mut().set_read_timeout(Some(quiet)).unwrap();
    while let Ok(tungstenite::Message::Text(t)) = c.ws.read() {
        out.push(serde_json::from_str(t.as_str()).unwrap());
    }
    c.ws.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    out
}

#[test]
fn subscription_count_is_announced_coalesced_when_enabled() {
    let config = json!({"app_manager":{"array":{"apps":[app_json(json!({"enable_subscription_count": true}))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let mut a = server.client();
    a.subscribe("counted");
    let first = a.next_event();
    assert_eq!(
        first["event"], "pusher_internal:subscription_count",
        "{first}"
    );
    assert_eq!(data_of(&first)["subscription_count"], 1);
    let mut others: Vec<Client> = (0..10).map(|_| server.client()).collect();
    for c in others.iter_mut() {
        c.subscribe("counted");
    }
    let counts = drain(&mut a, Duration::from_millis(600));
    assert!(
        !counts.is_empty() && counts.len() < 10,
        "not coalesced: {counts:?}"
    );
    assert_eq!(data_of(counts.last().unwrap())["subscription_count"], 11);
    drop(others.pop());
    let counts = drain(&mut a, Duration::from_millis(600));
    assert_eq!(
        data_of(counts.last().expect("a count after the disconnect"))["subscription_count"],
        10
    );
    // Presence channels are not counted (their member events carry that information).
    let mut p = server.client();
    p.join_presence("presence-room", "u", json!({}));
    assert!(drain(&mut p, Duration::from_millis(400)).is_empty());
}

#[test]
fn watchlist_events_follow_watched_users_across_shards() {
    let config = json!({"app_manager":{"array":{"apps":[app_json(json!({"enable_watchlist_events": true}))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let mut carol = server.client_on_shard(1);
    assert_eq!(
        carol.signin(r#"{"id":"carol"}"#)["event"],
        "pusher:signin_success"
    );
    let mut alice = server.client_on_shard(0);
    let ok = alice.signin(r#"{"id":"alice","watchlist":["bob","carol"]}"#);
    assert_eq!(ok["event"], "pusher:signin_success");
    // Already online when alice signs in.
    let initial = alice.next_event();
    assert_eq!(
        initial["event"], "pusher_internal:watchlist_events",
        "{initial}"
    );
    assert_eq!(
        data_of(&initial)["events"],
        json!([{"name":"online","user_ids":["carol"]}])
    );
    // Bob comes online on the other shard, with two sockets: one online event.
    let mut bob = server.client_on_shard(1);
    let mut bob2 = server.client_on_shard(0);
    assert_eq!(
        bob.signin(r#"{"id":"bob"}"#)["event"],
        "pusher:signin_success"
    );
    assert_eq!(
        bob2.signin(r#"{"id":"bob"}"#)["event"],
        "pusher:signin_success"
    );
    let online = alice.next_event();
    assert_eq!(
        data_of(&online)["events"],
        json!([{"name":"online","user_ids":["bob"]}])
    );
    assert!(alice.is_silent_for(Duration::from_millis(300)));
    // Offline only when bob's last socket goes.
    drop(bob);
    assert!(alice.is_silent_for(Duration::from_millis(300)));
    drop(bob2);
    let offline = alice.next_event();
    assert_eq!(
        data_of(&offline)["events"],
        json!([{"name":"offline","user_ids":["bob"]}])
    );
    // Carol is not watching anyone: she hears nothing.
    assert!(carol.is_silent_for(Duration::from_millis(200)));
}
