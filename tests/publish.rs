//! Signed publishing over the REST API (PROTOCOL.md 2.1, 2.2) and fan-out to subscribers on every shard.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

fn events_path() -> String {
    format!("/apps/{APP_ID}/events")
}

#[test]
fn signed_publish_reaches_every_subscriber_on_every_shard() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut b = server.client_on_shard(1);
    a.subscribe("news");
    b.subscribe("news");
    // Publish through a REST connection on each shard in turn: both subscribers get both events.
    for i in 0..6 {
        server.publish(&["news"], "headline", &format!("{{\"n\":{i}}}"));
    }
    for c in [&mut a, &mut b] {
        for i in 0..6 {
            let msg = c.next_event();
            assert_eq!(msg["event"], "headline");
            assert_eq!(msg["channel"], "news");
            assert_eq!(msg["data"], format!("{{\"n\":{i}}}"));
        }
    }
}

#[test]
fn rest_calls_land_on_both_shards_and_deliver_across() {
    let server = Server::start();
    let mut a = server.client_on_shard(0);
    let mut b = server.client_on_shard(1);
    a.subscribe("x");
    b.subscribe("x");
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let body = json!({"name":"e","channel":"x","data":i.to_string()}).to_string();
        let (status, head, _) = server.signed("POST", &events_path(), &[], body.as_bytes());
        assert_eq!(status, 200);
        let shard = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("X-Sockudo-Shard: ")
                    .or_else(|| l.strip_prefix("x-sockudo-shard: "))
            })
            .expect("shard header")
            .trim()
            .to_string();
        seen.insert(shard);
        assert_eq!(a.next_event()["data"], i.to_string());
        assert_eq!(b.next_event()["data"], i.to_string());
    }
    assert_eq!(
        seen.len(),
        2,
        "REST requests should have been served by both shards: {seen:?}"
    );
}

#[test]
fn socket_id_excludes_the_publisher() {
    let server = Server::start();
    let mut a = server.client();
    let mut b = server.client();
    a.subscribe("chat");
    b.subscribe("chat");
    let body = json!({"name":"m","channel":"chat","data":"hi","socket_id":a.socket_id}).to_string();
    let (status, _, _) = server.signed("POST", &events_path(), &[], body.as_bytes());
    assert_eq!(status, 200);
    assert_eq!(b.next_event()["data"], "hi");
    assert!(a.is_silent_for(Duration::from_millis(300)));
}

#[test]
fn multi_channel_and_batch_publish() {
    let server = Server::start();
    let mut a = server.client();
    a.subscribe("one");
    a.subscribe("two");
    server.publish(&["one", "two"], "e", "d");
    let mut channels = vec![
        a.next_event()["channel"].as_str().unwrap().to_string(),
        a.next_event()["channel"].as_str().unwrap().to_string(),
    ];
    channels.sort();
    assert_eq!(channels, ["one", "two"]);
    let body = json!({"batch":[{"name":"b1","channel":"one","data":"1"},{"name":"b2","channel":"two","data":"2"}]});
    let (status, _, resp) = server.signed(
        "POST",
        &format!("/apps/{APP_ID}/batch_events"),
        &[],
        body.to_string().as_bytes(),
    );
    assert_eq!((status, resp.as_str()), (200, "{}"));
    assert_eq!(a.next_event()["event"], "b1");
    assert_eq!(a.next_event()["event"], "b2");
}

#[test]
fn bad_signatures_and_stale_timestamps_are_401() {
    let server = Server::start();
    let body = json!({"name":"e","channel":"c","data":"d"}).to_string();
    let (status, _, _) = server.signed_at(
        "POST",
        &events_path(),
        &[],
        body.as_bytes(),
        now_unix(),
        "wrong-secret",
    );
    assert_eq!(status, 401);
    let (status, _, _) = server.signed_at(
        "POST",
        &events_path(),
        &[],
        body.as_bytes(),
        now_unix() - 601,
        APP_SECRET,
    );
    assert_eq!(status, 401);
    let (status, _, _) = server.signed_at(
        "POST",
        &events_path(),
        &[],
        body.as_bytes(),
        now_unix() + 601,
        APP_SECRET,
    );
    assert_eq!(status, 401);
    let (status, _, _) = server
        .try_http("POST", &events_path(), body.as_bytes())
        .unwrap();
    assert_eq!(status, 401);
    // Body changed after signing.
    let query = signed_query("POST", &events_path(), body.as_bytes());
    let tampered = json!({"name":"e","channel":"c","data":"evil"}).to_string();
    let (status, _, _) = server
        .try_http(
            "POST",
            &format!("{}?{query}", events_path()),
            tampered.as_bytes(),
        )
        .unwrap();
    assert_eq!(status, 401);
    // Unknown app.
    let (status, _, _) = server.signed("POST", "/apps/424242/events", &[], body.as_bytes());
    assert_eq!(status, 404);
}

#[test]
fn invalid_events_are_400_and_oversized_data_413() {
    let server = Server::start();
    let cases = [
        json!({"name":"e","channel":"bad channel","data":"d"}),
        json!({"name":"e","channel":"#server-to-user-x","data":"d"}).clone(),
        json!({"channel":"c","data":"d"}),
        json!({"name":"e","data":"d"}),
        json!({"name":"e","channels":[],"data":"d"}),
        json!({"name":"e","channels":(0..101).map(|i| format!("c{i}")).collect::<Vec<_>>(),"data":"d"}),
        json!({"name":"e","channel":"c","data":"d","socket_id":"123456"}),
        json!({"name":"x".repeat(201),"channel":"c","data":"d"}),
    ];
    for case in cases.iter().filter(|c| c["channel"] != "#server-to-user-x") {
        let (status, _, body) =
            server.signed("POST", &events_path(), &[], case.to_string().as_bytes());
        assert_eq!(status, 400, "{case} -> {body}");
        let err: serde_json::Value = serde_json::from_str(&body).expect("JSON error body");
        assert!(err["error"].is_string());
    }
    let (status, _, _) = server.signed("POST", &events_path(), &[], b"{not json");
    assert_eq!(status, 400);
    let big = json!({"name":"e","channel":"c","data":"x".repeat(10 * 1024 + 1)}).to_string();
    let (status, _, _) = server.signed("POST", &events_path(), &[], big.as_bytes());
    assert_eq!(status, 413);
    let (status, _, _) = server.signed("GET", &events_path(), &[], b"");
    assert_eq!(status, 405);
}

#[test]
fn keep_alive_and_pipelined_requests() {
    use std::io::{Read, Write};
    let server = Server::start();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut batch = Vec::new();
    for i in 0..3 {
        let body = json!({"name":"e","channel":"c","data":i.to_string()}).to_string();
        let q = signed_query("POST", &events_path(), body.as_bytes());
        batch.extend_from_slice(
            format!(
                "POST {}?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
                events_path(),
                body.len()
            )
            .as_bytes(),
        );
    }
    s.write_all(&batch).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.windows(12).filter(|w| w == b"HTTP/1.1 200").count() < 3 {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
}
