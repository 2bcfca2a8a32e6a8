//! Lambda delivery end to end (feature `lambda`), against a local stand-in for the Lambda API found through
//! `AWS_ENDPOINT_URL_LAMBDA`, as a moto server would be. Its own test binary: the AWS environment set here
//! stays in this process.
#![cfg(feature = "lambda")]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Receiver;
use serde_json::json;
use sockudo_io_shard::{start, IoRequest, IoShardConfig};
use sockudo_webhooks::{parse_webhooks, AppWebhooks, EventKind, WebhookEvent};

#[test]
fn invokes_the_function_asynchronously_with_the_webhook_body() {
    let receiver = Receiver::new(vec![202]);
    let endpoint = receiver.url.trim_end_matches("/hook").to_string();
    std::env::set_var("AWS_ENDPOINT_URL_LAMBDA", &endpoint);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    std::env::set_var("AWS_CONFIG_FILE", "/nonexistent");
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent");
    let webhooks = parse_webhooks(&[json!({
        "lambda": {"function_name": "pusher-hook", "region": "eu-west-1"},
        "event_types": ["member_added"]
    })])
    .expect("valid");
    let app = AppWebhooks {
        app_id: "3".into(),
        key: "k".into(),
        secret: "s".into(),
        webhooks,
    };
    let config = IoShardConfig {
        apps: vec![app],
        ..IoShardConfig::default()
    };
    let (shard, sender) = start(config).expect("start");
    let mut ev = WebhookEvent::new(0, EventKind::MemberAdded, "presence-room");
    ev.user_id = Some("u1".into());
    assert!(sender.send(IoRequest::Webhook(ev)));

    let got = receiver
        .next(Duration::from_secs(10))
        .expect("an Invoke call");
    assert_eq!(
        got.request_line,
        "POST /2015-03-31/functions/pusher-hook/invocations HTTP/1.1"
    );
    assert_eq!(got.header("x-amz-invocation-type"), Some("Event"));
    assert!(got
        .header("authorization")
        .is_some_and(|a| a.contains("/eu-west-1/lambda/")));
    let body = got.json();
    assert_eq!(
        body["events"],
        json!([{"name": "member_added", "channel": "presence-room", "user_id": "u1"}])
    );
    assert!(body["time_ms"].is_u64());
    let sent = || sender.stats().webhooks_sent.load(Ordering::Relaxed);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while sent() == 0 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(sent(), 1);
    shard.shutdown(Duration::from_secs(1));
}
