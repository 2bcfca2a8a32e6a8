//! The metrics port: `/metrics` counters move as traffic flows, `/usage` reports memory and CPU.

mod common;
use common::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Metrics {
    port: u16,
}

impl Metrics {
    fn get(&self, path: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to metrics port");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("http response");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, body.to_string())
    }

    /// Every sample of `/metrics`, keyed by `name{labels}` exactly as exposed.
    fn scrape(&self) -> HashMap<String, f64> {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        body.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("sample line");
                (k.to_string(), v.parse().expect("sample value"))
            })
            .collect()
    }

    fn value(&self, key: &str) -> f64 {
        self.scrape().get(key).copied().unwrap_or(0.0)
    }

    /// Waits until `key` reaches `want` (counters are stored by the shards right after the I/O they count, so a
    /// client can see its data a moment before the counter moves); returns the last value seen.
    fn wait_for(&self, key: &str, want: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let v = self.value(key);
            if v == want || Instant::now() > deadline {
                return v;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn start() -> (Server, Metrics) {
    let port = free_port();
    let server = Server::start_with(ServerOptions {
        env: vec![
            ("METRICS_ENABLED".into(), "true".into()),
            ("METRICS_HOST".into(), "127.0.0.1".into()),
            ("METRICS_PORT".into(), port.to_string()),
        ],
        ..Default::default()
    });
    (server, Metrics { port })
}

const CONNECTED: &str = "sockudo_connected{app_id=\"123\"}";
const NEW_CONNECTIONS: &str = "sockudo_new_connections_total{app_id=\"123\"}";
const DISCONNECTIONS: &str = "sockudo_new_disconnections_total{app_id=\"123\"}";
const SENT: &str = "sockudo_ws_messages_sent_total";
const RECEIVED: &str = "sockudo_ws_messages_received_total";
const SUBSCRIPTIONS: &str = "sockudo_channel_subscriptions_total";
const EVENTS_200: &str = "sockudo_http_calls_received_total{route=\"events\",status=\"200\"}";
const EVENTS_LATENCY_COUNT: &str = "sockudo_http_request_duration_seconds_count{route=\"events\"}";

#[test]
fn counters_move_as_traffic_flows() {
    let (server, metrics) = start();
    let before = metrics.scrape();
    assert_eq!(before.get(CONNECTED), Some(&0.0), "{before:?}");
    assert_eq!(before.get(NEW_CONNECTIONS), Some(&0.0));
    assert_eq!(before.get(SENT), Some(&0.0));
    assert!(before.contains_key("sockudo_process_resident_memory_bytes"));
    assert!(before.contains_key("sockudo_shard_queue_depth{shard=\"0\",peer=\"1\"}"));

    // Three clients, on both shards: each got `pusher:connection_established`.
    let mut clients = vec![
        server.client_on_shard(0),
        server.client_on_shard(1),
        server.client(),
    ];
    let opened = metrics.value(NEW_CONNECTIONS);
    assert!(opened >= 3.0, "{opened}");
    // client_on_shard may have opened and dropped extra clients; the open ones are exactly three.
    assert_eq!(metrics.wait_for(CONNECTED, 3.0), 3.0);
    assert_eq!(metrics.wait_for(DISCONNECTIONS, opened - 3.0), opened - 3.0);

    let received = metrics.value(RECEIVED);
    for c in &mut clients {
        c.subscribe("news");
    }
    assert_eq!(metrics.wait_for(SUBSCRIPTIONS, 3.0), 3.0);
    assert_eq!(metrics.wait_for(RECEIVED, received + 3.0), received + 3.0);

    // Settle the writers (the subscription confirmations), then publish 4 events to 3 subscribers.
    let sent = metrics.wait_for(SENT, opened + 3.0);
    assert_eq!(
        sent,
        opened + 3.0,
        "one connection_established per client, one confirmation per subscribe"
    );
    let calls = metrics.value(EVENTS_200);
    for i in 0..4 {
        server.publish(&["news"], "headline", &format!("{{\"n\":{i}}}"));
    }
    for c in &mut clients {
        for _ in 0..4 {
            assert_eq!(c.next_event()["event"], "headline");
        }
    }
    assert_eq!(metrics.wait_for(SENT, sent + 12.0), sent + 12.0);
    assert_eq!(metrics.wait_for(EVENTS_200, calls + 4.0), calls + 4.0);
    let after = metrics.scrape();
    assert!(after[EVENTS_LATENCY_COUNT] >= 4.0, "{after:?}");
    assert!(after["sockudo_socket_transmitted_bytes"] > 0.0);
    assert!(after["sockudo_socket_received_bytes"] > 0.0);
    assert!(after["sockudo_http_received_bytes"] > 0.0);

    // An unknown app key is refused with 4001 and counted by code.
    let (ws, shard) = server.ws("/app/nope?protocol=7");
    let mut refused = Client {
        ws,
        shard,
        socket_id: String::new(),
    };
    assert_eq!(refused.close_code(), Some(4001));
    assert_eq!(
        metrics.wait_for("sockudo_errors_total{code=\"4001\"}", 1.0),
        1.0
    );

    // One client leaves.
    let mut gone = clients.pop().unwrap();
    gone.ws.close(None).unwrap();
    let _ = gone.close_code();
    drop(gone);
    assert_eq!(metrics.wait_for(CONNECTED, 2.0), 2.0);
    assert_eq!(metrics.wait_for(DISCONNECTIONS, opened - 2.0), opened - 2.0);
}

#[test]
fn usage_reports_memory_and_cpu_and_unknown_paths_are_404() {
    let (server, metrics) = start();
    let _client = server.client();
    let (status, body) = metrics.get("/usage");
    assert_eq!(status, 200, "{body}");
    let usage: serde_json::Value = serde_json::from_str(&body).expect("usage is JSON");
    assert!(usage["memory"]["rss"].as_u64().unwrap() > 0, "{usage}");
    assert!(usage["memory"]["virtual"].as_u64().unwrap() > 0, "{usage}");
    assert!(
        usage["cpu"]["total_seconds"].as_f64().unwrap() >= 0.0,
        "{usage}"
    );
    assert_eq!(usage["shards"], 2);
    assert_eq!(usage["connections"], 1);
    assert_eq!(metrics.get("/nope").0, 404);
}

#[test]
fn start_up_fails_clearly_when_the_metrics_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .env_clear()
        .env("PORT", free_port().to_string())
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "1")
        .env("METRICS_ENABLED", "true")
        .env("METRICS_HOST", "127.0.0.1")
        .env("METRICS_PORT", metrics_port.to_string())
        .env("RUST_LOG", "off")
        .output()
        .expect("run sockudo");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen for metrics on 127.0.0.1:{metrics_port}"
        )),
        "{stderr}"
    );
}

