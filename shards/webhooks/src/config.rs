//! An app's webhook definitions, read from the per-app `webhooks` array users already write for Sockudo:
//! `{url? | lambda_function? | lambda?{function_name, region?}, event_types, filter?, headers?, retry?,
//! request_timeout_ms?}`. Everything is checked once, at load time, so delivery never meets a bad definition.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::event::{EventKind, KindSet, WebhookEvent};
use crate::filter::ChannelFilter;
use crate::retry::{RetryPolicy, DEFAULT_REQUEST_TIMEOUT};

/// Headers the payload itself sets; a webhook's custom `headers` cannot replace them.
pub const RESERVED_HEADERS: [&str; 3] = ["content-type", "x-pusher-key", "x-pusher-signature"];

/// Where a webhook's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookTarget {
    /// `POST` to this `http://` or `https://` URL.
    Http {
        /// The URL as configured.
        url: String,
    },
    /// Asynchronous invocation of an AWS Lambda function (feature `lambda`).
    Lambda {
        /// Function name or ARN.
        function_name: String,
        /// Region; `None`: the AWS environment / profile chain decides.
        region: Option<String>,
    },
}

impl WebhookTarget {
    /// A description safe to log: the URL without user info or query string, or the function name.
    pub fn display_safe(&self) -> String {
        match self {
            WebhookTarget::Http { url } => redact_url(url),
            WebhookTarget::Lambda { function_name, .. } => format!("lambda:{function_name}"),
        }
    }
}

/// One checked webhook definition.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Where requests go.
    pub target: WebhookTarget,
    /// Which events it wants.
    pub event_types: KindSet,
    /// Which channels it wants events of.
    pub filter: ChannelFilter,
    /// Extra request headers, in configuration order (never one of [`RESERVED_HEADERS`]).
    pub headers: Vec<(String, String)>,
    /// How failed requests are retried.
    pub retry: RetryPolicy,
    /// Timeout of one request.
    pub request_timeout: Duration,
}

impl WebhookConfig {
    /// True when this webhook wants `event`: its kind is one of `event_types` and its channel passes `filter`.
    pub fn matches(&self, event: &WebhookEvent) -> bool {
        self.event_types.contains(event.kind) && self.filter.matches(&event.channel)
    }
}

/// An app's credentials and webhooks: what the I/O shard needs to sign and deliver its events.
#[derive(Debug, Clone)]
pub struct AppWebhooks {
    /// The app id (for logs).
    pub app_id: String,
    /// Sent as `X-Pusher-Key`.
    pub key: String,
    /// Signs bodies; never logged.
    pub secret: String,
    /// The app's webhooks.
    pub webhooks: Vec<WebhookConfig>,
}

impl AppWebhooks {
    /// The union of the event types of all the app's webhooks: worker shards skip building the others.
    pub fn wanted(&self) -> KindSet {
        let mut set = KindSet::EMPTY;
        for webhook in &self.webhooks {
            for kind in EventKind::ALL {
                if webhook.event_types.contains(kind) {
                    set.insert(kind);
                }
            }
        }
        set
    }
}

/// What a webhook uses for the `retry` fields and `request_timeout_ms` it does not set: the server-wide
/// `webhooks.retry` / `webhooks.request_timeout_ms` (Sockudo's defaults unless configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookDefaults {
    /// The retry policy a webhook starts from.
    pub retry: RetryPolicy,
    /// The timeout of one request.
    pub request_timeout: Duration,
}

