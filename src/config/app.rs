//! [`AppConfig`]: one app. It serializes in Sockudo's legacy *flat* shape (all fields top-level) and
//! deserializes from the flat shape, Sockudo 5's nested `policy` shape or a mix (see
//! [`app_record`](super::app_record)).
//!
//! App records often come from databases or hand-edited JSON, so the deserializer is lenient in the
//! same ways Sockudo's is: numbers may be strings (`"max_connections": "100"`), booleans may be strings
//! (`"enabled": "true"`), ids/keys/secrets may be numbers, `null` means unset. Unknown fields are still
//! errors.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::app_record::AppRecord;
use super::values::{parse_bool, parse_list};

/// One application (tenant): credentials, switches and per-app limits.
/// `None` limits fall back to the server-wide defaults in [`Config`](super::Config) or mean unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "AppRecord")]
pub struct AppConfig {
    /// Pusher `app_id` (used in REST paths).
    pub id: String,
    /// Public key clients connect with (`/app/{key}`).
    pub key: String,
    /// HMAC secret for auth signatures and REST requests.
    pub secret: String,
    /// A disabled app refuses connections and API calls.
    pub enabled: bool,
    /// Concurrent connections; `None` or 0 = unlimited.
    pub max_connections: Option<u64>,
    /// Allow `client-*` events on private and presence channels.
    pub enable_client_messages: bool,
    /// Require `pusher:signin` within `user_authentication_timeout`.
    pub enable_user_authentication: Option<bool>,
    /// Send watchlist online/offline events.
    pub enable_watchlist_events: Option<bool>,
    /// Send `pusher_internal:subscription_count` events.
    pub enable_subscription_count: Option<bool>,
    /// REST publishes per second.
    pub max_backend_events_per_second: Option<u64>,
    /// Client events per second per connection.
    pub max_client_events_per_second: Option<u64>,
    /// REST reads per second.
    pub max_read_requests_per_second: Option<u64>,
    /// Members in one presence channel.
    pub max_presence_members_per_channel: Option<u64>,
    /// KiB of one presence member's `user_info`.
    pub max_presence_member_size_in_kb: Option<u64>,
    /// Characters in a channel name.
    pub max_channel_name_length: Option<u64>,
    /// Channels one published event may name.
    pub max_event_channels_at_once: Option<u64>,
    /// Characters in an event name.
    pub max_event_name_length: Option<u64>,
    /// KiB of event data.
    pub max_event_payload_in_kb: Option<u64>,
    /// Events in one batch publish.
    pub max_event_batch_size: Option<u64>,
    /// Length in seconds of the window `max_client_events_per_second` counts in (Sockudo's
    /// `policy.limits.decay_seconds`; default 1): at most that many client events per window.
    pub decay_seconds: Option<u64>,
    /// Close the connection (4301) when it goes over the client event limit, instead of only refusing the event
    /// (Sockudo's `policy.limits.terminate_on_limit`).
    pub terminate_on_limit: Option<bool>,
    /// Origin patterns allowed to connect (`*`, exact, one `*` wildcard); `None` = any.
    /// A comma separated string is accepted too.
    pub allowed_origins: Option<Vec<String>>,
    /// Webhook definitions, kept raw; the webhook module parses them.
    pub webhooks: Option<Vec<serde_json::Value>>,
    /// Delta compression per channel pattern (`"fossil"`, `"xdelta3"`, `"disabled"`, `"inherit"` or an object),
    /// kept raw; `crate::delta::ChannelRules` parses it.
    pub channel_delta_compression: Option<serde_json::Map<String, serde_json::Value>>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: String::new(),
            key: String::new(),
            secret: String::new(),
            enabled: true,
            max_connections: None,
            enable_client_messages: false,
            enable_user_authentication: None,
            enable_watchlist_events: None,
            enable_subscription_count: None,
            max_backend_events_per_second: None,
            max_client_events_per_second: None,
            max_read_requests_per_second: None,
            max_presence_members_per_channel: None,
            max_presence_member_size_in_kb: None,
            max_channel_name_length: None,
            max_event_channels_at_once: None,
            max_event_name_length: None,
            max_event_payload_in_kb: None,
            max_event_batch_size: None,
            decay_seconds: None,
            terminate_on_limit: None,
            allowed_origins: None,
            webhooks: None,
            channel_delta_compression: None,
        }
    }
}

impl AppConfig {
    /// Id of the development app added when nothing configures an app.
    pub const DEV_ID: &'static str = "app-id";
    /// Key of the development app.
    pub const DEV_KEY: &'static str = "app-key";
    /// Secret of the development app: public knowledge, never use it in production.
    pub const DEV_SECRET: &'static str = "app-secret";

    /// The development app `app-id` / `app-key` / `app-secret` with client events on
    /// (what Pusher/Sockudo examples and test clients expect). Insecure outside development.
    pub fn dev_app() -> Self {
        AppConfig {
            id: Self::DEV_ID.into(),
            key: Self::DEV_KEY.into(),
            secret: Self::DEV_SECRET.into(),
            enable_client_messages: true,
            ..AppConfig::default()
        }
    }
}

/// A scalar written as a string or a number (ids are often numeric).
pub(super) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_any(Lenient(Want::Text))?
        .into_text()
        .ok_or_else(|| de::Error::custom("expected a string"))
}

pub(super) fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    opt_flag(d)?.ok_or_else(|| de::Error::custom("expected a boolean, found null"))
}