/// A receiver that answers each webhook request with the next status of `statuses` (then 200), counting them.
fn webhook_receiver(statuses: Vec<u16>) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind receiver");
    let port = listener.local_addr().unwrap().port();
    let count = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then the body announced by Content-Length.
            let (head_len, body_len) = loop {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break (0, 0);
                }
                req.extend_from_slice(&buf[..n]);
                if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    break (end + 4, len);
                }
            };
            while head_len > 0 && req.len() < head_len + body_len {
                let n = s.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let i = seen.fetch_add(1, Ordering::SeqCst);
            let status = statuses.get(i).copied().unwrap_or(200);
            let _ = write!(
                s,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (port, count)
}

#[test]
fn webhook_counters_follow_deliveries_retries_and_failures() {
    // The first request is answered 503 (retried after ~1 s, then 200); the second hook always gets 400.
    let (ok_port, ok_count) = webhook_receiver(vec![503]);
    let (bad_port, bad_count) = webhook_receiver(vec![400, 400, 400]);
    let port = free_port();
    let hooks = serde_json::json!({ "webhooks": [
        { "url": format!("http://127.0.0.1:{ok_port}/hook"), "event_types": ["channel_occupied"] },
        { "url": format!("http://127.0.0.1:{bad_port}/hook"), "event_types": ["channel_occupied"] },
    ]});
    let server = Server::start_with(ServerOptions {
        config: serde_json::json!({ "app_manager": { "array": { "apps": [app_json(hooks)] } } }),
        env: vec![
            ("METRICS_ENABLED".into(), "true".into()),
            ("METRICS_HOST".into(), "127.0.0.1".into()),
            ("METRICS_PORT".into(), port.to_string()),
        ],
        ..Default::default()
    });
    let metrics = Metrics { port };
    assert_eq!(metrics.value("sockudo_webhooks_sent_total"), 0.0);

    let mut client = server.client();
    client.subscribe("hooked");
    assert_eq!(metrics.wait_for("sockudo_webhooks_failed_total", 1.0), 1.0);
    let deadline = Instant::now() + Duration::from_secs(8);
    while metrics.value("sockudo_webhooks_sent_total") < 1.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = metrics.scrape();
    assert_eq!(m.get("sockudo_webhooks_sent_total"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("sockudo_webhook_retries_total"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("sockudo_webhooks_failed_total"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("sockudo_webhooks_pending"), Some(&0.0), "{m:?}");
    assert_eq!(m.get("sockudo_io_queue_dropped_total"), Some(&0.0), "{m:?}");
    use std::sync::atomic::Ordering;
    assert_eq!(ok_count.load(Ordering::SeqCst), 2, "503 then the retry");
    assert_eq!(bad_count.load(Ordering::SeqCst), 1, "a 400 is not retried");
}
