//! A webhook's channel filter: prefix, suffix, regex pattern and namespace(s). Absent parts always pass; all
//! present parts must pass.

use regex::Regex;

use crate::config::RawFilter;

/// Channel type prefixes stripped before looking for a namespace (longest first).
const TYPE_PREFIXES: [&str; 7] = [
    "private-encrypted-cache-",
    "private-cache-",
    "presence-cache-",
    "cache-",
    "private-encrypted-",
    "presence-",
    "private-",
];

/// Which channels a webhook wants events of. The default passes every channel.
#[derive(Debug, Clone, Default)]
pub struct ChannelFilter {
    /// The channel name starts with this.
    pub prefix: Option<String>,
    /// The channel name ends with this.
    pub suffix: Option<String>,
    /// The channel name matches this regex (unanchored, as in Sockudo).
    pub pattern: Option<Regex>,
    /// The channel's namespace (see [`channel_namespace`]) is this.
    pub namespace: Option<String>,
    /// The channel's namespace is one of these.
    pub namespaces: Option<Vec<String>>,
}

impl ChannelFilter {
    /// True when `channel` passes every part of the filter.
    pub fn matches(&self, channel: &str) -> bool {
        if self
            .prefix
            .as_deref()
            .is_some_and(|p| !channel.starts_with(p))
        {
            return false;
        }
        if self
            .suffix
            .as_deref()
            .is_some_and(|s| !channel.ends_with(s))
        {
            return false;
        }
        if self
            .pattern
            .as_ref()
            .is_some_and(|re| !re.is_match(channel))
        {
            return false;
        }
        if self.namespace.is_none() && self.namespaces.is_none() {
            return true;
        }
        let namespace = channel_namespace(channel);
        if let Some(want) = &self.namespace {
            if namespace != Some(want.as_str()) {
                return false;
            }
        }
        if let Some(wanted) = &self.namespaces {
            if !wanted.iter().any(|w| namespace == Some(w.as_str())) {
                return false;
            }
        }
        true
    }

    /// Checks and compiles a configured filter; the error starts with the field name.
    pub(crate) fn from_raw(raw: RawFilter) -> Result<ChannelFilter, String> {
        let pattern = match raw.channel_pattern {
            Some(p) => Some(
                Regex::new(&p).map_err(|e| format!("channel_pattern: invalid regex {p:?}: {e}"))?,
            ),
            None => None,
        };
        Ok(ChannelFilter {
            prefix: raw.channel_prefix,
            suffix: raw.channel_suffix,
            pattern,
            namespace: raw.channel_namespace,
            namespaces: raw.channel_namespaces,
        })
    }
}

/// A channel's namespace as Sockudo defines it: after the type prefix (`private-`, `presence-`, `cache-`, ...),
/// the part before the first `:`, if not empty. `private-chat:room1` -> `chat`.
pub fn channel_namespace(channel: &str) -> Option<&str> {
    let logical = TYPE_PREFIXES
        .iter()
        .find_map(|p| channel.strip_prefix(p))
        .unwrap_or(channel);
    let (namespace, _) = logical.split_once(':')?;
    (!namespace.is_empty()).then_some(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(raw: RawFilter) -> ChannelFilter {
        ChannelFilter::from_raw(raw).expect("valid filter")
    }

    fn raw() -> RawFilter {
        RawFilter {
            channel_prefix: None,
            channel_suffix: None,
            channel_pattern: None,
            channel_namespace: None,
            channel_namespaces: None,
        }
    }

    #[test]
    fn empty_filter_passes_everything() {
        assert!(ChannelFilter::default().matches("anything"));
        assert!(filter(raw()).matches(""));
    }

    #[test]
    fn prefix_suffix_and_pattern_all_apply() {
        let f = filter(RawFilter {
            channel_prefix: Some("private-".into()),
            channel_suffix: Some("-eu".into()),
            channel_pattern: Some("^private-[a-z]+-\\d+-eu$".into()),
            ..raw()
        });
        assert!(f.matches("private-orders-42-eu"));
        assert!(!f.matches("presence-orders-42-eu"));
        assert!(!f.matches("private-orders-42-us"));
        assert!(!f.matches("private-orders-xx-eu"));
    }

    #[test]
    fn namespaces_ignore_the_type_prefix() {
        assert_eq!(channel_namespace("private-chat:room1"), Some("chat"));
        assert_eq!(channel_namespace("presence-cache-game:1"), Some("game"));
        assert_eq!(channel_namespace("chat:room1"), Some("chat"));
        assert_eq!(channel_namespace("private-:room"), None);
        assert_eq!(channel_namespace("private-room"), None);
        let one = filter(RawFilter {
            channel_namespace: Some("chat".into()),
            ..raw()
        });
        assert!(one.matches("private-chat:1"));
        assert!(!one.matches("private-game:1"));
        assert!(!one.matches("chat"));
        let many = filter(RawFilter {
            channel_namespaces: Some(vec!["chat".into(), "game".into()]),
            ..raw()
        });
        assert!(many.matches("presence-game:7"));
        assert!(!many.matches("presence-news:7"));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let err = ChannelFilter::from_raw(RawFilter {
            channel_pattern: Some("(".into()),
            ..raw()
        })
        .expect_err("invalid regex");
        assert!(err.starts_with("channel_pattern: invalid regex"), "{err}");
    }
}