pub(super) fn opt_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match d.deserialize_any(Lenient(Want::Bool))? {
        Scalar::Null => Ok(None),
        Scalar::Bool(b) => Ok(Some(b)),
        Scalar::Uint(0) => Ok(Some(false)),
        Scalar::Uint(1) => Ok(Some(true)),
        Scalar::Text(s) => parse_bool(&s).map(Some).map_err(de::Error::custom),
        other => Err(de::Error::custom(format!(
            "expected a boolean, found {other}"
        ))),
    }
}

pub(super) fn opt_uint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match d.deserialize_any(Lenient(Want::Uint))? {
        Scalar::Null => Ok(None),
        Scalar::Uint(n) => Ok(Some(n)),
        Scalar::Text(s) if s.trim().is_empty() => Ok(None),
        Scalar::Text(s) => {
            s.trim().parse().map(Some).map_err(|_| {
                de::Error::custom(format!("\"{s}\" is not a valid non-negative integer"))
            })
        }
        other => Err(de::Error::custom(format!(
            "expected a non-negative integer, found {other}"
        ))),
    }
}

pub(super) fn opt_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match d.deserialize_any(Lenient(Want::List))? {
        Scalar::Null => Ok(None),
        Scalar::Text(s) => Ok(Some(parse_list(&s))),
        Scalar::List(items) => Ok(Some(items)),
        other => Err(de::Error::custom(format!(
            "expected a list of strings, found {other}"
        ))),
    }
}

/// What a lenient field is after; only used in the "expecting" message.
#[derive(Clone, Copy)]
enum Want {
    Text,
    Bool,
    Uint,
    List,
}

/// Any value a lenient field may hold, before it is converted.
enum Scalar {
    Null,
    Bool(bool),
    Uint(u64),
    Other(String),
    Text(String),
    List(Vec<String>),
}

impl Scalar {
    fn into_text(self) -> Option<String> {
        match self {
            Scalar::Text(s) => Some(s),
            Scalar::Uint(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Null => f.write_str("null"),
            Scalar::Bool(b) => write!(f, "boolean {b}"),
            Scalar::Uint(n) => write!(f, "number {n}"),
            Scalar::Other(what) => f.write_str(what),
            Scalar::Text(s) => write!(f, "string \"{s}\""),
            Scalar::List(_) => f.write_str("a list"),
        }
    }
}

struct Lenient(Want);

impl<'de> Visitor<'de> for Lenient {
    type Value = Scalar;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Want::Text => "a string",
            Want::Bool => "a boolean (or \"true\"/\"false\")",
            Want::Uint => "a non-negative integer (or a string holding one)",
            Want::List => "a list of strings",
        })
    }

    fn visit_unit<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Scalar, E> {
        Ok(Scalar::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
        Ok(Scalar::Uint(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
        Ok(u64::try_from(v).map_or_else(|_| Scalar::Other(format!("number {v}")), Scalar::Uint))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
        Ok(Scalar::Other(format!("number {v}")))
    }
    fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
        Ok(Scalar::Text(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
        Ok(Scalar::Text(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<String>()? {
            items.push(item);
        }
        Ok(Scalar::List(items))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Scalar, A::Error> {
        Ok(Scalar::Other("an object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<AppConfig, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn numbers_and_booleans_given_as_strings_are_accepted() {
        let app = parse(json!({
            "id": 12345, "key": "k", "secret": "s",
            "enabled": "false", "enable_client_messages": "yes",
            "max_connections": "100", "max_client_events_per_second": 5,
            "enable_user_authentication": "1", "max_event_batch_size": null,
            "allowed_origins": "https://a.com, *.b.com"
        }))
        .expect("lenient app parses");
        assert_eq!(app.id, "12345");
        assert!(!app.enabled);
        assert!(app.enable_client_messages);
        assert_eq!(app.max_connections, Some(100));
        assert_eq!(app.max_client_events_per_second, Some(5));
        assert_eq!(app.enable_user_authentication, Some(true));
        assert_eq!(app.max_event_batch_size, None);
        assert_eq!(
            app.allowed_origins,
            Some(vec!["https://a.com".to_string(), "*.b.com".to_string()])
        );
    }

    #[test]
    fn omitted_fields_take_their_defaults() {
        let app = parse(json!({"id": "a", "key": "k", "secret": "s"})).expect("parses");
        assert!(app.enabled, "apps are enabled unless said otherwise");
        assert!(!app.enable_client_messages);
        assert_eq!(app.max_connections, None);
        assert_eq!(app.webhooks, None);
    }

    #[test]
    fn bad_values_are_rejected_with_the_reason() {
        let err = parse(json!({"id": "a", "max_connections": "lots"})).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"lots\" is not a valid non-negative integer"),
            "{err}"
        );
        let err = parse(json!({"id": "a", "max_connections": -3})).unwrap_err();
        assert!(err.to_string().contains("found number -3"), "{err}");
        let err = parse(json!({"id": "a", "enabled": "sometimes"})).unwrap_err();
        assert!(err.to_string().contains("not a valid boolean"), "{err}");
        let err = parse(json!({"id": "a", "enabled": null})).unwrap_err();
        assert!(err.to_string().contains("found null"), "{err}");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = parse(json!({"id": "a", "max_conection": 3})).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_conection`"),
            "{err}"
        );
    }

    #[test]
    fn dev_app_is_the_well_known_development_app() {
        let app = AppConfig::dev_app();
        assert_eq!(
            (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
            ("app-id", "app-key", "app-secret")
        );
        assert!(app.enabled && app.enable_client_messages);
    }
}
