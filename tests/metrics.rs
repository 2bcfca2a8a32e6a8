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
