//! Redis over TLS (`rediss://`): the cluster adapter, the cache and the rate limiter reach a Redis that only
//! speaks TLS when its certificate chains to a CA the process trusts (`SSL_CERT_FILE`), and refuse it
//! otherwise. Runs on the TLS port of the test Redis (`scripts/services/redis.sh`, which `scripts/test.sh`
//! starts; missing: the test fails).

mod common;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn service_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the test Redis with scripts/services/redis.sh (scripts/test.sh does)")
    })
}

/// A node whose adapter, cache and rate limiter all use the TLS Redis, trusting `ca_file`.
fn tls_node(prefix: &str, ca_file: &str, metrics_port: u16) -> Server {
    let url = service_var("SOCKUDO_TEST_REDIS_TLS_URL");
    assert!(url.starts_with("rediss://"), "{url}");
    Server::start_with(ServerOptions {
        shards: 2,
        config: json!({
            "adapter": { "redis": { "prefix": format!("{prefix}bus:") } },
            "cache": { "redis": { "prefix": format!("{prefix}cache:") } },
            "rate_limiter": { "redis": { "prefix": format!("{prefix}rl:") } },
            "app_manager": { "array": { "apps": [app_json(json!({ "max_backend_events_per_second": 1000 }))] } },
        }),
        env: [
            ("ADAPTER_DRIVER", "redis"),
            ("CACHE_DRIVER", "redis"),
            ("RATE_LIMITER_DRIVER", "redis"),
            ("REDIS_URL", url.as_str()),
            ("SSL_CERT_FILE", ca_file),
            ("CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS", "300"),
            ("METRICS_ENABLED", "true"),
            ("METRICS_HOST", "127.0.0.1"),
            ("METRICS_PORT", &metrics_port.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    })
}

/// `KEYS pattern` on the plain port of the same Redis, to see what the nodes stored through TLS.
fn redis_keys(pattern: &str) -> String {
    let url = service_var("SOCKUDO_TEST_REDIS_URL");
    let addr = url.trim_start_matches("redis://");
    let mut stream = TcpStream::connect(addr).expect("plain port of the test Redis");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let cmd = format!("*2\r\n$4\r\nKEYS\r\n${}\r\n{pattern}\r\n", pattern.len());
    stream.write_all(cmd.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn rediss_carries_the_adapter_the_cache_and_the_rate_limiter() {
    let ca = service_var("SOCKUDO_TEST_REDIS_TLS_CA");
    let prefix = format!("tls{}:", std::process::id());
    let (ma, mb) = (free_port(), free_port());
    let (a, b) = (tls_node(&prefix, &ca, ma), tls_node(&prefix, &ca, mb));
    eventually(Duration::from_secs(20), "both buses up over TLS", || {
        metric(ma, "sockudo_cluster_bus_up") == 1.0 && metric(mb, "sockudo_cluster_bus_up") == 1.0
    });

    // The adapter: an event published on one node reaches a subscriber on the other.
    let mut sub = b.client();
    sub.subscribe("over-tls");
    eventually(Duration::from_secs(20), "an event crossing nodes", || {
        a.publish(&["over-tls"], "e", "{\"n\":1}");
        next_within(&mut sub, Duration::from_millis(300)).is_some_and(|m| m["event"] == "e")
    });

    // The cache: the last event of a cache channel is in Redis (written through TLS) and replayed on b.
    a.publish(&["cache-tls"], "c", "{\"v\":42}");
    eventually(Duration::from_secs(5), "the cache key in Redis", || {
        redis_keys(&format!("{prefix}cache:*")).contains("cache-tls")
    });
    let mut late = b.client();
    late.subscribe("cache-tls");
    let replay = next_within(&mut late, Duration::from_secs(5)).expect("a replay");
    assert_eq!(replay["event"], "c", "{replay}");

    // The rate limiter counted the publishes in Redis (its keys are hash-tagged: `{<prefix>app:...}`).
    assert!(
        redis_keys(&format!("*{prefix}rl:*")).contains(&format!("{prefix}rl:")),
        "no rate-limiter key under {prefix}rl:"
    );
}

#[test]
fn rediss_with_an_untrusted_certificate_is_refused() {
    // A CA file that does not hold the Redis CA: the handshake must fail, never fall back to trusting it.
    let dir = std::env::temp_dir().join(format!("sockudo-redis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other_ca = dir.join("other-ca.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
    std::fs::write(&other_ca, cert.cert.pem()).unwrap();
    let port = free_port();
    let node = tls_node(
        &format!("untrusted{}:", std::process::id()),
        other_ca.to_str().unwrap(),
        port,
    );
    // The node itself serves (local delivery never depends on the bus) but the bus stays down.
    let mut client = node.client();
    client.subscribe("local");
    node.publish(&["local"], "e", "{}");
    assert_eq!(client.next_event()["event"], "e");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(metric(port, "sockudo_cluster_bus_up"), 0.0);
}
