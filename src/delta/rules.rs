//! What decides whether and how a (socket, channel) is delta-compressed: the server-wide settings, the app's
//! `channel_delta_compression` patterns and the `delta` setting of a subscription.

use super::Algorithm;
use serde_json::Value;

/// Server-wide `delta_compression.*`, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaSettings {
    /// Master switch: off means every socket gets plain frames (the enable reply says so).
    pub enabled: bool,
    /// Algorithm announced in `pusher:delta_compression_enabled` and used unless a subscription asks otherwise.
    pub algorithm: Algorithm,
    /// A full message after this many deltas of one conflation key.
    pub full_message_interval: u32,
    /// Envelopes shorter than this are sent plain (no metadata, no base change).
    pub min_message_size: usize,
    /// A base older than this (seconds) is not used: the next message is full.
    pub max_state_age_secs: u32,
    /// Channels one socket may have delta state for; beyond, its new channels are plain.
    pub max_channel_states_per_socket: usize,
    /// Conflation keys kept per channel (least recently used dropped).
    pub max_conflation_states_per_channel: usize,
    /// Dot path of the conflation key when the channel's rule names none.
    pub conflation_key_path: Option<String>,
    /// Leave `algorithm` out of delta frames that use the announced algorithm.
    pub omit_delta_algorithm: bool,
}

impl Default for DeltaSettings {
    fn default() -> Self {
        DeltaSettings {
            enabled: true,
            algorithm: Algorithm::Fossil,
            full_message_interval: 10,
            min_message_size: 100,
            max_state_age_secs: 300,
            max_channel_states_per_socket: 100,
            max_conflation_states_per_channel: 100,
            conflation_key_path: None,
            omit_delta_algorithm: false,
        }
    }
}

impl DeltaSettings {
    /// From the validated `delta_compression` section.
    pub fn from_config(c: &crate::config::DeltaCompressionConfig) -> Self {
        DeltaSettings {
            enabled: c.enabled,
            algorithm: Algorithm::parse(&c.algorithm).unwrap_or(Algorithm::Fossil),
            full_message_interval: c.full_message_interval,
            min_message_size: c.min_message_size,
            max_state_age_secs: c.max_state_age_secs,
            max_channel_states_per_socket: c.max_channel_states_per_socket,
            max_conflation_states_per_channel: c.max_conflation_states_per_channel,
            conflation_key_path: c.conflation_key_path.clone().filter(|p| !p.is_empty()),
            omit_delta_algorithm: c.omit_delta_algorithm,
        }
    }
}

/// One `channel_delta_compression` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelRule {
    /// `"disabled"` / `enabled:false`: no deltas on matching channels even for opted-in sockets.
    pub enabled: bool,
    /// Algorithm for this channel's deltas (unless the subscription names one).
    pub algorithm: Option<Algorithm>,
    /// Dot path of the conflation key.
    pub conflation_key: Option<String>,
    /// Keep `tags` in delivered envelopes.
    pub enable_tags: bool,
}

/// Why a `channel_delta_compression` entry was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// Not a known string form.
    #[error("{0:?} is not fossil, xdelta3, disabled or inherit")]
    UnknownForm(String),
    /// Unknown algorithm name in the object form.
    #[error("unknown algorithm {0:?} (fossil or xdelta3)")]
    UnknownAlgorithm(String),
    /// Wrong JSON type or field.
    #[error("{0}")]
    Invalid(String),
    /// More than one `*`.
    #[error("pattern {0:?} may contain at most one *")]
    Pattern(String),
}

/// An app's rules, in configuration order: exact names first, then the first matching pattern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelRules {
    exact: Vec<(String, ChannelRule)>,
    patterns: Vec<(String, ChannelRule)>,
}

impl ChannelRules {
    /// Parses `{"pattern": "fossil" | "xdelta3" | "disabled" | "inherit" | {..}}`.
    pub fn parse(map: &serde_json::Map<String, Value>) -> Result<Self, RuleError> {
        let mut rules = ChannelRules::default();
        for (pattern, value) in map {
            if pattern.matches('*').count() > 1 {
                return Err(RuleError::Pattern(pattern.clone()));
            }
            let Some(rule) = parse_rule(value)? else {
                continue;
            };
            if pattern.contains('*') {
                rules.patterns.push((pattern.clone(), rule));
            } else {
                rules.exact.push((pattern.clone(), rule));
            }
        }
        Ok(rules)
    }

