//! REST read routes answered for the whole process (PROTOCOL.md 2.1): subscribers spread over both shards.

mod common;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn get(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let (status, _, body) = server.signed("GET", path, params, b"");
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[test]
fn channels_and_counts_cover_every_shard_and_are_live() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut b = server.client_on_shard(1);
    a.subscribe("news");
    b.subscribe("news");
    b.subscribe("sports");
    a.join_presence("presence-lobby", "alice", json!({}));
    b.join_presence("presence-lobby", "bob", json!({}));
    let base = format!("/apps/{APP_ID}");

    let (status, v) = get(
        &server,
        &format!("{base}/channels"),
        &[("info", "subscription_count")],
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channels"]["news"]["subscription_count"], 2);
    assert_eq!(v["channels"]["sports"]["subscription_count"], 1);
    assert_eq!(v["channels"]["presence-lobby"]["subscription_count"], 2);

    let (_, v) = get(
        &server,
        &format!("{base}/channels"),
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
    );
    assert_eq!(v, json!({"channels":{"presence-lobby":{"user_count":2}}}));
    let (status, _) = get(
        &server,
        &format!("{base}/channels"),
        &[("info", "user_count")],
    );
    assert_eq!(status, 400, "user_count needs the presence- prefix");

    let (_, v) = get(
        &server,
        &format!("{base}/channels/news"),
        &[("info", "subscription_count")],
    );
    assert_eq!(v, json!({"occupied": true, "subscription_count": 2}));
    let (_, v) = get(
        &server,
        &format!("{base}/channels/presence-lobby"),
        &[("info", "user_count")],
    );
    assert_eq!(v, json!({"occupied": true, "user_count": 2}));
    let (status, _) = get(
        &server,
        &format!("{base}/channels/news"),
        &[("info", "user_count")],
    );
    assert_eq!(status, 400);
    let (_, v) = get(&server, &format!("{base}/channels/empty"), &[]);
    assert_eq!(v, json!({"occupied": false}));

    let (_, v) = get(
        &server,
        &format!("{base}/channels/presence-lobby/users"),
        &[],
    );
    let mut ids: Vec<&str> = v["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["alice", "bob"]);
    let (status, _) = get(&server, &format!("{base}/channels/news/users"), &[]);
    assert_eq!(status, 400);

    // Live: an unsubscribe shows at once.
    b.send(json!({"event":"pusher:unsubscribe","data":{"channel":"sports"}}));
    std::thread::sleep(Duration::from_millis(100));
    let (_, v) = get(&server, &format!("{base}/channels"), &[]);
    assert!(v["channels"].get("sports").is_none(), "{v}");
    assert_eq!(v["channels"]["news"], json!({}));
}

#[test]
fn publish_info_reports_counts() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut b = server.client_on_shard(1);
    a.subscribe("x");
    b.subscribe("x");
    a.join_presence("presence-p", "u1", json!({}));
    let body =
        json!({"name":"e","channels":["x"],"data":"d","info":"subscription_count"}).to_string();
    let (status, _, resp) = server.signed(
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&resp).unwrap(),
        json!({"channels":{"x":{"subscription_count":2}}})
    );
    let body = json!({"batch":[
        {"name":"e","channel":"presence-p","data":"d","info":"user_count"},
        {"name":"e","channel":"x","data":"d"}
    ]})
    .to_string();
    let (status, _, resp) = server.signed(
        "POST",
        &format!("/apps/{APP_ID}/batch_events"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&resp).unwrap(),
        json!({"batch":[{"user_count":1},{}]})
    );
    let body = json!({"name":"e","channels":["x"],"data":"d","info":"user_count"}).to_string();
    let (status, _, _) = server.signed(
        "POST",
        &format!("/apps/{APP_ID}/events"),
        &[],
        body.as_bytes(),
    );
    assert_eq!(status, 400);
}

#[test]
fn terminate_connections_closes_every_socket_of_the_user() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut a2 = server.client_on_shard(1);
    let mut other = server.client();
    assert_eq!(a.signin(r#"{"id":"u1"}"#)["event"], "pusher:signin_success");
    assert_eq!(
        a2.signin(r#"{"id":"u1"}"#)["event"],
        "pusher:signin_success"
    );
    assert_eq!(
        other.signin(r#"{"id":"u2"}"#)["event"],
        "pusher:signin_success"
    );
    let (status, _, body) = server.signed(
        "POST",
        &format!("/apps/{APP_ID}/users/u1/terminate_connections"),
        &[],
        b"{}",
    );
    assert_eq!((status, body.as_str()), (200, "{}"));
    for c in [&mut a, &mut a2] {
        let msg = c.next_event();
        assert_eq!(msg["data"]["code"], 4009);
        assert_eq!(c.close_code(), Some(4009));
    }
    other.send(json!({"event":"pusher:ping","data":{}}));
    assert_eq!(other.next_event()["event"], "pusher:pong");
}

#[test]
fn python_style_get_with_empty_body_md5_is_accepted() {
    let server = Server::start();
    let (status, _, body) = server.signed(
        "GET",
        &format!("/apps/{APP_ID}/channels"),
        &[("body_md5", "d41d8cd98f00b204e9800998ecf8427e")],
        b"",
    );
    assert_eq!(status, 200, "{body}");
}

#[test]
fn per_app_rest_rate_limits_answer_429() {
    let config = json!({"app_manager":{"array":{"apps":[app_json(json!({
        "max_backend_events_per_second": 3, "max_read_requests_per_second": 2
    }))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let body = json!({"name":"e","channel":"c","data":"d"}).to_string();
    // Ten calls span at most two one-second windows, so at most six can pass.
    let statuses: Vec<u16> = (0..10)
        .map(|_| {
            server
                .signed(
                    "POST",
                    &format!("/apps/{APP_ID}/events"),
                    &[],
                    body.as_bytes(),
                )
                .0
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 3,
        "{statuses:?}"
    );
    let statuses: Vec<u16> = (0..5)
        .map(|_| get(&server, &format!("/apps/{APP_ID}/channels"), &[]).0)
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let (_, head, _) = server.signed("GET", &format!("/apps/{APP_ID}/channels"), &[], b"");
    if head.contains(" 429 ") {
        assert!(head.contains("Retry-After: 1"), "{head}");
    }
}
