//! The `tags` of a published event: a flat `{string: string}` map, kept sorted by key.

use crate::protocol::messages::push_json_string;
use std::collections::BTreeMap;

/// Most tags one event may carry.
pub const MAX_TAGS: usize = 64;
/// Longest tag key, in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 256;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE_BYTES: usize = 1024;

/// Why a publish's `tags` were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagsError {
    /// More than [`MAX_TAGS`] entries.
    #[error("at most {MAX_TAGS} tags per event, got {0}")]
    TooMany(usize),
    /// An empty key.
    #[error("tag keys must not be empty")]
    EmptyKey,
    /// A key over [`MAX_TAG_KEY_BYTES`].
    #[error("tag key {0:?} is longer than {MAX_TAG_KEY_BYTES} bytes")]
    KeyTooLong(String),
    /// A value over [`MAX_TAG_VALUE_BYTES`].
    #[error("the value of tag {0:?} is longer than {MAX_TAG_VALUE_BYTES} bytes")]
    ValueTooLong(String),
}

/// Tags sorted by key (binary search on lookup; serialized in this order, like Sockudo's `BTreeMap`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tags(Box<[(Box<str>, Box<str>)]>);

impl Tags {
    /// Checks the limits and sorts.
    pub fn new(map: BTreeMap<String, String>) -> Result<Self, TagsError> {
        if map.len() > MAX_TAGS {
            return Err(TagsError::TooMany(map.len()));
        }
        let mut pairs = Vec::with_capacity(map.len());
        for (k, v) in map {
            if k.is_empty() {
                return Err(TagsError::EmptyKey);
            }
            if k.len() > MAX_TAG_KEY_BYTES {
                return Err(TagsError::KeyTooLong(k));
            }
            if v.len() > MAX_TAG_VALUE_BYTES {
                return Err(TagsError::ValueTooLong(k));
            }
            pairs.push((k.into_boxed_str(), v.into_boxed_str()));
        }
        // BTreeMap iterates in key order already.
        Ok(Tags(pairs.into_boxed_slice()))
    }

    /// The tags, sorted by key.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The value of tag `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// Number of tags.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for `{}` (which still counts as "tagged" for routing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Appends `{"k":"v",...}`.
    pub fn push_json(&self, out: &mut String) {
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(out, k);
            out.push(':');
            push_json_string(out, v);
        }
        out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Result<Tags, TagsError> {
        Tags::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn sorted_lookup_and_json() {
        let t = tags(&[("team", "Real \"Madrid\""), ("event_type", "goal")]).unwrap();
        assert_eq!(t.get("team"), Some("Real \"Madrid\""));
        assert_eq!(t.get("event_type"), Some("goal"));
        assert_eq!(t.get("x"), None);
        let mut out = String::new();
        t.push_json(&mut out);
        assert_eq!(out, r#"{"event_type":"goal","team":"Real \"Madrid\""}"#);
    }

    #[test]
    fn limits_are_enforced() {
        assert_eq!(tags(&[("", "a")]), Err(TagsError::EmptyKey));
        let long = "k".repeat(MAX_TAG_KEY_BYTES + 1);
        assert!(matches!(
            tags(&[(&long, "a")]),
            Err(TagsError::KeyTooLong(_))
        ));
        let long = "v".repeat(MAX_TAG_VALUE_BYTES + 1);
        assert!(matches!(
            tags(&[("k", &long)]),
            Err(TagsError::ValueTooLong(_))
        ));
        let many: BTreeMap<String, String> = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert_eq!(Tags::new(many), Err(TagsError::TooMany(MAX_TAGS + 1)));
    }
}