    /// The rule for `channel`, if any.
    pub fn for_channel(&self, channel: &str) -> Option<&ChannelRule> {
        if let Some((_, r)) = self.exact.iter().find(|(p, _)| p == channel) {
            return Some(r);
        }
        self.patterns
            .iter()
            .find(|(p, _)| matches_pattern(p, channel))
            .map(|(_, r)| r)
    }

    /// True when no rule exists (the common case: nothing to look up per publish).
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.patterns.is_empty()
    }
}

fn matches_pattern(pattern: &str, channel: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == channel,
        Some((prefix, suffix)) => {
            channel.len() >= prefix.len() + suffix.len()
                && channel.starts_with(prefix)
                && channel.ends_with(suffix)
        }
    }
}

fn parse_rule(value: &Value) -> Result<Option<ChannelRule>, RuleError> {
    let mut rule = ChannelRule {
        enabled: true,
        algorithm: None,
        conflation_key: None,
        enable_tags: true,
    };
    match value {
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "inherit" => return Ok(None),
            "disabled" => rule.enabled = false,
            other => {
                rule.algorithm =
                    Some(Algorithm::parse(other).ok_or_else(|| RuleError::UnknownForm(s.clone()))?)
            }
        },
        Value::Object(o) => {
            for (k, v) in o {
                match (k.as_str(), v) {
                    ("enabled", Value::Bool(b)) => rule.enabled = *b,
                    ("enable_tags", Value::Bool(b)) => rule.enable_tags = *b,
                    ("algorithm", Value::String(a)) => {
                        rule.algorithm = Some(
                            Algorithm::parse(a)
                                .ok_or_else(|| RuleError::UnknownAlgorithm(a.clone()))?,
                        )
                    }
                    ("conflation_key", Value::String(c)) if !c.is_empty() => {
                        rule.conflation_key = Some(c.clone())
                    }
                    ("conflation_key" | "algorithm", Value::Null) => {}
                    // Accepted for compatibility with Sockudo's schema; one base per key is kept.
                    ("max_messages_per_key" | "max_conflation_keys", Value::Number(_)) => {}
                    _ => {
                        return Err(RuleError::Invalid(format!(
                        "unexpected field {k:?} = {v} (known: enabled, algorithm, conflation_key, \
                             enable_tags, max_messages_per_key, max_conflation_keys)"
                    )))
                    }
                }
            }
        }
        other => {
            return Err(RuleError::Invalid(format!(
                "expected a string or an object, got {other}"
            )))
        }
    }
    Ok(Some(rule))
}

/// The `delta` member of a `pusher:subscribe` (DELTA-TAGS.md §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionDelta {
    /// Not given (or a JSON type that carries no meaning): follow the socket's global opt-in.
    #[default]
    Unspecified,
    /// Off for this channel, whatever the socket opted into.
    Off,
    /// On for this channel; `None` = the channel's or the server's algorithm.
    On(Option<Algorithm>),
}

impl SubscriptionDelta {
    /// Reads `true`/`false`, `"fossil"`/`"xdelta3"`/`"vcdiff"`/`"disabled"`/`"false"`/`"none"` (any other
    /// string: on), or `{"enabled":bool?,"algorithm":string?}`.
    pub fn from_value(value: Option<&Value>) -> Self {
        match value {
            Some(Value::Bool(true)) => SubscriptionDelta::On(None),
            Some(Value::Bool(false)) => SubscriptionDelta::Off,
            Some(Value::String(s)) => {
                let lower = s.to_ascii_lowercase();
                if matches!(lower.as_str(), "disabled" | "false" | "none") {
                    SubscriptionDelta::Off
                } else {
                    SubscriptionDelta::On(Algorithm::parse(&lower))
                }
            }
            Some(Value::Object(o)) => {
                if o.get("enabled").and_then(Value::as_bool) == Some(false) {
                    return SubscriptionDelta::Off;
                }
                SubscriptionDelta::On(
                    o.get("algorithm")
                        .and_then(Value::as_str)
                        .and_then(Algorithm::parse),
                )
            }
            _ => SubscriptionDelta::Unspecified,
        }
    }
}

