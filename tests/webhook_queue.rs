//! The durable webhook queue (`queue.driver` redis, redis-cluster, sqs) over the real binary: webhooks
//! accepted into the queue while the receiver refuses them survive a SIGKILL of the server and are
//! delivered, signed, by the next process; the backend stopped mid-run loses nothing the server could hold.
//!
//! Services: Redis is started per test (`redis-server` on PATH); the Redis Cluster and moto (SQS) come from
//! `scripts/services/redis-cluster.sh` and `scripts/services/moto.sh` (`SOCKUDO_TEST_REDIS_CLUSTER_NODES`,
//! `SOCKUDO_TEST_SQS_URL`). A missing service fails the test.

mod common;

use common::broker::{Broker, Driver};
use common::{app_json, free_port, Server, ServerOptions, APP_KEY, APP_SECRET};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver accepted.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    channels: Vec<String>,
}

/// A webhook receiver on its own port: answers 503 while `refusing`, else checks the signature and
/// answers 200 (401 for a bad signature, recorded as such).
struct Receiver {
    port: u16,
    refusing: Arc<AtomicBool>,
    accepted: Arc<Mutex<Vec<Received>>>,
    bad_signatures: Arc<Mutex<usize>>,
    attempts: Arc<Mutex<usize>>,
}