impl Default for WebhookDefaults {
    fn default() -> WebhookDefaults {
        WebhookDefaults {
            retry: RetryPolicy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// Reads an app's `webhooks` array with the built-in defaults ([`parse_webhooks_with`]).
pub fn parse_webhooks(raw: &[serde_json::Value]) -> Result<Vec<WebhookConfig>, String> {
    parse_webhooks_with(raw, &WebhookDefaults::default())
}

/// Reads an app's `webhooks` array; fields a webhook leaves out come from `defaults`. Errors name the entry
/// and field, e.g. `webhooks[1].event_types: unknown event type "foo"`.
pub fn parse_webhooks_with(
    raw: &[serde_json::Value],
    defaults: &WebhookDefaults,
) -> Result<Vec<WebhookConfig>, String> {
    raw.iter()
        .enumerate()
        .map(|(index, value)| {
            parse_one(value, defaults).map_err(|e| {
                // Errors about the entry as a whole start with ':'; the others with a field path.
                let dot = if e.starts_with(':') { "" } else { "." };
                format!("webhooks[{index}]{dot}{e}")
            })
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<String>,
    lambda_function: Option<String>,
    lambda: Option<RawLambda>,
    event_types: Vec<String>,
    filter: Option<RawFilter>,
    headers: Option<BTreeMap<String, String>>,
    retry: Option<RawRetry>,
    request_timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLambda {
    function_name: String,
    region: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFilter {
    pub(crate) channel_prefix: Option<String>,
    pub(crate) channel_suffix: Option<String>,
    pub(crate) channel_pattern: Option<String>,
    pub(crate) channel_namespace: Option<String>,
    pub(crate) channel_namespaces: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    enabled: Option<bool>,
    max_attempts: Option<u32>,
    max_elapsed_time_ms: Option<u64>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
}

/// Parses one entry; the error starts with the field path (the caller prefixes `webhooks[i].`).
fn parse_one(
    value: &serde_json::Value,
    defaults: &WebhookDefaults,
) -> Result<WebhookConfig, String> {
    let raw: RawWebhook = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        format!("{path}: {}", e.inner())
    })?;
    let target = parse_target(raw.url, raw.lambda_function, raw.lambda)?;
    let event_types = parse_event_types(&raw.event_types)?;
    let filter = match raw.filter {
        Some(f) => ChannelFilter::from_raw(f).map_err(|e| format!("filter.{e}"))?,
        None => ChannelFilter::default(),
    };
    let headers = parse_headers(raw.headers.unwrap_or_default())?;
    let retry = parse_retry(raw.retry, defaults.retry)?;
    let request_timeout = match raw.request_timeout_ms {
        Some(0) => return Err("request_timeout_ms: must be greater than 0".into()),
        Some(ms) => Duration::from_millis(ms),
        None => defaults.request_timeout,
    };
    Ok(WebhookConfig {
        target,
        event_types,
        filter,
        headers,
        retry,
        request_timeout,
    })
}

fn parse_target(
    url: Option<String>,
    lambda_function: Option<String>,
    lambda: Option<RawLambda>,
) -> Result<WebhookTarget, String> {
    let target = match (url, lambda_function, lambda) {
        (Some(url), None, None) => {
            check_url(&url).map_err(|e| format!("url: {e}"))?;
            return Ok(WebhookTarget::Http { url });
        }
        (None, Some(function_name), None) => {
            if function_name.is_empty() {
                return Err("lambda_function: must not be empty".into());
            }
            WebhookTarget::Lambda {
                function_name,
                region: None,
            }
        }
        (None, None, Some(lambda)) => {
            if lambda.function_name.is_empty() {
                return Err("lambda.function_name: must not be empty".into());
            }
            let region = lambda.region.filter(|r| !r.is_empty());
            WebhookTarget::Lambda {
                function_name: lambda.function_name,
                region,
            }
        }
        _ => return Err(": exactly one of url, lambda_function or lambda is required".into()),
    };
    if cfg!(feature = "lambda") {
        Ok(target)
    } else {
        Err(": Lambda webhooks need a build with the `lambda` feature (cargo build --features lambda)"
            .into())
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("must start with http:// or https:// (got {url:?})")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("has no host (got {url:?})"));
    }
    Ok(())
}

fn parse_event_types(names: &[String]) -> Result<KindSet, String> {
    if names.is_empty() {
        return Err("event_types: must name at least one event type".into());
    }
    let mut set = KindSet::EMPTY;
    for name in names {
        let kind = EventKind::from_name(name).ok_or_else(|| {
            let known: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
            format!(
                "event_types: unknown event type {name:?} (known: {})",
                known.join(", ")
            )
        })?;
        set.insert(kind);
    }
    Ok(set)
}

fn parse_headers(headers: BTreeMap<String, String>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("headers: invalid header name {name:?}"));
        }
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(format!("headers.{name}: invalid header value"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            // The signed payload sets these itself; a configured copy would break verification.
            continue;
        }
        out.push((name, value));
    }
    Ok(out)
}

fn parse_retry(raw: Option<RawRetry>, defaults: RetryPolicy) -> Result<RetryPolicy, String> {
    let mut policy = defaults;
    let Some(raw) = raw else {
        return Ok(policy);
    };
    let ms = Duration::from_millis;
    if let Some(enabled) = raw.enabled {
        policy.enabled = enabled;
    }
    if let Some(max) = raw.max_attempts {
        if max == 0 {
            return Err("retry.max_attempts: must be at least 1".into());
        }
        policy.max_attempts = Some(max);
    }
    if let Some(v) = raw.max_elapsed_time_ms {
        policy.max_elapsed = ms(v);
    }
    if let Some(v) = raw.initial_backoff_ms {
        if v == 0 {
            return Err("retry.initial_backoff_ms: must be greater than 0".into());
        }
        policy.initial_backoff = ms(v);
    }
    if let Some(v) = raw.max_backoff_ms {
        policy.max_backoff = ms(v);
    }
    if policy.max_backoff < policy.initial_backoff {
        return Err("retry.max_backoff_ms: must not be less than initial_backoff_ms".into());
    }
    Ok(policy)
}

/// `scheme://host[:port]/path`: user info and query string may carry credentials.
fn redact_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(uri) => {
            let scheme = uri.scheme_str().unwrap_or("?");
            let host = uri.host().unwrap_or("?");
            let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{scheme}://{host}{port}{}", uri.path())
        }
        Err(_) => "<invalid url>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Vec<WebhookConfig>, String> {
        let list = v.as_array().cloned().unwrap_or_default();
        parse_webhooks(&list)
    }

