//! The I/O shard against a local HTTP receiver (std TcpListener in a thread): exact body and headers, batching,
//! retries, shutdown flushing, queue overflow and the pending cap.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sockudo_io_shard::{start, IoRequest, IoShardConfig, IoStats};
mod common;

use common::{Received, Receiver};
use sockudo_webhooks::{parse_webhooks, AppWebhooks, EventKind, WebhookEvent};

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";

fn app(webhooks: Value) -> AppWebhooks {
    let list = webhooks.as_array().cloned().expect("array");
    AppWebhooks {
        app_id: "3".into(),
        key: KEY.into(),
        secret: SECRET.into(),
        webhooks: parse_webhooks(&list).expect("valid webhooks"),
    }
}

fn config(apps: Vec<AppWebhooks>, batching: Option<Duration>) -> IoShardConfig {
    IoShardConfig {
        apps,
        batching,
        ..IoShardConfig::default()
    }
}

fn occupied(channel: &str) -> IoRequest {
    IoRequest::Webhook(WebhookEvent::new(0, EventKind::ChannelOccupied, channel))
}

fn count(stat: &std::sync::atomic::AtomicU64) -> u64 {
    stat.load(Ordering::Relaxed)
}

/// Waits (briefly polling: this is a test) until `cond` holds.
fn wait_for(stats: &IoStats, within: Duration, cond: impl Fn(&IoStats) -> bool) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if cond(stats) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond(stats)
}

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn delivers_exact_body_and_headers_with_a_valid_signature() {
    let receiver = Receiver::new(vec![200]);
    let hooks = app(json!([{
        "url": receiver.url,
        "event_types": ["client_event", "member_added"],
        "filter": {"channel_prefix": "presence-"},
        "headers": {"X-Extra": "yes", "X-Pusher-Key": "forged"}
    }]));
    let (shard, sender) = start(config(vec![hooks], None)).expect("start");
    let mut ev = WebhookEvent::new(0, EventKind::ClientEvent, "presence-room");
    ev.event = Some("client-typing".into());
    ev.data = Some("{\"x\":1}".into());
    ev.socket_id = Some("1.2".into());
    ev.user_id = Some("u7".into());
    // Filtered out (channel), unwanted (kind), unknown app: none reaches the receiver.
    assert!(sender.send(IoRequest::Webhook(WebhookEvent::new(
        0,
        EventKind::ClientEvent,
        "private-x"
    ))));
    assert!(sender.send(occupied("presence-room")));
    assert!(sender.send(IoRequest::Webhook(WebhookEvent::new(
        9,
        EventKind::ClientEvent,
        "presence-a"
    ))));
    assert!(sender.send(IoRequest::Webhook(ev)));

    let got = receiver.next(WAIT).expect("one request");
    assert_eq!(got.request_line, "POST /hook HTTP/1.1");
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("x-pusher-key"), Some(KEY));
    assert_eq!(got.header("x-extra"), Some("yes"));
    let keys = got
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-pusher-key"))
        .count();
    assert_eq!(
        keys, 1,
        "a custom header cannot add or replace X-Pusher-Key"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&got.body);
    let want = hex::encode(mac.finalize().into_bytes());
    assert_eq!(got.header("x-pusher-signature"), Some(want.as_str()));

    let body = std::str::from_utf8(&got.body).expect("utf8");
    let time_ms = got.json()["time_ms"].as_u64().expect("time_ms");
    assert_eq!(
        body,
        format!(
            "{{\"time_ms\":{time_ms},\"events\":[{{\"name\":\"client_event\",\"channel\":\"presence-room\",\
             \"event\":\"client-typing\",\"data\":\"{{\\\"x\\\":1}}\",\"socket_id\":\"1.2\",\"user_id\":\"u7\"}}]}}"
        )
    );
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    assert!(
        now_ms.abs_diff(time_ms) < 10_000,
        "time_ms is the current time"
    );
    assert!(wait_for(sender.stats(), WAIT, |s| count(&s.webhooks_sent) == 1));
    assert!(
        receiver.next(Duration::from_millis(200)).is_none(),
        "nothing else was sent"
    );
    shard.shutdown(Duration::from_secs(1));
}