fn read_request(s: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    let mut req = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_len, body_len) = loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        req.extend_from_slice(&buf[..n]);
        if let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&req[..end]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            break (end + 4, len);
        }
    };
    while req.len() < head_len + body_len {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&req[..head_len]).to_string();
    Some((head, req[head_len..head_len + body_len].to_vec()))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn signature(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).expect("hmac key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

impl Receiver {
    fn start(refusing: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().unwrap().port();
        let receiver = Receiver {
            port,
            refusing: Arc::new(AtomicBool::new(refusing)),
            accepted: Arc::default(),
            bad_signatures: Arc::default(),
            attempts: Arc::default(),
        };
        let (refusing, accepted, bad, attempts) = (
            receiver.refusing.clone(),
            receiver.accepted.clone(),
            receiver.bad_signatures.clone(),
            receiver.attempts.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let (refusing, accepted, bad, attempts) = (
                    refusing.clone(),
                    accepted.clone(),
                    bad.clone(),
                    attempts.clone(),
                );
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let Some((head, body)) = read_request(&mut s) else {
                        return;
                    };
                    *attempts.lock().unwrap() += 1;
                    let status = if refusing.load(Ordering::SeqCst) {
                        503
                    } else if header(&head, "x-pusher-signature") != Some(&signature(&body))
                        || header(&head, "x-pusher-key") != Some(APP_KEY)
                    {
                        *bad.lock().unwrap() += 1;
                        401
                    } else {
                        let v: Value = serde_json::from_slice(&body).expect("JSON body");
                        let channels = v["events"]
                            .as_array()
                            .expect("events")
                            .iter()
                            .map(|e| e["channel"].as_str().unwrap_or("").to_string())
                            .collect();
                        let id = header(&head, "x-sockudo-webhook-id")
                            .unwrap_or("")
                            .to_string();
                        accepted.lock().unwrap().push(Received { id, channels });
                        200
                    };
                    let _ = write!(
                        s,
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                });
            }
        });
        receiver
    }

    /// Channels delivered so far, each with the ids of the requests that carried it.
    fn delivered(&self) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in self.accepted.lock().unwrap().iter() {
            for c in &r.channels {
                out.entry(c.clone()).or_default().insert(r.id.clone());
            }
        }
        out
    }

    /// Waits until every one of `channels` was delivered; panics with what is missing otherwise.
    fn wait_for_all(&self, channels: &BTreeSet<String>, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let got: BTreeSet<String> = self.delivered().into_keys().collect();
            let missing: Vec<&String> = channels.difference(&got).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {} webhooks never delivered, e.g. {:?} (attempts {})",
                missing.len(),
                channels.len(),
                &missing[..missing.len().min(5)],
                self.attempts.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A queue backend for one test.
struct Backend {
    env: Vec<(String, String)>,
    queue: Value,
    broker: Option<Broker>,
}

fn unique() -> String {
    format!("t{}-{}", std::process::id(), free_port())
}

fn backend(driver: &str) -> Backend {
    let lease = json!({ "lease_duration_ms": 2000, "lease_renew_interval_ms": 500 });
    match driver {
        "redis" => {
            let broker = Broker::start(Driver::Redis);
            Backend {
                env: vec![(
                    "REDIS_URL".into(),
                    format!("redis://127.0.0.1:{}", broker.port),
                )],
                queue: json!({ "driver": "redis", "reliability": lease }),
                broker: Some(broker),
            }
        }
        "redis-cluster" => {
            let nodes = std::env::var("SOCKUDO_TEST_REDIS_CLUSTER_NODES").expect(
                "SOCKUDO_TEST_REDIS_CLUSTER_NODES is not set: start the test Redis Cluster with \
                 scripts/services/redis-cluster.sh (scripts/test.sh does)",
            );
            Backend {
                env: vec![("REDIS_CLUSTER_NODES".into(), nodes)],
                queue: json!({ "driver": "redis-cluster", "reliability": lease,
                               "redis_cluster": { "prefix": format!("{}:", unique()) } }),
                broker: None,
            }
        }
        "sqs" => {
            let url = std::env::var("SOCKUDO_TEST_SQS_URL").expect(
                "SOCKUDO_TEST_SQS_URL is not set: start moto with scripts/services/moto.sh \
                 (scripts/test.sh does)",
            );
            Backend {
                env: vec![
                    ("AWS_ACCESS_KEY_ID".into(), "test".into()),
                    ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
                    ("SQS_ENDPOINT_URL".into(), url),
                    ("SQS_QUEUE_NAME".into(), unique()),
                ],
                queue: json!({ "driver": "sqs", "reliability": lease,
                               "sqs": { "visibility_timeout": 2, "wait_time_seconds": 1 } }),
                broker: None,
            }
        }
        other => panic!("unknown driver {other}"),
    }
}

fn start_server(backend: &Backend, receiver: &Receiver, metrics_port: u16) -> Server {
    let hooks = json!({ "webhooks": [{
        "url": format!("http://127.0.0.1:{}/hook", receiver.port),
        "event_types": ["channel_occupied"],
        "retry": { "initial_backoff_ms": 200, "max_backoff_ms": 500, "max_elapsed_time_ms": 120000 },
        "request_timeout_ms": 2000
    }]});
    let mut env = backend.env.clone();
    env.push(("METRICS_ENABLED".into(), "true".into()));
    env.push(("METRICS_HOST".into(), "127.0.0.1".into()));
    env.push(("METRICS_PORT".into(), metrics_port.to_string()));
    Server::start_with(ServerOptions {
        shards: 2,
        config: json!({
            "app_manager": { "array": { "apps": [app_json(hooks)] } },
            "queue": backend.queue,
        }),
        env,
    })
}

/// One value of the metrics endpoint (0 when absent).
fn metric(port: u16, name: &str) -> f64 {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return 0.0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

fn wait_metric(port: u16, name: &str, at_least: f64, within: Duration) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(port, name);
        if v >= at_least {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} stayed at {v}, below {at_least}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Subscribes a client to `n` new channels named `{prefix}-{i}`: one `channel_occupied` webhook each.
fn occupy(server: &Server, prefix: &str, n: usize) -> (common::Client, BTreeSet<String>) {
    let mut client = server.client();
    let mut names = BTreeSet::new();
    for i in 0..n {
        let name = format!("{prefix}-{i}");
        client.subscribe(&name);
        names.insert(name);
    }
    (client, names)
}

const WEBHOOKS: usize = 30;

/// Webhooks queued while the receiver refuses them, the server SIGKILLed, a new one started: every webhook
/// is delivered, signed, with its stable id.
fn survives_sigkill(driver: &str) {
    let backend = backend(driver);
    let receiver = Receiver::start(true);
    let metrics_a = free_port();
    let mut a = start_server(&backend, &receiver, metrics_a);
    let (client, channels) = occupy(&a, "ch", WEBHOOKS);
    wait_metric(
        metrics_a,
        "sockudo_queue_enqueued_total",
        WEBHOOKS as f64,
        Duration::from_secs(20),
    );
    // The receiver has refused some attempts: the requests are held, in retries, by this process.
    wait_metric(
        metrics_a,
        "sockudo_queue_fetched_total",
        1.0,
        Duration::from_secs(20),
    );
    drop(client);
    let mut child = a.child.take().expect("server A runs");
    child.kill().expect("SIGKILL"); // Child::kill sends SIGKILL
    let _ = child.wait();
    assert!(receiver.delivered().is_empty());

    receiver.refusing.store(false, Ordering::SeqCst);
    let metrics_b = free_port();
    let _b = start_server(&backend, &receiver, metrics_b);
    receiver.wait_for_all(&channels, Duration::from_secs(60));
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
    // Each event travelled in one request, identified by one id.
    for (channel, ids) in receiver.delivered() {
        assert_eq!(ids.len(), 1, "{channel} came with ids {ids:?}");
        let id = ids.iter().next().unwrap();
        assert_eq!(id.len(), 32, "{channel}: id {id:?}");
    }
    assert!(metric(metrics_b, "sockudo_queue_redelivered_total") >= 1.0);
    wait_metric(
        metrics_b,
        "sockudo_queue_acked_total",
        WEBHOOKS as f64,
        Duration::from_secs(10),
    );
    drop(backend.broker);
}

#[test]
fn redis_survives_sigkill() {
    survives_sigkill("redis");
}

#[test]
fn redis_cluster_survives_sigkill() {
    survives_sigkill("redis-cluster");
}

#[test]
fn sqs_survives_sigkill() {
    survives_sigkill("sqs");
}

/// Redis stopped while webhooks are produced: they wait in the local buffer (metrics say the backend is
/// down), the server keeps serving, and once Redis is back every one is delivered.
#[test]
fn redis_stopped_mid_run_loses_nothing_buffered() {
    let mut backend = backend("redis");
    let receiver = Receiver::start(false);
    let metrics = free_port();
    let server = start_server(&backend, &receiver, metrics);
    let (_first, before) = occupy(&server, "before", 5);
    receiver.wait_for_all(&before, Duration::from_secs(20));

    backend.broker.as_mut().expect("own redis").kill();
    let (_second, during) = occupy(&server, "during", WEBHOOKS);
    wait_metric(
        metrics,
        "sockudo_queue_buffered",
        1.0,
        Duration::from_secs(10),
    );
    assert_eq!(metric(metrics, "sockudo_queue_backend_up"), 0.0);
    assert!(metric(metrics, "sockudo_queue_backend_errors_total") >= 1.0);
    // Still serving while the backend is down.
    let (_third, _) = occupy(&server, "still-serving", 1);

    backend.broker.as_mut().expect("own redis").restart();
    receiver.wait_for_all(&during, Duration::from_secs(60));
    wait_metric(
        metrics,
        "sockudo_queue_backend_up",
        1.0,
        Duration::from_secs(10),
    );
    assert_eq!(metric(metrics, "sockudo_queue_buffered"), 0.0);
    assert_eq!(metric(metrics, "sockudo_queue_dropped_total"), 0.0);
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
}

/// A driver not compiled in, or an unknown one, stops the start with a message naming the problem.
#[test]
fn unknown_driver_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("sockudo-queue-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .current_dir(&dir)
        .env_clear()
        .env("PORT", free_port().to_string())
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "1")
        .env("METRICS_ENABLED", "false")
        .env("QUEUE_DRIVER", "kafka")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server started with queue.driver = \"kafka\"");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr text");
    assert!(stderr.contains("queue.driver = \"kafka\""), "{stderr}");
}

