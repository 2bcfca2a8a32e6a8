//! An app record as written in files (and databases): Sockudo's legacy flat shape, its canonical
//! nested shape (`policy.limits`, `policy.features`, `policy.channels`, `policy.webhooks`), or both.
//!
//! Each setting may be given in one place only: the flat field or its `policy` twin. Giving both is
//! an error naming the two keys (silently preferring one would hide a mistake). Sockudo's policy
//! sections for features this server does not have (`idempotency`, `history`, channel namespaces,
//! delta compression, ...) are removed beforehand by the key check, which lists them in the startup
//! warning; here they are unknown fields like any other.

use serde::Deserialize;

use super::app::{flag, opt_flag, opt_list, opt_uint, text, AppConfig};

fn some_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    flag(d).map(Some)
}

/// Declares a record struct with the given fields plus every per-app limit, which has the same name
/// flat and under `policy.limits`.
macro_rules! with_limits {
    ($(#[$attr:meta])* $vis:vis struct $name:ident { $($(#[$field_attr:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$attr])*
        $vis struct $name {
            $($(#[$field_attr])* $field: $ty,)*
            #[serde(deserialize_with = "opt_uint")]
            max_connections: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_backend_events_per_second: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_client_events_per_second: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_read_requests_per_second: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_presence_members_per_channel: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_presence_member_size_in_kb: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_channel_name_length: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_event_channels_at_once: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_event_name_length: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_event_payload_in_kb: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            max_event_batch_size: Option<u64>,
            #[serde(deserialize_with = "opt_uint")]
            decay_seconds: Option<u64>,
            #[serde(deserialize_with = "opt_flag")]
            terminate_on_limit: Option<bool>,
        }
    };
}

with_limits! {
/// The flat fields plus `policy`, everything optional so that "not given" can be told apart.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppRecord {
    #[serde(deserialize_with = "text")]
    id: String,
    #[serde(deserialize_with = "text")]
    key: String,
    #[serde(deserialize_with = "text")]
    secret: String,
    #[serde(deserialize_with = "some_flag")]
    enabled: Option<bool>,
    #[serde(deserialize_with = "some_flag")]
    enable_client_messages: Option<bool>,
    #[serde(deserialize_with = "opt_flag")]
    enable_user_authentication: Option<bool>,
    #[serde(deserialize_with = "opt_flag")]
    enable_watchlist_events: Option<bool>,
    #[serde(deserialize_with = "opt_flag")]
    enable_subscription_count: Option<bool>,
    #[serde(deserialize_with = "opt_list")]
    allowed_origins: Option<Vec<String>>,
    webhooks: Option<Vec<serde_json::Value>>,
    channel_delta_compression: Option<serde_json::Map<String, serde_json::Value>>,
    policy: Option<Policy>,
}
}

with_limits! {
/// `policy.limits` (the same names as the flat limits).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Limits {}
}

/// Sockudo 5's canonical nested app settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Policy {
    limits: Limits,
    features: Features,
    channels: Channels,
    webhooks: Option<Vec<serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Features {
    #[serde(deserialize_with = "some_flag")]
    enable_client_messages: Option<bool>,
    #[serde(deserialize_with = "opt_flag")]
    enable_user_authentication: Option<bool>,
    #[serde(deserialize_with = "opt_flag")]
    enable_watchlist_events: Option<bool>,
    #[serde(deserialize_with = "opt_flag")]
    enable_subscription_count: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Channels {
    #[serde(deserialize_with = "opt_list")]
    allowed_origins: Option<Vec<String>>,
    channel_delta_compression: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The value given flat or under `policy`, or an error when both are given.
fn one_of<T>(
    flat: Option<T>,
    nested: Option<T>,
    flat_key: &str,
    nested_key: &str,
) -> Result<Option<T>, String> {
    match (flat, nested) {
        (Some(_), Some(_)) => Err(format!(
            "\"{flat_key}\" and \"policy.{nested_key}\" set the same thing; keep one"
        )),
        (flat, nested) => Ok(flat.or(nested)),
    }
}

impl TryFrom<AppRecord> for AppConfig {
    type Error = String;

    fn try_from(r: AppRecord) -> Result<Self, String> {
        let policy = r.policy.unwrap_or_default();
        macro_rules! limit {
            ($name:ident) => {
                one_of(
                    r.$name,
                    policy.limits.$name,
                    stringify!($name),
                    concat!("limits.", stringify!($name)),
                )?
            };
        }
        macro_rules! feature {
            ($name:ident) => {
                one_of(
                    r.$name,
                    policy.features.$name,
                    stringify!($name),
                    concat!("features.", stringify!($name)),
                )?
            };
        }
        Ok(AppConfig {
            channel_delta_compression: one_of(
                r.channel_delta_compression,
                policy.channels.channel_delta_compression,
                "channel_delta_compression",
                "channels.channel_delta_compression",
            )?,
            id: r.id,
            key: r.key,
            secret: r.secret,
            enabled: r.enabled.unwrap_or(true),
            max_connections: limit!(max_connections),
            enable_client_messages: feature!(enable_client_messages).unwrap_or(false),
            enable_user_authentication: feature!(enable_user_authentication),
            enable_watchlist_events: feature!(enable_watchlist_events),
            enable_subscription_count: feature!(enable_subscription_count),
            max_backend_events_per_second: limit!(max_backend_events_per_second),
            max_client_events_per_second: limit!(max_client_events_per_second),
            max_read_requests_per_second: limit!(max_read_requests_per_second),
            max_presence_members_per_channel: limit!(max_presence_members_per_channel),
            max_presence_member_size_in_kb: limit!(max_presence_member_size_in_kb),
            max_channel_name_length: limit!(max_channel_name_length),
            max_event_channels_at_once: limit!(max_event_channels_at_once),
            max_event_name_length: limit!(max_event_name_length),
            max_event_payload_in_kb: limit!(max_event_payload_in_kb),
            max_event_batch_size: limit!(max_event_batch_size),
            decay_seconds: limit!(decay_seconds),
            terminate_on_limit: limit!(terminate_on_limit),
            allowed_origins: one_of(
                r.allowed_origins,
                policy.channels.allowed_origins,
                "allowed_origins",
                "channels.allowed_origins",
            )?,
            webhooks: one_of(r.webhooks, policy.webhooks, "webhooks", "webhooks")?,
        })
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
    fn nested_policy_fills_the_same_fields_as_the_flat_shape() {
        let nested = parse(json!({
            "id": "a", "key": "k", "secret": "s", "enabled": true,
            "policy": {
                "limits": {"max_connections": 5, "max_client_events_per_second": "7",
                           "max_event_payload_in_kb": 3, "max_presence_members_per_channel": 2},
                "features": {"enable_client_messages": true, "enable_user_authentication": true,
                             "enable_watchlist_events": false},
                "channels": {"allowed_origins": ["https://a.test"]},
                "webhooks": [{"url": "http://127.0.0.1:9/hook", "event_types": ["channel_occupied"]}]
            }
        }))
        .expect("nested parses");
        let flat = parse(json!({
            "id": "a", "key": "k", "secret": "s", "enabled": true,
            "max_connections": 5, "max_client_events_per_second": 7,
            "max_event_payload_in_kb": 3, "max_presence_members_per_channel": 2,
            "enable_client_messages": true, "enable_user_authentication": true,
            "enable_watchlist_events": false, "allowed_origins": "https://a.test",
            "webhooks": [{"url": "http://127.0.0.1:9/hook", "event_types": ["channel_occupied"]}]
        }))
        .expect("flat parses");
        assert_eq!(nested, flat);
        assert_eq!(nested.max_connections, Some(5));
        assert!(nested.enable_client_messages);
    }

    #[test]
    fn shapes_mix_but_one_setting_is_given_once() {
        let mixed = parse(json!({
            "id": "a", "max_connections": 5,
            "policy": {"features": {"enable_client_messages": true}}
        }))
        .expect("mixed parses");
        assert_eq!(mixed.max_connections, Some(5));
        assert!(mixed.enable_client_messages);

        let err = parse(
            json!({"id": "a", "max_connections": 5, "policy": {"limits": {"max_connections": 6}}}),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"max_connections\" and \"policy.limits.max_connections\" set the same thing; keep one"
        );
    }

    #[test]
    fn policy_values_are_checked_and_unknown_policy_keys_refused() {
        let err = parse(json!({"id": "a", "policy": {"limits": {"max_connections": "lots"}}}))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("\"lots\" is not a valid non-negative integer"),
            "{err}"
        );
        let err =
            parse(json!({"id": "a", "policy": {"limits": {"max_conections": 1}}})).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `max_conections`"),
            "{err}"
        );
        let err =
            parse(json!({"id": "a", "policy": {"features": {"enable_client_messages": null}}}))
                .unwrap_err();
        assert!(err.to_string().contains("found null"), "{err}");
    }
}
