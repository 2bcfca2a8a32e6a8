//! The bytes of a webhook request (PROTOCOL.md 2.3): each event's JSON, the `{"time_ms":..,"events":[..]}`
//! body, and the headers that sign it (`X-Pusher-Signature` = hex HMAC-SHA256 of the raw body with the app
//! secret).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::config::{AppWebhooks, WebhookConfig};
use crate::event::{EventKind, WebhookEvent};

/// Exactly this: Pusher's SDKs compare the content type verbatim (no `; charset=utf-8`).
pub const CONTENT_TYPE: &str = "application/json";

/// One event as it appears in `events`, fields in Pusher's order; `None` fields are left out.
#[derive(Serialize)]
struct EventJson<'a> {
    name: &'static str,
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription_count: Option<u64>,
}

/// The JSON text of one event. Each kind carries only its own fields: `member_*` the `user_id`,
/// `client_event` `event`, `data`, `socket_id` and (presence) `user_id`, `subscription_count` the count.
pub fn event_json(ev: &WebhookEvent) -> String {
    let mut out = EventJson {
        name: ev.kind.name(),
        channel: &ev.channel,
        event: None,
        data: None,
        socket_id: None,
        user_id: None,
        subscription_count: None,
    };
    match ev.kind {
        EventKind::ChannelOccupied | EventKind::ChannelVacated | EventKind::CacheMiss => {}
        EventKind::MemberAdded | EventKind::MemberRemoved => {
            out.user_id = Some(ev.user_id.as_deref().unwrap_or(""));
        }
        EventKind::ClientEvent => {
            out.event = Some(ev.event.as_deref().unwrap_or(""));
            out.data = Some(ev.data.as_deref().unwrap_or(""));
            out.socket_id = Some(ev.socket_id.as_deref().unwrap_or(""));
            out.user_id = ev.user_id.as_deref();
        }
        EventKind::SubscriptionCount => {
            out.subscription_count = Some(ev.subscription_count.unwrap_or(0));
        }
    }
    // Serialising plain strings and integers into a Vec cannot fail.
    serde_json::to_string(&out).unwrap_or_default()
}

/// The request body for `events` (each already JSON text, see [`event_json`]).
pub fn body(time_ms: u64, events: &[String]) -> Bytes {
    let len = events.iter().map(|e| e.len() + 1).sum::<usize>() + 40;
    let mut out = String::with_capacity(len);
    out.push_str("{\"time_ms\":");
    out.push_str(&time_ms.to_string());
    out.push_str(",\"events\":[");
    for (i, ev) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(ev);
    }
    out.push_str("]}");
    Bytes::from(out)
}

/// hex(HMAC-SHA256(secret, body)).
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length: new_from_slice never fails for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Milliseconds since the Unix epoch, for `time_ms`.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A signed request, ready for any transport.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    /// The raw body the signature covers.
    pub body: Bytes,
    /// `Content-Type`, `X-Pusher-Key`, `X-Pusher-Signature`, then the webhook's own headers.
    pub headers: Vec<(String, String)>,
}