#[test]
fn batching_groups_events_per_webhook() {
    let a = Receiver::new(vec![200]);
    let b = Receiver::new(vec![200]);
    let hooks = app(json!([
        {"url": a.url, "event_types": ["channel_occupied"]},
        {"url": b.url, "event_types": ["channel_occupied"], "filter": {"channel_suffix": "-b"}}
    ]));
    let (shard, sender) =
        start(config(vec![hooks], Some(Duration::from_millis(150)))).expect("start");
    let sent_at = Instant::now();
    for ch in ["c1", "c2-b", "c3", "c4-b", "c5"] {
        assert!(sender.send(occupied(ch)));
    }
    let got_a = a.next(WAIT).expect("batch for a");
    let got_b = b.next(WAIT).expect("batch for b");
    let channels = |r: &Received| -> Vec<String> {
        r.events()
            .iter()
            .map(|e| e["channel"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(channels(&got_a), ["c1", "c2-b", "c3", "c4-b", "c5"]);
    assert_eq!(channels(&got_b), ["c2-b", "c4-b"]);
    assert!(
        got_a.at - sent_at >= Duration::from_millis(140),
        "sent when the window closed"
    );
    assert!(
        a.next(Duration::from_millis(300)).is_none(),
        "one request per window"
    );
    assert_eq!(count(&sender.stats().webhooks_sent), 2);
    shard.shutdown(Duration::from_secs(1));
}

#[test]
fn batching_size_caps_the_events_of_one_request() {
    let a = Receiver::new(vec![200]);
    let hooks = app(json!([{"url": a.url, "event_types": ["channel_occupied"]}]));
    let (shard, sender) = start(IoShardConfig {
        batch_size: 2,
        ..config(vec![hooks], Some(Duration::from_millis(150)))
    })
    .expect("start");
    for ch in ["c1", "c2", "c3"] {
        assert!(sender.send(occupied(ch)));
    }
    let sizes: Vec<usize> = (0..2)
        .map(|_| a.next(WAIT).expect("a batch").events().len())
        .collect();
    assert_eq!(
        sizes,
        [2, 1],
        "a full batch goes at once, the rest when the window closes"
    );
    shard.shutdown(Duration::from_secs(1));
}

#[test]
fn a_500_is_retried_with_the_same_body_after_about_a_second() {
    let receiver = Receiver::new(vec![500, 200]);
    let hooks = app(json!([{"url": receiver.url, "event_types": ["channel_occupied"]}]));
    let (shard, sender) = start(config(vec![hooks], None)).expect("start");
    assert!(sender.send(occupied("retry-me")));
    let first = receiver.next(WAIT).expect("first attempt");
    let second = receiver.next(WAIT).expect("retry");
    assert_eq!(first.body, second.body, "the same signed body again");
    assert_eq!(
        first.header("x-pusher-signature"),
        second.header("x-pusher-signature")
    );
    let gap = second.at - first.at;
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_millis(2500),
        "{gap:?}"
    );
    let stats = sender.stats();
    assert!(wait_for(stats, WAIT, |s| count(&s.webhooks_sent) == 1));
    assert_eq!(count(&stats.webhook_retries), 1);
    assert_eq!(count(&stats.webhooks_failed), 0);
    assert_eq!(count(&stats.webhooks_pending), 0);
    shard.shutdown(Duration::from_secs(1));
}

#[test]
fn a_400_is_not_retried() {
    let receiver = Receiver::new(vec![400, 200]);
    let hooks = app(json!([{
        "url": receiver.url, "event_types": ["channel_occupied"],
        "retry": {"initial_backoff_ms": 20, "max_backoff_ms": 40}
    }]));
    let (shard, sender) = start(config(vec![hooks], None)).expect("start");
    assert!(sender.send(occupied("bad")));
    receiver.next(WAIT).expect("one attempt");
    assert!(wait_for(sender.stats(), WAIT, |s| count(
        &s.webhooks_failed
    ) == 1));
    assert!(
        receiver.next(Duration::from_millis(300)).is_none(),
        "no second attempt"
    );
    assert_eq!(count(&sender.stats().webhook_retries), 0);
    assert_eq!(count(&sender.stats().webhooks_sent), 0);
    shard.shutdown(Duration::from_secs(1));
}

#[test]
fn small_backoff_overrides_retry_until_max_attempts() {
    let receiver = Receiver::new(vec![503]);
    let hooks = app(json!([{
        "url": receiver.url, "event_types": ["channel_occupied"],
        "retry": {"max_attempts": 3, "initial_backoff_ms": 20, "max_backoff_ms": 40}
    }]));
    let (shard, sender) = start(config(vec![hooks], None)).expect("start");
    assert!(sender.send(occupied("down")));
    for n in 0..3 {
        receiver.next(WAIT).unwrap_or_else(|| panic!("attempt {n}"));
    }
    assert!(wait_for(sender.stats(), WAIT, |s| count(
        &s.webhooks_failed
    ) == 1));
    assert_eq!(count(&sender.stats().webhook_retries), 2);
    assert!(receiver.next(Duration::from_millis(200)).is_none());
    shard.shutdown(Duration::from_secs(1));
}

#[test]
fn shutdown_flushes_an_open_batch_within_the_bound() {
    let receiver = Receiver::new(vec![200]);
    let hooks = app(json!([{"url": receiver.url, "event_types": ["channel_occupied"]}]));
    let (shard, sender) = start(config(vec![hooks], Some(Duration::from_secs(30)))).expect("start");
    for ch in ["a", "b", "c"] {
        assert!(sender.send(occupied(ch)));
    }
    let stats = sender.stats().clone();
    let t0 = Instant::now();
    shard.shutdown(Duration::from_secs(2));
    assert!(
        t0.elapsed() < Duration::from_millis(2300),
        "{:?}",
        t0.elapsed()
    );
    let got = receiver
        .next(Duration::from_millis(100))
        .expect("the open batch was sent");
    assert_eq!(got.events().len(), 3);
    assert_eq!(count(&stats.webhooks_sent), 1);
    assert!(!sender.send(occupied("late")), "the shard is gone");
}

#[test]
fn shutdown_does_not_wait_for_retries_past_the_bound() {
    let receiver = Receiver::new(vec![503]);
    let hooks = app(json!([{"url": receiver.url, "event_types": ["channel_occupied"]}]));
    let (shard, sender) = start(config(vec![hooks], None)).expect("start");
    assert!(sender.send(occupied("x")));
    receiver.next(WAIT).expect("first attempt");
    let stats = sender.stats().clone();
    assert!(wait_for(&stats, WAIT, |s| count(&s.webhooks_pending) == 1));
    let t0 = Instant::now();
    shard.shutdown(Duration::from_millis(300));
    assert!(
        t0.elapsed() < Duration::from_millis(600),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(count(&stats.webhooks_failed), 1);
    assert_eq!(count(&stats.webhooks_pending), 0);
    assert_eq!(count(&stats.webhook_retries), 0);
}

#[test]
fn a_full_queue_refuses_and_counts() {
    let (shard, sender) = start(IoShardConfig {
        queue_capacity: 1,
        ..IoShardConfig::default()
    })
    .expect("start");
    let mut refused = 0u64;
    for _ in 0..200_000 {
        if !sender.send(occupied("flood")) {
            refused += 1;
        }
    }
    assert!(refused > 0, "a one-slot queue overflows under a flood");
    assert_eq!(count(&sender.stats().dropped_queue_full), refused);
    shard.shutdown(Duration::from_secs(1));
}

#[test]
fn oldest_waiting_delivery_is_dropped_beyond_the_pending_cap() {
    let receiver = Receiver::new(vec![503]);
    let hooks = app(json!([{
        "url": receiver.url, "event_types": ["channel_occupied"],
        "retry": {"initial_backoff_ms": 10000, "max_backoff_ms": 10000}
    }]));
    let config = IoShardConfig {
        max_pending_deliveries: 1,
        ..config(vec![hooks], None)
    };
    let (shard, sender) = start(config).expect("start");
    for ch in ["1", "2", "3"] {
        assert!(sender.send(occupied(ch)));
        receiver.next(WAIT).expect("attempt");
    }
    let stats = sender.stats();
    assert!(wait_for(stats, WAIT, |s| count(
        &s.webhooks_dropped_pending
    ) == 2));
    assert_eq!(count(&stats.webhooks_failed), 2);
    assert_eq!(count(&stats.webhooks_pending), 1);
    shard.shutdown(Duration::from_millis(100));
}

#[test]
fn replaced_apps_sign_with_the_new_secret_and_reach_the_new_webhooks() {
    let old_receiver = Receiver::new(vec![200]);
    let new_receiver = Receiver::new(vec![200]);
    let hooks = app(json!([{"url": old_receiver.url, "event_types": ["channel_occupied"]}]));
    let (shard, sender) = start(config(vec![hooks], None)).expect("start");
    let mut replaced = app(json!([{"url": new_receiver.url, "event_types": ["channel_occupied"]}]));
    replaced.secret = "a-new-secret".into();
    let second = app(json!([{"url": new_receiver.url, "event_types": ["channel_vacated"]}]));
    assert!(sender.send(IoRequest::AppWebhooks {
        slot: 0,
        hooks: Some(replaced)
    }));
    assert!(sender.send(IoRequest::AppWebhooks {
        slot: 1,
        hooks: Some(second)
    }));
    assert!(sender.send(occupied("c")));
    assert!(sender.send(IoRequest::Webhook(WebhookEvent::new(
        1,
        EventKind::ChannelVacated,
        "d"
    ))));

    let first = new_receiver.next(WAIT).expect("first request");
    let second = new_receiver.next(WAIT).expect("second request");
    let mut by_name: Vec<(String, Received)> = [first, second]
        .into_iter()
        .map(|r| (r.events()[0]["name"].as_str().unwrap_or("").to_string(), r))
        .collect();
    by_name.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(by_name[0].0, "channel_occupied");
    assert_eq!(
        by_name[1].0, "channel_vacated",
        "the app added by the replacement"
    );
    let got = &by_name[0].1;
    let mut mac = Hmac::<Sha256>::new_from_slice(b"a-new-secret").expect("key");
    mac.update(&got.body);
    let want = hex::encode(mac.finalize().into_bytes());
    assert_eq!(got.header("x-pusher-signature"), Some(want.as_str()));
    assert!(
        old_receiver.next(Duration::from_millis(200)).is_none(),
        "the replaced webhook gets nothing"
    );
    shard.shutdown(Duration::from_secs(1));
}
