//! The conflation key of an envelope (DELTA-TAGS.md §3.5): a dot path into the envelope JSON.

use serde_json::Value;

/// The key at `path` in `envelope`, or `""` when it is missing, not a scalar, or contains `"` or `\` (the client
/// strips `"__conflation_key":"[^"]*"` with a regex, so such a value cannot be carried).
///
/// A single-segment path that is not a top-level member is looked up in `data`. A string met on the way (such
/// as `data`, always a string for REST publishes) is parsed as JSON and the walk continues inside it, so
/// `data.symbol` works for REST publishes too.
pub fn extract(envelope: &[u8], path: &str) -> String {
    let Ok(root) = serde_json::from_slice::<Value>(envelope) else {
        return String::new();
    };
    let segments: Vec<&str> = path.split('.').collect();
    let found = walk(&root, &segments).or_else(|| {
        if segments.len() == 1 {
            root.get("data").and_then(|d| walk(d, &segments))
        } else {
            None
        }
    });
    let key = match found {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => return String::new(),
    };
    if key.contains(['"', '\\']) {
        String::new()
    } else {
        key
    }
}

fn walk(value: &Value, segments: &[&str]) -> Option<Value> {
    let Some((first, rest)) = segments.split_first() else {
        return Some(value.clone());
    };
    match value {
        Value::Object(o) => walk(o.get(*first)?, rest),
        Value::String(s) => {
            let inner: Value = serde_json::from_str(s).ok()?;
            walk(&inner, segments)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REST: &str = r#"{"event":"price","channel":"c","data":"{\"asset\":\"BTC\",\"n\":7,\"deep\":{\"x\":true}}"}"#;
    const CLIENT: &str =
        r#"{"event":"client-p","channel":"c","data":{"asset":"ETH"},"user_id":"u1"}"#;

    #[test]
    fn single_segment_falls_back_to_data() {
        assert_eq!(extract(REST.as_bytes(), "asset"), "BTC");
        assert_eq!(extract(CLIENT.as_bytes(), "asset"), "ETH");
        assert_eq!(extract(CLIENT.as_bytes(), "user_id"), "u1");
        assert_eq!(extract(REST.as_bytes(), "n"), "7");
    }

    #[test]
    fn paths_walk_into_string_data() {
        assert_eq!(extract(REST.as_bytes(), "data.asset"), "BTC");
        assert_eq!(extract(REST.as_bytes(), "data.deep.x"), "true");
        assert_eq!(extract(REST.as_bytes(), "event"), "price");
    }

    #[test]
    fn missing_or_unsafe_keys_are_empty() {
        assert_eq!(extract(REST.as_bytes(), "nope"), "");
        assert_eq!(extract(REST.as_bytes(), "deep"), "");
        let quoted = r#"{"event":"e","channel":"c","data":{"asset":"a\"b"}}"#;
        assert_eq!(extract(quoted.as_bytes(), "asset"), "");
        assert_eq!(extract(b"not json", "asset"), "");
    }
}
