//! Pusher messages as JSON text: parsing what clients send, encoding what the server sends.
//!
//! Wire shapes follow PROTOCOL.md 1.2: the `data` of `pusher:*` / `pusher_internal:*` events the server sends is a
//! JSON *string* (double encoding), while channel events carry `data` exactly as it was published.
//! Everything here is pure: `&str` in, `String` out.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::fmt::Write as _;

/// One message from a client: `{"event": .., "channel"?: .., "data"?: ..}`.
#[derive(Debug, Deserialize)]
pub struct ClientMessage<'a> {
    /// Event name, e.g. `pusher:subscribe` or `client-typing`.
    #[serde(borrow)]
    pub event: std::borrow::Cow<'a, str>,
    /// Channel, present on client events.
    #[serde(default, borrow)]
    pub channel: Option<std::borrow::Cow<'a, str>>,
    /// The payload, kept raw: clients send it as an object or as a JSON string (pysher), and client events are
    /// forwarded verbatim.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// Why a client message could not be understood.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// Not JSON, or not an object with a string `event`.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The `data` of a known event is missing a required field.
    #[error("invalid {event} payload: {reason}")]
    InvalidData {
        /// The event whose payload was wrong.
        event: &'static str,
        /// What was wrong with it.
        reason: String,
    },
}

impl<'a> ClientMessage<'a> {
    /// Parses one text frame.
    pub fn parse(text: &'a str) -> Result<Self, MessageError> {
        serde_json::from_str(text).map_err(|e| MessageError::Invalid(e.to_string()))
    }

    /// Decodes `data` into `T`, accepting both an object and a JSON string holding the object. Anything else (an
    /// array, which serde would otherwise map onto the fields by position, a number, `null`) is refused.
    pub fn data_as<T: for<'de> Deserialize<'de>>(
        &self,
        event: &'static str,
    ) -> Result<T, MessageError> {
        let invalid = |reason: String| MessageError::InvalidData { event, reason };
        let raw = self
            .data
            .ok_or_else(|| invalid("missing data".to_string()))?;
        let text = raw.get();
        let inner: String;
        let object = if text.starts_with('"') {
            inner = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
            inner.as_str()
        } else {
            text
        };
        if !object.trim_start().starts_with('{') {
            return Err(invalid("data must be a JSON object".to_string()));
        }
        serde_json::from_str(object).map_err(|e| invalid(e.to_string()))
    }
}

/// `pusher:subscribe` data.
#[derive(Debug, Deserialize)]
pub struct SubscribeData {
    /// The channel to join.
    pub channel: String,
    /// `key:signature` for private and presence channels; pusher-js sends `""` for public ones.
    #[serde(default)]
    pub auth: Option<String>,
    /// Presence member data, a JSON string signed exactly as sent.
    #[serde(default)]
    pub channel_data: Option<String>,
    /// Tag filter tree (checked before `tags_filter`).
    #[serde(default)]
    pub filter: Option<serde_json::Value>,
    /// Tag filter tree as sockudo-js sends it.
    #[serde(default)]
    pub tags_filter: Option<serde_json::Value>,
    /// Delta compression setting of this subscription (bool, algorithm name or object).
    #[serde(default)]
    pub delta: Option<serde_json::Value>,
}

/// `pusher:delta_sync_error` data.
#[derive(Debug, Deserialize)]
pub struct DeltaSyncErrorData {
    /// The channel whose bases the client lost.
    pub channel: String,
}

/// `pusher:unsubscribe` data.
#[derive(Debug, Deserialize)]
pub struct UnsubscribeData {
    /// The channel to leave.
    pub channel: String,
}

/// Appends `s` as a JSON string literal (quoted and escaped).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escaped {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Returns `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_string(&mut out, s);
    out
}

/// A channel event: `{"event":E,"channel":C,"data":D}` where `data_json` is already a JSON value (normally a
/// string literal exactly as published), and optional top-level `user_id` (client events on presence channels).
pub fn channel_event(event: &str, channel: &str, data_json: &str, user_id: Option<&str>) -> String {
    tagged_channel_event(event, channel, data_json, user_id, None)
}

/// [`channel_event`] with a trailing `"tags":{..}` member (sorted keys), as REST publishes with tags carry.
pub fn tagged_channel_event(
    event: &str,
    channel: &str,
    data_json: &str,
    user_id: Option<&str>,
    tags: Option<&crate::tags::Tags>,
) -> String {
    let mut out = String::with_capacity(event.len() + channel.len() + data_json.len() + 48);
    out.push_str("{\"event\":");
    push_json_string(&mut out, event);
    out.push_str(",\"channel\":");
    push_json_string(&mut out, channel);
    out.push_str(",\"data\":");
    out.push_str(data_json);
    if let Some(uid) = user_id {
        out.push_str(",\"user_id\":");
        push_json_string(&mut out, uid);
    }
    if let Some(tags) = tags {
        out.push_str(",\"tags\":");
        tags.push_json(&mut out);
    }
    out.push('}');
    out
}

