//! Pusher protocol v7 pieces the generator needs: message parsing, subscribe, private auth,
//! and the benchmark payload (send timestamp + sequence number, padded).

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;
use std::borrow::Cow;

/// Name of the events published by the generator.
pub const EVENT_NAME: &str = "bench-event";
pub const CLIENT_EVENT_NAME: &str = "client-bench";

#[derive(Deserialize)]
pub struct Incoming<'a> {
    #[serde(borrow)]
    pub event: Cow<'a, str>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
}

pub fn parse(msg: &[u8]) -> Option<Incoming<'_>> {
    serde_json::from_slice(msg).ok()
}

/// `socket_id` from `pusher:connection_established` (data is a JSON string, or an object).
pub fn socket_id(data: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Est {
        socket_id: String,
    }
    let raw = data?.get();
    let est: Est = match serde_json::from_str::<String>(raw) {
        Ok(inner) => serde_json::from_str(&inner).ok()?,
        Err(_) => serde_json::from_str(raw).ok()?,
    };
    Some(est.socket_id)
}

pub fn channel_name(private: bool, index: usize) -> String {
    if private {
        format!("private-bench-{index}")
    } else {
        format!("bench-{index}")
    }
}

/// `auth = key:hex(HMAC-SHA256(secret, "socket_id:channel"))` (PROTOCOL.md 1.7).
pub fn private_auth(key: &str, secret: &str, socket_id: &str, channel: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key");
    mac.update(socket_id.as_bytes());
    mac.update(b":");
    mac.update(channel.as_bytes());
    format!("{key}:{}", hex::encode(mac.finalize().into_bytes()))
}

/// `pusher:subscribe` with the optional sockudo-js `delta` setting and bench tag filter.
pub fn subscribe_msg_with(
    channel: &str,
    auth: Option<&str>,
    delta: Option<&str>,
    filter: bool,
) -> String {
    let mut data = serde_json::json!({ "channel": channel, "auth": auth.unwrap_or("") });
    if let Some(d) = delta {
        data["delta"] = serde_json::json!({ "enabled": true, "algorithm": d });
    }
    if filter {
        data["tags_filter"] = serde_json::json!({ "key": "k", "cmp": "eq", "val": "hit" });
    }
    serde_json::json!({ "event": "pusher:subscribe", "data": data }).to_string()
}

/// A ticker quote of about `bytes` bytes: stamp, a few changing prices, and a fixed order book as padding.
pub fn ticker_payload(ts_ns: u64, seq: u64, bytes: usize) -> String {
    let px = 60_000.0 + (seq % 1000) as f64 * 0.5;
    let mut s = format!(
        "{{\"__bt\":{ts_ns},\"__bs\":{seq},\"symbol\":\"BTC-USD\",\"bid\":\"{:.2}\",\"ask\":\"{:.2}\",\"last\":\"{:.2}\",\"volume\":{},\"book\":[",
        px - 0.5,
        px + 0.5,
        px,
        1_000_000 + seq * 7
    );
    let mut level = 0u64;
    while s.len() + 40 < bytes {
        if level > 0 {
            s.push(',');
        }
        let _ = std::fmt::Write::write_fmt(
            &mut s,
            format_args!(
                "[\"{}.{:02}\",\"{}\"]",
                59_000 + level * 13,
                level % 100,
                1 + (level * 37) % 500
            ),
        );
        level += 1;
    }
    s.push_str("]}");
    s
}

pub const PONG: &str = r#"{"event":"pusher:pong","data":{}}"#;

/// Nanoseconds on the system-wide monotonic clock (`CLOCK_MONOTONIC`), so stamps written by one generator
/// process can be compared by another (several generators share one fan-out run).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The event data string: `{"__bt":<ns>,"__bs":<seq>,"pad":"xxx"}`, padded to `bytes`.
pub fn payload(ts_ns: u64, seq: u64, bytes: usize) -> String {
    let mut s = format!("{{\"__bt\":{ts_ns},\"__bs\":{seq},\"pad\":\"");
    let fill = bytes.saturating_sub(s.len() + 2);
    s.extend(std::iter::repeat_n('x', fill));
    s.push_str("\"}");
    s
}

/// Find the send timestamp and sequence in a delivered message without a full parse.
/// Works whether the payload is embedded as a JSON string (escaped quotes) or as an object.
pub fn scan_stamp(msg: &[u8]) -> Option<(u64, u64)> {
    Some((scan_num(msg, b"__bt")?, scan_num(msg, b"__bs")?))
}

fn scan_num(msg: &[u8], field: &[u8]) -> Option<u64> {
    let at = crate::ws::find(msg, field)? + field.len();
    let rest = &msg[at..];
    let digits_at = rest.iter().take(6).position(|b| b.is_ascii_digit())?;
    let mut v: u64 = 0;
    for &b in &rest[digits_at..] {
        if !b.is_ascii_digit() {
            break;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_auth_golden_vector() {
        let a = private_auth(
            "278d425bdf160c739803",
            "7ad3773142a6692b25b8",
            "1234.1234",
            "private-foobar",
        );
        assert_eq!(
            a,
            "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
    }

    #[test]
    fn payload_roundtrip_through_double_encoding() {
        let p = payload(123_456_789, 42, 200);
        assert_eq!(p.len(), 200);
        let wire =
            serde_json::json!({"event": EVENT_NAME, "channel": "bench-0", "data": p}).to_string();
        assert_eq!(scan_stamp(wire.as_bytes()), Some((123_456_789, 42)));
        let obj: serde_json::Value = serde_json::from_str(&p).unwrap();
        let wire2 = serde_json::json!({"event": "client-bench", "data": obj}).to_string();
        assert_eq!(scan_stamp(wire2.as_bytes()), Some((123_456_789, 42)));
    }

    #[test]
    fn socket_id_string_or_object() {
        let m = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#;
        let inc = parse(m).unwrap();
        assert_eq!(socket_id(inc.data).as_deref(), Some("1.2"));
        let m = br#"{"event":"pusher:connection_established","data":{"socket_id":"3.4"}}"#;
        assert_eq!(socket_id(parse(m).unwrap().data).as_deref(), Some("3.4"));
    }
}
