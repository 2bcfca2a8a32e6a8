//! Carry-over of Sockudo config files: keys Sockudo knows but this server does not implement yet.
//!
//! Such keys are removed from the parsed file before the strict typed parse, and each one present
//! produces a note ("... is not supported yet and was ignored"). Any key that is neither supported nor
//! listed here stays in the tree and is rejected as unknown. Also maps Sockudo's spelling
//! `metrics.prometheus.prefix` onto `metrics.prometheus_prefix`.

use serde_json::{Map, Value};

use super::error::ConfigError;

/// Dotted paths of known-but-unsupported keys, top-level sections first.
pub const NOT_YET_SUPPORTED: &[&str] = &[
    // top-level scalars
    "mode",
    "path_prefix",
    "server_role",
    "max_connections",
    "health_check_timeout_ms",
    // top-level sections
    "ably_compat",
    "ai_transport",
    "annotations",
    "cache",
    "cleanup",
    "cluster_health",
    "connection_recovery",
    "cors",
    "database_pooling",
    "delta_compression",
    "echo_control",
    "ephemeral",
    "event_name_filtering",
    "history",
    "idempotency",
    "instance",
    "presence_history",
    "push",
    "push_rules",
    "queue",
    "rate_limiter",
    "ssl",
    "tag_filtering",
    "unix_socket",
    "versioned_messages",
    // keys inside sections we do support
    "adapter.redis",
    "adapter.cluster",
    "adapter.nats",
    "adapter.pulsar",
    "adapter.rabbitmq",
    "adapter.google_pubsub",
    "adapter.kafka",
    "adapter.iggy",
    "adapter.cluster_health",
    "adapter.buffer_multiplier_per_cpu",
    "adapter.enable_socket_counting",
    "adapter.fallback_to_local",
    "adapter.aggregate_counts",
    "app_manager.cache.prefix",
    "database.redis",
    "database.surrealdb",
    "database.scylladb",
    "database.mysql.cache_ttl",
    "database.mysql.cache_cleanup_interval",
    "database.mysql.cache_max_capacity",
    "database.postgres.cache_ttl",
    "database.postgres.cache_cleanup_interval",
    "database.postgres.cache_max_capacity",
    "database.dynamodb.aws_profile_name",
    "http_api.accept_traffic",
    "http_api.usage_enabled",
    "webhooks.batching.size",
    "websocket.max_message_size",
    "websocket.max_frame_size",
    "websocket.write_buffer_size",
    "websocket.max_backpressure",
    "websocket.auto_ping",
    "websocket.ping_interval",
    "websocket.idle_timeout",
    "websocket.compression",
];

/// Removes [`NOT_YET_SUPPORTED`] keys (returning one note per key found) and rewrites Sockudo-only
/// spellings. `file` is only used in error messages.
pub fn strip_unsupported(
    root: &mut Value,
    file: &std::path::Path,
) -> Result<Vec<String>, ConfigError> {
    let mut notes = Vec::new();
    for path in NOT_YET_SUPPORTED {
        let (parent, leaf) = match path.rsplit_once('.') {
            Some((parent, leaf)) => (object_at(root, parent), leaf),
            None => (root.as_object_mut(), *path),
        };
        if parent.and_then(|map| map.remove(leaf)).is_some() {
            let what = if path.contains('.') || !is_section(path) {
                "key"
            } else {
                "section"
            };
            notes.push(format!(
                "{}: {what} \"{path}\" is not supported yet and was ignored",
                file.display()
            ));
        }
    }
    if let Some(metrics) = object_at(root, "metrics") {
        sockudo_metrics_shape(metrics, file)?;
    }
    Ok(notes)
}

/// Sockudo writes `metrics.driver = "prometheus"` and `metrics.prometheus.prefix`.
fn sockudo_metrics_shape(
    metrics: &mut Map<String, Value>,
    file: &std::path::Path,
) -> Result<(), ConfigError> {
    let bad = |key: &str, message: &str| ConfigError::BadValue {
        path: file.to_path_buf(),
        key: key.to_string(),
        message: message.to_string(),
    };
    if let Some(driver) = metrics.remove("driver") {
        if driver.as_str() != Some("prometheus") {
            return Err(bad("metrics.driver", "only \"prometheus\" is supported"));
        }
    }
    if let Some(prometheus) = metrics.remove("prometheus") {
        let Value::Object(mut prometheus) = prometheus else {
            return Err(bad("metrics.prometheus", "expected a table/object"));
        };
        if let Some(prefix) = prometheus.remove("prefix") {
            if metrics.contains_key("prometheus_prefix") {
                return Err(bad(
                    "metrics.prometheus.prefix",
                    "set either this or metrics.prometheus_prefix, not both",
                ));
            }
            metrics.insert("prometheus_prefix".into(), prefix);
        }
        if let Some(other) = prometheus.keys().next() {
            return Err(ConfigError::UnknownKey {
                path: file.to_path_buf(),
                key: format!("metrics.prometheus.{other}"),
            });
        }
    }
    Ok(())
}

fn is_section(path: &str) -> bool {
    !matches!(
        path,
        "mode" | "path_prefix" | "server_role" | "max_connections" | "health_check_timeout_ms"
    )
}

fn object_at<'a>(root: &'a mut Value, dotted: &str) -> Option<&'a mut Map<String, Value>> {
    dotted
        .split('.')
        .try_fold(root, |node, part| node.as_object_mut()?.get_mut(part))?
        .as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn unsupported_sections_and_keys_are_removed_with_a_note_each() {
        let mut tree = json!({
            "port": 7000,
            "cache": {"driver": "memory"},
            "mode": "production",
            "adapter": {"driver": "local", "redis": {"prefix": "x"}},
            "websocket": {"max_messages": 5, "compression": "disabled"}
        });
        let notes = strip_unsupported(&mut tree, Path::new("c.json")).expect("ok");
        assert_eq!(
            tree,
            json!({"port": 7000, "adapter": {"driver": "local"}, "websocket": {"max_messages": 5}})
        );
        assert_eq!(
            notes,
            vec![
                "c.json: key \"mode\" is not supported yet and was ignored",
                "c.json: section \"cache\" is not supported yet and was ignored",
                "c.json: key \"adapter.redis\" is not supported yet and was ignored",
                "c.json: key \"websocket.compression\" is not supported yet and was ignored",
            ]
        );
    }

    #[test]
    fn sockudo_metrics_spelling_is_mapped() {
        let mut tree = json!({"metrics": {"driver": "prometheus", "prometheus": {"prefix": "x_"}}});
        let notes = strip_unsupported(&mut tree, Path::new("c.json")).expect("ok");
        assert!(notes.is_empty());
        assert_eq!(tree, json!({"metrics": {"prometheus_prefix": "x_"}}));

        let mut tree = json!({"metrics": {"driver": "statsd"}});
        let err = strip_unsupported(&mut tree, Path::new("c.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.json: \"metrics.driver\": only \"prometheus\" is supported"
        );

        let mut tree = json!({"metrics": {"prometheus": {"prefix": "a", "buckets": 1}}});
        let err = strip_unsupported(&mut tree, Path::new("c.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.json: unknown key \"metrics.prometheus.buckets\""
        );
    }
}
