//! Checks on the merged configuration. Each error names the offending key by its file path
//! (`app_manager.array.apps[1].key`), whatever layer set it.

use std::collections::HashMap;

use super::error::ConfigError;
use super::model::Config;

/// TLS settings that cannot work. Whether the files hold a usable certificate and key is checked when the server
/// loads them (`crate::tls`), with the file named.
fn validate_ssl(c: &Config) -> Result<(), ConfigError> {
    if c.unix_socket.enabled {
        return Err(ConfigError::invalid(
            "ssl.enabled",
            "TLS is served on the TCP port, which unix_socket.enabled replaces: terminate TLS in the proxy \
             in front of the unix socket, or turn one of them off",
        ));
    }
    non_empty("ssl.cert_path", &c.ssl.cert_path)?;
    non_empty("ssl.key_path", &c.ssl.key_path)?;
    if c.ssl.redirect_http && (c.ssl.http_port == 0 || c.ssl.http_port == c.port) {
        return Err(ConfigError::invalid(
            "ssl.http_port",
            "the plain-HTTP redirect port must be set and differ from port",
        ));
    }
    Ok(())
}

/// Returns the first problem found, in key order.
pub fn validate(c: &Config) -> Result<(), ConfigError> {
    non_empty("host", &c.host)?;
    if c.port == 0 {
        return Err(ConfigError::invalid(
            "port",
            "must not be 0: every shard binds the same port with SO_REUSEPORT, so an ephemeral port cannot work",
        ));
    }
    if c.shards > 1024 {
        return Err(ConfigError::invalid(
            "shards",
            "must be at most 1024 (0 = one per CPU)",
        ));
    }
    if c.unix_socket.enabled {
        non_empty("unix_socket.path", &c.unix_socket.path)?;
        c.unix_socket
            .mode()
            .map_err(|m| ConfigError::invalid("unix_socket.permission_mode", m))?;
    }
    if c.ssl.enabled {
        validate_ssl(c)?;
    }
    at_least_one("activity_timeout", c.activity_timeout)?;
    at_least_one("pong_timeout", c.pong_timeout)?;
    at_least_one("user_authentication_timeout", c.user_authentication_timeout)?;
    at_least_one(
        "websocket_max_payload_kb",
        c.websocket_max_payload_kb as u64,
    )?;
    at_least_one("websocket.max_messages", c.websocket.max_messages as u64)?;
    if c.websocket.max_bytes == Some(0) {
        return Err(ConfigError::invalid(
            "websocket.max_bytes",
            "must be at least 1 (leave it unset for no byte limit)",
        ));
    }
    at_least_one(
        "websocket.max_subscriptions",
        c.websocket.max_subscriptions as u64,
    )?;
    at_least_one("http_api.header_timeout", c.http_api.header_timeout)?;
    at_least_one("http_api.body_timeout", c.http_api.body_timeout)?;
    at_least_one("http_api.keep_alive_timeout", c.http_api.keep_alive_timeout)?;
    at_least_one(
        "http_api.request_limit_in_mb",
        c.http_api.request_limit_in_mb as u64,
    )?;
    if c.http_api.max_header_bytes < 1024 {
        return Err(ConfigError::invalid(
            "http_api.max_header_bytes",
            "must be at least 1024",
        ));
    }
    let e = &c.event_limits;
    at_least_one("event_limits.max_channels_at_once", e.max_channels_at_once)?;
    at_least_one("event_limits.max_name_length", e.max_name_length)?;
    at_least_one("event_limits.max_payload_in_kb", e.max_payload_in_kb)?;
    at_least_one("event_limits.max_batch_size", e.max_batch_size)?;
    at_least_one(
        "channel_limits.max_name_length",
        c.channel_limits.max_name_length,
    )?;
    at_least_one(
        "presence.max_members_per_channel",
        c.presence.max_members_per_channel,
    )?;
    at_least_one(
        "presence.max_member_size_in_kb",
        c.presence.max_member_size_in_kb,
    )?;
    at_least_one("presence.max_user_id_length", c.presence.max_user_id_length)?;
    if c.metrics.enabled {
        non_empty("metrics.host", &c.metrics.host)?;
        if c.metrics.port == 0 {
            return Err(ConfigError::invalid("metrics.port", "must not be 0"));
        }
        if c.metrics.port == c.port {
            return Err(ConfigError::invalid(
                "metrics.port",
                format!("must differ from port ({})", c.port),
            ));
        }
    }
    if !valid_metric_prefix(&c.metrics.prometheus_prefix) {
        return Err(ConfigError::invalid(
            "metrics.prometheus_prefix",
            format!(
                "\"{}\" is not a valid Prometheus name prefix (letters, digits, '_' and ':', not starting with a digit)",
                c.metrics.prometheus_prefix
            ),
        ));
    }
    non_empty("adapter.driver", &c.adapter.driver)?;
    non_empty("app_manager.driver", &c.app_manager.driver)?;
    if !super::APP_MANAGER_DRIVERS.contains(&c.app_manager.driver.as_str()) {
        return Err(ConfigError::invalid(
            "app_manager.driver",
            format!(
                "\"{}\" is not an app manager driver (use one of {})",
                c.app_manager.driver,
                super::APP_MANAGER_DRIVERS.join(", ")
            ),
        ));
    }
    let retry = &c.webhooks.retry;
    at_least_one("webhooks.request_timeout_ms", c.webhooks.request_timeout_ms)?;
    at_least_one(
        "webhooks.retry.initial_backoff_ms",
        retry.initial_backoff_ms,
    )?;
    if let Some(max) = retry.max_attempts {
        at_least_one("webhooks.retry.max_attempts", u64::from(max))?;
    }
    if retry.max_backoff_ms < retry.initial_backoff_ms {
        return Err(ConfigError::invalid(
            "webhooks.retry.max_backoff_ms",
            "must not be less than initial_backoff_ms",
        ));
    }
    if c.webhooks.batching.enabled {
        at_least_one("webhooks.batching.duration", c.webhooks.batching.duration)?;
        at_least_one("webhooks.batching.size", c.webhooks.batching.size as u64)?;
    }
    at_least_one("runtime.io_memory_kb", c.runtime.io_memory_kb as u64)?;
    at_least_one("runtime.preempt_timer_ms", c.runtime.preempt_timer_ms)?;
    if !(64..=32768).contains(&c.runtime.ring_depth) || !c.runtime.ring_depth.is_power_of_two() {
        return Err(ConfigError::invalid(
            "runtime.ring_depth",
            format!(
                "{} is not a power of two between 64 and 32768",
                c.runtime.ring_depth
            ),
        ));
    }
    delta_compression(c)?;
    apps(c)
}