/// The algorithm (socket, channel) uses, or `None` when it gets plain frames. `socket_opt_in` is the socket's
/// `pusher:enable_delta_compression`.
pub fn resolve(
    settings: &DeltaSettings,
    rule: Option<&ChannelRule>,
    encrypted: bool,
    subscription: SubscriptionDelta,
    socket_opt_in: bool,
) -> Option<Algorithm> {
    if !settings.enabled || encrypted || rule.is_some_and(|r| !r.enabled) {
        return None;
    }
    let channel_default = rule.and_then(|r| r.algorithm).unwrap_or(settings.algorithm);
    match subscription {
        SubscriptionDelta::Off => None,
        SubscriptionDelta::On(a) => Some(a.unwrap_or(channel_default)),
        SubscriptionDelta::Unspecified => socket_opt_in.then_some(channel_default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn subscription_forms() {
        let p = |v: Value| SubscriptionDelta::from_value(Some(&v));
        assert_eq!(p(json!(true)), SubscriptionDelta::On(None));
        assert_eq!(p(json!(false)), SubscriptionDelta::Off);
        assert_eq!(
            p(json!("xdelta3")),
            SubscriptionDelta::On(Some(Algorithm::Xdelta3))
        );
        assert_eq!(
            p(json!("VCDIFF")),
            SubscriptionDelta::On(Some(Algorithm::Xdelta3))
        );
        assert_eq!(p(json!("none")), SubscriptionDelta::Off);
        assert_eq!(p(json!("whatever")), SubscriptionDelta::On(None));
        assert_eq!(
            p(json!({"enabled":true,"algorithm":"fossil"})),
            SubscriptionDelta::On(Some(Algorithm::Fossil))
        );
        assert_eq!(
            p(json!({"algorithm":"xdelta3"})),
            SubscriptionDelta::On(Some(Algorithm::Xdelta3))
        );
        assert_eq!(p(json!({"enabled":false})), SubscriptionDelta::Off);
        assert_eq!(p(json!(5)), SubscriptionDelta::Unspecified);
        assert_eq!(
            SubscriptionDelta::from_value(None),
            SubscriptionDelta::Unspecified
        );
    }

    #[test]
    fn resolution() {
        let s = DeltaSettings::default();
        let xd = ChannelRule {
            enabled: true,
            algorithm: Some(Algorithm::Xdelta3),
            conflation_key: None,
            enable_tags: true,
        };
        let off = ChannelRule {
            enabled: false,
            ..xd.clone()
        };
        use SubscriptionDelta::*;
        assert_eq!(resolve(&s, None, false, Unspecified, false), None);
        assert_eq!(
            resolve(&s, None, false, Unspecified, true),
            Some(Algorithm::Fossil)
        );
        assert_eq!(
            resolve(&s, Some(&xd), false, Unspecified, true),
            Some(Algorithm::Xdelta3)
        );
        assert_eq!(resolve(&s, None, false, Off, true), None);
        assert_eq!(
            resolve(&s, None, false, On(Some(Algorithm::Xdelta3)), false),
            Some(Algorithm::Xdelta3)
        );
        assert_eq!(
            resolve(&s, None, true, On(None), true),
            None,
            "encrypted channels are never tracked"
        );
        assert_eq!(resolve(&s, Some(&off), false, On(None), true), None);
        let disabled = DeltaSettings {
            enabled: false,
            ..s
        };
        assert_eq!(resolve(&disabled, None, false, On(None), true), None);
    }

    #[test]
    fn rules_and_patterns() {
        let map = json!({
            "ticker:*": {"conflation_key": "asset", "enable_tags": false},
            "ticker:special": "xdelta3",
            "*-raw": "disabled",
            "other": "inherit"
        });
        let rules = ChannelRules::parse(map.as_object().unwrap()).unwrap();
        assert_eq!(
            rules.for_channel("ticker:special").unwrap().algorithm,
            Some(Algorithm::Xdelta3)
        );
        let t = rules.for_channel("ticker:BTC").unwrap();
        assert_eq!(t.conflation_key.as_deref(), Some("asset"));
        assert!(!t.enable_tags);
        assert!(!rules.for_channel("feed-raw").unwrap().enabled);
        assert!(rules.for_channel("other").is_none());
        assert!(rules.for_channel("x").is_none());
        let bad = json!({"a": "zstd"});
        assert!(ChannelRules::parse(bad.as_object().unwrap()).is_err());
        let bad = json!({"a*b*": "fossil"});
        assert!(ChannelRules::parse(bad.as_object().unwrap()).is_err());
        let bad = json!({"a": {"conflation": "x"}});
        assert!(ChannelRules::parse(bad.as_object().unwrap()).is_err());
    }
}
