//! An app record: one row of Sockudo's `applications` table as the flat JSON object the server parses.

use serde_json::{Map, Value};
use tracing::warn;

/// Column name -> value, in Sockudo's flat app shape; columns that are NULL are left out.
pub type AppRecord = Map<String, Value>;

/// How a column's text is turned into JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Kept as a string.
    Text,
    /// An integer, kept as the string the database gave (the server's parser accepts numeric strings).
    Int,
    /// A boolean (`true`/`false`, `t`/`f`, `1`/`0`).
    Bool,
    /// JSON text, parsed.
    Json,
}

/// The columns of Sockudo's `applications` table the server reads, in select order.
pub const COLUMNS: &[(&str, Kind)] = &[
    ("id", Kind::Text),
    ("key", Kind::Text),
    ("secret", Kind::Text),
    ("max_connections", Kind::Int),
    ("enable_client_messages", Kind::Bool),
    ("enabled", Kind::Bool),
    ("max_backend_events_per_second", Kind::Int),
    ("max_client_events_per_second", Kind::Int),
    ("max_read_requests_per_second", Kind::Int),
    ("max_presence_members_per_channel", Kind::Int),
    ("max_presence_member_size_in_kb", Kind::Int),
    ("max_channel_name_length", Kind::Int),
    ("max_event_channels_at_once", Kind::Int),
    ("max_event_name_length", Kind::Int),
    ("max_event_payload_in_kb", Kind::Int),
    ("max_event_batch_size", Kind::Int),
    ("enable_user_authentication", Kind::Bool),
    ("enable_watchlist_events", Kind::Bool),
    ("webhooks", Kind::Json),
    ("allowed_origins", Kind::Json),
    ("policy", Kind::Json),
];

/// The kind of column `name`, if the server reads it.
pub fn kind_of(name: &str) -> Option<Kind> {
    COLUMNS.iter().find(|(c, _)| *c == name).map(|(_, k)| *k)
}

/// Builds a record from `(column, text)` pairs. `None` (and a malformed value) when the row cannot be used: a
/// warning names the app id and the field.
pub fn from_columns<'a>(
    cells: impl IntoIterator<Item = (&'a str, Option<String>)>,
) -> Option<AppRecord> {
    let cells: Vec<(&str, Option<String>)> = cells.into_iter().collect();
    let id = cells
        .iter()
        .find(|(c, _)| *c == "id")
        .and_then(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut record = AppRecord::new();
    for (column, text) in cells {
        let Some(text) = text else { continue };
        let Some(kind) = kind_of(column) else {
            continue;
        };
        match convert(kind, &text) {
            Ok(Value::Null) => {}
            Ok(value) => {
                record.insert(column.to_string(), value);
            }
            Err(reason) => {
                warn!(app_id = %id, field = column, %reason, "app row skipped: a field does not parse");
                return None;
            }
        }
    }
    let policy = record.remove("policy");
    if let Some(policy) = policy {
        merge_policy(&mut record, &policy);
    }
    Some(record)
}

fn convert(kind: Kind, text: &str) -> Result<Value, String> {
    Ok(match kind {
        Kind::Text | Kind::Int => Value::String(text.to_string()),
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "1" | "yes" | "on" => Value::Bool(true),
            "f" | "false" | "0" | "no" | "off" => Value::Bool(false),
            other => return Err(format!("\"{other}\" is not a boolean")),
        },
        Kind::Json if text.trim().is_empty() => Value::Null,
        Kind::Json => serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?,
    })
}

/// App fields this server reads that have no column in Sockudo's table, only a place in `policy`.
const POLICY_ONLY: &[&str] = &[
    "enable_subscription_count",
    "decay_seconds",
    "terminate_on_limit",
];

/// Sockudo's nested `policy` column (`{limits, features, channels, webhooks}`) fills the flat fields the row
/// leaves unset (`channels.allowed_origins`, `channels.channel_delta_compression`); the other policy sections
/// (history, idempotency, ...) are not used by this server.
pub fn merge_policy(record: &mut AppRecord, policy: &Value) {
    let Some(policy) = policy.as_object() else {
        return;
    };
    let mut fill = |name: &str, value: Option<&Value>| {
        if let Some(value) = value.filter(|v| !v.is_null()) {
            record
                .entry(name.to_string())
                .or_insert_with(|| value.clone());
        }
    };
    for section in ["limits", "features"] {
        if let Some(fields) = policy.get(section).and_then(Value::as_object) {
            for (name, value) in fields {
                if kind_of(name).is_some() || POLICY_ONLY.contains(&name.as_str()) {
                    fill(name, Some(value));
                }
            }
        }
    }
    fill(
        "allowed_origins",
        policy
            .get("channels")
            .and_then(|c| c.get("allowed_origins")),
    );
    fill(
        "channel_delta_compression",
        policy
            .get("channels")
            .and_then(|c| c.get("channel_delta_compression")),
    );
    fill("webhooks", policy.get("webhooks"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_are_left_out_and_types_follow_the_column() {
        let r = from_columns([
            ("id", Some("1".to_string())),
            ("key", Some("k".to_string())),
            ("enabled", Some("t".to_string())),
            ("max_connections", Some("5".to_string())),
            ("max_event_batch_size", None),
            ("webhooks", Some(r#"[{"url":"http://x"}]"#.to_string())),
        ])
        .unwrap();
        assert_eq!(r["enabled"], Value::Bool(true));
        assert_eq!(r["max_connections"], Value::String("5".into()));
        assert!(!r.contains_key("max_event_batch_size"));
        assert_eq!(r["webhooks"][0]["url"], "http://x");
    }

    #[test]
    fn a_row_with_bad_json_is_skipped() {
        assert!(from_columns([
            ("id", Some("1".to_string())),
            ("allowed_origins", Some("[oops".to_string())),
        ])
        .is_none());
        assert!(from_columns([
            ("id", Some("1".to_string())),
            ("enabled", Some("maybe".to_string()))
        ])
        .is_none());
    }

    #[test]
    fn policy_fills_only_unset_fields() {
        let r = from_columns([
            ("id", Some("1".to_string())),
            ("max_connections", Some("5".to_string())),
            (
                "policy",
                Some(
                    r#"{"limits":{"max_connections":9,"max_event_batch_size":3,"decay_seconds":5,"terminate_on_limit":true},"features":{"enable_client_messages":true,"enable_subscription_count":true,"unknown":1},"channels":{"allowed_origins":["https://a"]},"history":{"enabled":true}}"#
                        .to_string(),
                ),
            ),
        ])
        .unwrap();
        assert_eq!(r["max_connections"], "5");
        assert_eq!(r["max_event_batch_size"], 3);
        assert_eq!(r["decay_seconds"], 5);
        assert_eq!(r["terminate_on_limit"], true);
        assert_eq!(r["enable_client_messages"], true);
        assert_eq!(r["enable_subscription_count"], true);
        assert!(!r.contains_key("unknown"));
        assert_eq!(r["allowed_origins"][0], "https://a");
        assert!(!r.contains_key("policy") && !r.contains_key("history"));
    }
}