/// A server event whose `data` is the JSON text `data_object`, double-encoded as a string.
pub fn internal_event(event: &str, channel: Option<&str>, data_object: &str) -> String {
    let mut out = String::with_capacity(event.len() + data_object.len() + 64);
    out.push_str("{\"event\":");
    push_json_string(&mut out, event);
    if let Some(ch) = channel {
        out.push_str(",\"channel\":");
        push_json_string(&mut out, ch);
    }
    out.push_str(",\"data\":");
    push_json_string(&mut out, data_object);
    out.push('}');
    out
}

/// `pusher:connection_established` with the socket id and the server's activity timeout in seconds.
pub fn connection_established(socket_id: &str, activity_timeout: u64) -> String {
    let data = format!(
        "{{\"socket_id\":{},\"activity_timeout\":{}}}",
        json_string(socket_id),
        activity_timeout
    );
    internal_event("pusher:connection_established", None, &data)
}

/// `pusher:error` with `data` as an object `{"code":..,"message":..}` (what Pusher itself sends; PROTOCOL.md 1.2).
/// `code` is `None` for Pusher's "code null" errors.
pub fn error(code: Option<u16>, message: &str, channel: Option<&str>) -> String {
    let mut out = String::with_capacity(message.len() + 64);
    out.push_str("{\"event\":\"pusher:error\"");
    if let Some(ch) = channel {
        out.push_str(",\"channel\":");
        push_json_string(&mut out, ch);
    }
    out.push_str(",\"data\":{\"code\":");
    match code {
        Some(c) => {
            let _ = write!(out, "{c}");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"message\":");
    push_json_string(&mut out, message);
    out.push_str("}}");
    out
}

/// `pusher:pong`, the answer to a client's `pusher:ping`.
pub fn pong() -> &'static str {
    "{\"event\":\"pusher:pong\",\"data\":\"{}\"}"
}

/// `pusher:ping`, sent by the server after `activity_timeout` of client silence.
pub fn ping() -> &'static str {
    "{\"event\":\"pusher:ping\",\"data\":\"{}\"}"
}

/// `pusher_internal:subscription_succeeded` for a non-presence channel.
pub fn subscription_succeeded(channel: &str) -> String {
    internal_event(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        "{}",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_established_double_encodes_data() {
        let msg = connection_established("123.456", 120);
        assert_eq!(
            msg,
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
        let inner: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
        assert_eq!(inner["socket_id"], "123.456");
    }

    #[test]
    fn channel_event_embeds_published_data_verbatim() {
        let msg = channel_event("my-event", "my-channel", r#""{\"a\":1}""#, None);
        let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v["data"], "{\"a\":1}");
        assert_eq!(v["channel"], "my-channel");
        assert!(v.get("user_id").is_none());
        let with_user = channel_event("client-x", "presence-a", "{}", Some("7"));
        let v: serde_json::Value = serde_json::from_str(&with_user).unwrap();
        assert_eq!(v["user_id"], "7");
    }

    #[test]
    fn json_strings_escape_control_characters_and_quotes() {
        let s = "a\"b\\c\nd\u{1}e\u{7f}é";
        let encoded = json_string(s);
        let back: String = serde_json::from_str(&encoded).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn error_has_object_data_and_optional_channel() {
        let v: serde_json::Value = serde_json::from_str(&error(Some(4001), "nope", None)).unwrap();
        assert_eq!(v["data"]["code"], 4001);
        assert_eq!(v["data"]["message"], "nope");
        let v: serde_json::Value =
            serde_json::from_str(&error(None, "bad sig", Some("private-a"))).unwrap();
        assert!(v["data"]["code"].is_null());
        assert_eq!(v["channel"], "private-a");
    }

    #[test]
    fn subscribe_data_accepts_object_and_string_forms() {
        let obj = ClientMessage::parse(
            r#"{"event":"pusher:subscribe","data":{"channel":"a","auth":""}}"#,
        )
        .unwrap();
        let d: SubscribeData = obj.data_as("pusher:subscribe").unwrap();
        assert_eq!(d.channel, "a");
        let s =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#)
                .unwrap();
        let d: SubscribeData = s.data_as("pusher:subscribe").unwrap();
        assert_eq!(d.channel, "b");
        assert!(d.auth.is_none());
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        assert!(ClientMessage::parse("not json").is_err());
        assert!(ClientMessage::parse(r#"{"data":{}}"#).is_err());
        assert!(ClientMessage::parse(r#"{"event":5}"#).is_err());
        let m = ClientMessage::parse(r#"{"event":"pusher:subscribe"}"#).unwrap();
        assert!(m.data_as::<SubscribeData>("pusher:subscribe").is_err());
        let m =
            ClientMessage::parse(r#"{"event":"pusher:subscribe","data":{"auth":"x"}}"#).unwrap();
        assert!(m.data_as::<SubscribeData>("pusher:subscribe").is_err());
    }

    #[test]
    fn data_that_is_not_an_object_is_refused() {
        for data in [
            r#"["private-x","k:s"]"#,
            r#""[\"private-x\"]""#,
            "5",
            "null",
            r#""channel""#,
        ] {
            let text = format!(r#"{{"event":"pusher:subscribe","data":{data}}}"#);
            let m = ClientMessage::parse(&text).unwrap();
            let err = m.data_as::<SubscribeData>("pusher:subscribe").unwrap_err();
            assert!(
                err.to_string().contains("invalid pusher:subscribe payload"),
                "{data}: {err}"
            );
        }
    }
}