/// Builds the body for `events` at `time_ms` and signs it for `app`, adding `webhook`'s custom headers.
pub fn signed_request(
    app: &AppWebhooks,
    webhook: &WebhookConfig,
    events: &[String],
    time_ms: u64,
) -> SignedRequest {
    let body = body(time_ms, events);
    let mut headers = Vec::with_capacity(3 + webhook.headers.len());
    headers.push(("Content-Type".to_string(), CONTENT_TYPE.to_string()));
    headers.push(("X-Pusher-Key".to_string(), app.key.clone()));
    headers.push(("X-Pusher-Signature".to_string(), sign(&app.secret, &body)));
    // parse_webhooks already dropped custom copies of the three above.
    headers.extend(webhook.headers.iter().cloned());
    SignedRequest { body, headers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_webhooks;
    use serde_json::json;

    fn ev(kind: EventKind, channel: &str) -> WebhookEvent {
        WebhookEvent::new(3, kind, channel)
    }

    #[test]
    fn each_kind_has_exactly_its_fields() {
        let mut client = ev(EventKind::ClientEvent, "private-chat");
        client.event = Some("client-typing".into());
        client.data = Some("{\"a\":1}".into());
        client.socket_id = Some("123.456".into());
        let mut presence_client = client.clone();
        presence_client.channel = "presence-room".into();
        presence_client.user_id = Some("u1".into());
        let mut added = ev(EventKind::MemberAdded, "presence-room");
        added.user_id = Some("u1".into());
        let mut removed = added.clone();
        removed.kind = EventKind::MemberRemoved;
        let mut count = ev(EventKind::SubscriptionCount, "my-channel");
        count.subscription_count = Some(7);
        let cases = [
            (
                ev(EventKind::ChannelOccupied, "c"),
                r#"{"name":"channel_occupied","channel":"c"}"#,
            ),
            (
                ev(EventKind::ChannelVacated, "c"),
                r#"{"name":"channel_vacated","channel":"c"}"#,
            ),
            (
                ev(EventKind::CacheMiss, "cache-c"),
                r#"{"name":"cache_miss","channel":"cache-c"}"#,
            ),
            (
                added,
                r#"{"name":"member_added","channel":"presence-room","user_id":"u1"}"#,
            ),
            (
                removed,
                r#"{"name":"member_removed","channel":"presence-room","user_id":"u1"}"#,
            ),
            (
                client,
                r#"{"name":"client_event","channel":"private-chat","event":"client-typing","data":"{\"a\":1}","socket_id":"123.456"}"#,
            ),
            (
                presence_client,
                r#"{"name":"client_event","channel":"presence-room","event":"client-typing","data":"{\"a\":1}","socket_id":"123.456","user_id":"u1"}"#,
            ),
            (
                count,
                r#"{"name":"subscription_count","channel":"my-channel","subscription_count":7}"#,
            ),
        ];
        for (event, want) in cases {
            assert_eq!(event_json(&event), want);
        }
    }

    #[test]
    fn body_is_time_and_events() {
        let events = vec![
            event_json(&ev(EventKind::ChannelOccupied, "a")),
            event_json(&ev(EventKind::ChannelVacated, "b")),
        ];
        let b = body(1_700_000_000_000, &events);
        let v: serde_json::Value = serde_json::from_slice(&b).expect("json");
        assert_eq!(
            v,
            json!({"time_ms": 1_700_000_000_000u64, "events": [
                {"name": "channel_occupied", "channel": "a"},
                {"name": "channel_vacated", "channel": "b"}
            ]})
        );
        assert_eq!(&body(5, &[])[..], br#"{"time_ms":5,"events":[]}"#);
    }

    /// Vector computed independently with Python:
    /// `hmac.new(b"7ad3773142a6692b25b8", body, hashlib.sha256).hexdigest()`.
    #[test]
    fn signature_matches_an_independent_vector() {
        let body = br#"{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"test-channel"}]}"#;
        assert_eq!(
            sign("7ad3773142a6692b25b8", body),
            "c7f99839c5df006529a61d1236687af10fae79eb1d4e701d644fab3e9e81f5e8"
        );
    }

    #[test]
    fn signed_request_headers() {
        let webhooks = parse_webhooks(&[json!({
            "url": "http://127.0.0.1/",
            "event_types": ["channel_occupied"],
            "headers": {"X-Pusher-Signature": "forged", "Authorization": "Bearer t"}
        })])
        .expect("valid");
        let app = AppWebhooks {
            app_id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
            webhooks,
        };
        let events = vec![event_json(&ev(EventKind::ChannelOccupied, "test-channel"))];
        let req = signed_request(&app, &app.webhooks[0], &events, 1_700_000_000_000);
        let want_sig = "c7f99839c5df006529a61d1236687af10fae79eb1d4e701d644fab3e9e81f5e8";
        let pairs: Vec<(&str, &str)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("Content-Type", "application/json"),
                ("X-Pusher-Key", "278d425bdf160c739803"),
                ("X-Pusher-Signature", want_sig),
                ("Authorization", "Bearer t"),
            ]
        );
    }
}