/// The local buffer is bounded: with Redis down and more webhooks than `queue.buffer_size`, the oldest are
/// dropped and counted, and the newest are delivered once Redis is back.
#[test]
fn redis_outage_keeps_only_the_newest_within_the_buffer() {
    let mut backend = backend("redis");
    backend.env.push(("QUEUE_BUFFER_SIZE".into(), "5".into()));
    let receiver = Receiver::start(false);
    let metrics = free_port();
    let server = start_server(&backend, &receiver, metrics);
    let (_warm, warm) = occupy(&server, "warm", 1);
    receiver.wait_for_all(&warm, Duration::from_secs(20));

    backend.broker.as_mut().expect("own redis").kill();
    let (_client, _) = occupy(&server, "burst", 20);
    wait_metric(
        metrics,
        "sockudo_queue_dropped_total",
        15.0,
        Duration::from_secs(10),
    );
    assert_eq!(metric(metrics, "sockudo_queue_buffered"), 5.0);

    backend.broker.as_mut().expect("own redis").restart();
    let newest: BTreeSet<String> = (15..20).map(|i| format!("burst-{i}")).collect();
    receiver.wait_for_all(&newest, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    let burst: Vec<String> = receiver
        .delivered()
        .into_keys()
        .filter(|c| c.starts_with("burst-"))
        .collect();
    assert_eq!(burst.len(), 5, "{burst:?}");
    assert_eq!(metric(metrics, "sockudo_queue_dropped_total"), 15.0);
}