fn delta_compression(c: &Config) -> Result<(), ConfigError> {
    let d = &c.delta_compression;
    if crate::delta::Algorithm::parse(&d.algorithm).is_none() {
        return Err(ConfigError::invalid(
            "delta_compression.algorithm",
            format!("\"{}\" is not fossil or xdelta3", d.algorithm),
        ));
    }
    at_least_one(
        "delta_compression.full_message_interval",
        d.full_message_interval as u64,
    )?;
    at_least_one(
        "delta_compression.max_state_age_secs",
        d.max_state_age_secs as u64,
    )?;
    at_least_one(
        "delta_compression.max_channel_states_per_socket",
        d.max_channel_states_per_socket as u64,
    )?;
    at_least_one(
        "delta_compression.max_conflation_states_per_channel",
        d.max_conflation_states_per_channel as u64,
    )?;
    if d.conflation_key_path.as_deref() == Some("") {
        return Err(ConfigError::invalid(
            "delta_compression.conflation_key_path",
            "must not be empty (leave it unset for no conflation)",
        ));
    }
    Ok(())
}

fn apps(c: &Config) -> Result<(), ConfigError> {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<&str, usize> = HashMap::new();
    for (i, app) in c.app_manager.array.apps.iter().enumerate() {
        let at = |field: &str| format!("app_manager.array.apps[{i}].{field}");
        non_empty(&at("id"), &app.id)?;
        non_empty(&at("key"), &app.key)?;
        non_empty(&at("secret"), &app.secret)?;
        if let Some(first) = ids.insert(&app.id, i) {
            return Err(ConfigError::invalid(
                at("id"),
                format!("duplicate app id \"{}\" (also apps[{first}])", app.id),
            ));
        }
        if let Some(first) = keys.insert(&app.key, i) {
            return Err(ConfigError::invalid(
                at("key"),
                format!("duplicate app key \"{}\" (also apps[{first}])", app.key),
            ));
        }
        if let Some(webhooks) = &app.webhooks {
            sockudo_webhooks::parse_webhooks_with(webhooks, &c.webhooks.defaults()).map_err(
                |e| match e.split_once(": ") {
                    Some((path, message)) if path.starts_with("webhooks") => {
                        ConfigError::invalid(at(path), message)
                    }
                    _ => ConfigError::invalid(at("webhooks"), e),
                },
            )?;
        }
        if let Some(rules) = &app.channel_delta_compression {
            crate::delta::ChannelRules::parse(rules).map_err(|e| {
                ConfigError::invalid(at("channel_delta_compression"), e.to_string())
            })?;
        }
        if let Some(origins) = &app.allowed_origins {
            if origins.iter().any(|o| o.trim().is_empty()) {
                return Err(ConfigError::invalid(
                    at("allowed_origins"),
                    "must not contain empty entries",
                ));
            }
        }
    }
    Ok(())
}