    #[test]
    fn full_http_definition() {
        let hooks = parse(json!([{
            "url": "https://example.com/hook",
            "event_types": ["channel_occupied", "member_added"],
            "filter": {"channel_prefix": "private-", "channel_suffix": "-x"},
            "headers": {"X-Custom": "1", "content-type": "text/plain"},
            "retry": {"enabled": true, "max_attempts": 4, "max_elapsed_time_ms": 1000,
                      "initial_backoff_ms": 10, "max_backoff_ms": 100},
            "request_timeout_ms": 2500
        }]))
        .expect("valid");
        let h = &hooks[0];
        assert_eq!(
            h.target,
            WebhookTarget::Http {
                url: "https://example.com/hook".into()
            }
        );
        assert!(h.event_types.contains(EventKind::ChannelOccupied));
        assert!(h.event_types.contains(EventKind::MemberAdded));
        assert!(!h.event_types.contains(EventKind::ClientEvent));
        assert_eq!(h.headers, vec![("X-Custom".to_string(), "1".to_string())]);
        assert_eq!(h.retry.max_attempts, Some(4));
        assert_eq!(h.retry.initial_backoff, Duration::from_millis(10));
        assert_eq!(h.request_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn defaults() {
        let hooks = parse(json!([{"url": "http://127.0.0.1:9/x", "event_types": ["cache_miss"]}]))
            .expect("valid");
        assert_eq!(hooks[0].retry, RetryPolicy::default());
        assert_eq!(hooks[0].request_timeout, Duration::from_secs(10));
        assert!(hooks[0].headers.is_empty());
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let ok = json!({"url": "http://a/", "event_types": ["channel_occupied"]});
        let cases = [
            (
                json!({"url": "http://a/", "event_types": ["foo"]}),
                "webhooks[1].event_types: unknown event type \"foo\"",
            ),
            (
                json!({"url": "http://a/", "event_types": []}),
                "webhooks[1].event_types: must name",
            ),
            (
                json!({"url": "ftp://a/", "event_types": ["cache_miss"]}),
                "webhooks[1].url: must start with http:// or https://",
            ),
            (
                json!({"url": "nonsense", "event_types": ["cache_miss"]}),
                "webhooks[1].url:",
            ),
            (
                json!({"event_types": ["cache_miss"]}),
                "webhooks[1]: exactly one of url, lambda_function or lambda",
            ),
            (
                json!({"url": "http://a/", "lambda_function": "f", "event_types": ["cache_miss"]}),
                "exactly one of",
            ),
            (
                json!({"url": "http://a/", "event_types": ["cache_miss"], "colour": 1}),
                "unknown field `colour`",
            ),
            (
                json!({"url": "http://a/", "event_types": ["cache_miss"], "filter": {"prefix": "x"}}),
                "webhooks[1].filter",
            ),
            (
                json!({"url": "http://a/", "event_types": ["cache_miss"], "retry": {"max_attempts": "x"}}),
                "webhooks[1].retry.max_attempts",
            ),
            (
                json!({"url": "http://a/", "event_types": ["cache_miss"], "retry": {"max_attempts": 0}}),
                "webhooks[1].retry.max_attempts: must be at least 1",
            ),
            (
                json!({"url": "http://a/", "event_types": ["cache_miss"], "filter": {"channel_pattern": "("}}),
                "webhooks[1].filter.channel_pattern:",
            ),
            (
                json!({"url": "http://a/", "event_types": ["cache_miss"], "headers": {"a b": "x"}}),
                "webhooks[1].headers: invalid header name",
            ),
            (
                json!({"url": "http://a/", "event_types": ["cache_miss"], "request_timeout_ms": 0}),
                "webhooks[1].request_timeout_ms",
            ),
            (
                json!({"url": "http://a/"}),
                "webhooks[1]: missing field `event_types`",
            ),
        ];
        for (bad, want) in cases {
            let err = parse(json!([ok.clone(), bad.clone()])).expect_err(&bad.to_string());
            assert!(err.contains(want), "{bad}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn lambda_definitions_depend_on_the_feature() {
        let forms = [
            json!({"lambda_function": "fn1", "event_types": ["client_event"]}),
            json!({"lambda": {"function_name": "fn1", "region": "eu-west-1"}, "event_types": ["client_event"]}),
            json!({"lambda": {"function_name": "fn1"}, "event_types": ["client_event"]}),
        ];
        for form in forms {
            let parsed = parse(json!([form]));
            if cfg!(feature = "lambda") {
                let hooks = parsed.expect("valid with the feature");
                assert!(matches!(hooks[0].target, WebhookTarget::Lambda { .. }));
            } else {
                let err = parsed.expect_err("no lambda without the feature");
                assert!(err.contains("`lambda` feature"), "{err}");
            }
        }
    }

    #[test]
    fn wanted_is_the_union_and_matches_checks_kind_and_channel() {
        let webhooks = parse(json!([
            {"url": "http://a/", "event_types": ["channel_occupied"], "filter": {"channel_prefix": "presence-"}},
            {"url": "http://b/", "event_types": ["client_event", "member_added"]}
        ]))
        .expect("valid");
        let app = AppWebhooks {
            app_id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
            webhooks,
        };
        let wanted = app.wanted();
        for kind in EventKind::ALL {
            let expect = matches!(
                kind,
                EventKind::ChannelOccupied | EventKind::ClientEvent | EventKind::MemberAdded
            );
            assert_eq!(wanted.contains(kind), expect, "{kind:?}");
        }
        let occupied = |ch: &str| WebhookEvent::new(0, EventKind::ChannelOccupied, ch);
        assert!(app.webhooks[0].matches(&occupied("presence-room")));
        assert!(!app.webhooks[0].matches(&occupied("private-room")));
        assert!(!app.webhooks[1].matches(&occupied("presence-room")));
        assert!(app.webhooks[1].matches(&WebhookEvent::new(0, EventKind::ClientEvent, "x")));
    }

    #[test]
    fn logged_target_hides_credentials() {
        let t = WebhookTarget::Http {
            url: "https://user:pw@example.com:8443/hook?token=abc".into(),
        };
        assert_eq!(t.display_safe(), "https://example.com:8443/hook");
    }

    #[test]
    fn fields_a_webhook_leaves_out_come_from_the_server_defaults() {
        let defaults = WebhookDefaults {
            retry: RetryPolicy {
                enabled: true,
                max_attempts: Some(3),
                max_elapsed: Duration::from_secs(20),
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(2),
            },
            request_timeout: Duration::from_secs(4),
        };
        let list = [
            json!({"url": "http://h/a", "event_types": ["channel_occupied"]}),
            json!({"url": "http://h/b", "event_types": ["channel_occupied"],
                   "retry": {"max_attempts": 7}, "request_timeout_ms": 900}),
        ];
        let hooks = parse_webhooks_with(&list, &defaults).expect("valid");
        assert_eq!(hooks[0].retry, defaults.retry);
        assert_eq!(hooks[0].request_timeout, Duration::from_secs(4));
        assert_eq!(
            hooks[1].retry,
            RetryPolicy {
                max_attempts: Some(7),
                ..defaults.retry
            }
        );
        assert_eq!(hooks[1].request_timeout, Duration::from_millis(900));
        let err = parse_webhooks_with(
            &[
                json!({"url": "http://h/c", "event_types": ["channel_occupied"],
                     "retry": {"initial_backoff_ms": 5000}}),
            ],
            &defaults,
        )
        .unwrap_err();
        assert!(err.starts_with("webhooks[0].retry.max_backoff_ms"), "{err}");
    }
}