fn non_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(key, "must not be empty"));
    }
    Ok(())
}

fn at_least_one(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be at least 1"));
    }
    Ok(())
}

fn valid_metric_prefix(prefix: &str) -> bool {
    let mut chars = prefix.chars();
    match chars.next() {
        None => true,
        Some(first) if first.is_ascii_digit() => false,
        Some(first) => std::iter::once(first)
            .chain(chars)
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppConfig;

    fn error_of(change: impl FnOnce(&mut Config)) -> String {
        let mut c = Config::default();
        c.app_manager.array.apps.push(AppConfig::dev_app());
        change(&mut c);
        validate(&c).expect_err("should be rejected").to_string()
    }

    #[test]
    fn defaults_are_valid() {
        validate(&Config::default()).expect("defaults validate");
    }

    #[test]
    fn app_manager_drivers_are_checked() {
        let err = error_of(|c| c.app_manager.driver = "surrealdb".into());
        assert!(
            err.starts_with("app_manager.driver: \"surrealdb\" is not an app manager driver"),
            "{err}"
        );
        for ok in [
            "memory",
            "array",
            "postgresql",
            "pgsql",
            "mysql",
            "dynamodb",
        ] {
            let mut c = Config::default();
            c.app_manager.driver = ok.into();
            validate(&c).expect(ok);
        }
    }

    #[test]
    fn server_settings() {
        assert!(error_of(|c| c.port = 0).starts_with("port: must not be 0"));
        assert_eq!(error_of(|c| c.host = " ".into()), "host: must not be empty");
        assert_eq!(
            error_of(|c| c.activity_timeout = 0),
            "activity_timeout: must be at least 1"
        );
        assert_eq!(
            error_of(|c| c.websocket.max_messages = 0),
            "websocket.max_messages: must be at least 1"
        );
        assert!(error_of(|c| c.websocket.max_bytes = Some(0)).starts_with("websocket.max_bytes:"));
        assert!(error_of(|c| {
            c.webhooks.batching.enabled = true;
            c.webhooks.batching.size = 0;
        })
        .starts_with("webhooks.batching.size:"));
        assert_eq!(
            error_of(|c| c.webhooks.retry.max_backoff_ms = 10),
            "webhooks.retry.max_backoff_ms: must not be less than initial_backoff_ms"
        );
        assert!(error_of(|c| c.webhooks.request_timeout_ms = 0)
            .starts_with("webhooks.request_timeout_ms:"));
        assert_eq!(
            error_of(|c| c.metrics.port = 6001),
            "metrics.port: must differ from port (6001)"
        );
        assert!(
            error_of(|c| c.metrics.prometheus_prefix = "9bad-".into()).starts_with(
                "metrics.prometheus_prefix: \"9bad-\" is not a valid Prometheus name prefix"
            )
        );
        assert_eq!(
            error_of(|c| c.event_limits.max_batch_size = 0),
            "event_limits.max_batch_size: must be at least 1"
        );
    }

    #[test]
    fn metrics_port_is_not_checked_when_metrics_are_off() {
        let mut c = Config::default();
        c.metrics.enabled = false;
        c.metrics.port = c.port;
        validate(&c).expect("metrics disabled");
    }

    #[test]
    fn apps_need_unique_non_empty_credentials() {
        let second = |id: &str, key: &str, secret: &str| {
            let (id, key, secret) = (id.to_string(), key.to_string(), secret.to_string());
            move |c: &mut Config| {
                c.app_manager.array.apps.push(AppConfig {
                    id,
                    key,
                    secret,
                    ..AppConfig::default()
                })
            }
        };
        assert_eq!(
            error_of(second("app-id", "other", "s")),
            "app_manager.array.apps[1].id: duplicate app id \"app-id\" (also apps[0])"
        );
        assert_eq!(
            error_of(second("other", "app-key", "s")),
            "app_manager.array.apps[1].key: duplicate app key \"app-key\" (also apps[0])"
        );
        assert_eq!(
            error_of(second("", "k", "s")),
            "app_manager.array.apps[1].id: must not be empty"
        );
        assert_eq!(
            error_of(second("x", "k", "")),
            "app_manager.array.apps[1].secret: must not be empty"
        );
    }

    #[test]
    fn webhook_definitions_are_checked_with_their_key_path() {
        let message = error_of(|c| {
            c.app_manager.array.apps[0].webhooks = Some(vec![serde_json::json!({
                "url": "http://127.0.0.1:9/hook",
                "event_types": ["channel_occupied", "channel_ocupied"]
            })]);
        });
        assert!(
            message.starts_with("app_manager.array.apps[0].webhooks[0].event_types: "),
            "{message}"
        );
        assert!(message.contains("channel_ocupied"), "{message}");
    }
}
