//! Finding an app that is not in the shard's cache, without blocking the shard.
//!
//! A miss sends `IoRequest::FindApp` to the I/O shard and awaits the reply (a tokio oneshot, awaited from
//! glommio) with a timeout. Concurrent misses for the same key or id on one shard share one request; the I/O
//! shard merges the requests of all shards into one query. An unknown key is remembered as unknown for a short
//! time, and after a failed query uncached lookups fail at once for [`RETRY_AFTER_FAILURE`], so neither a
//! flood of bad keys nor a database outage turns into a query per connect.

use super::registry::Hit;
use super::{app_webhooks, App, AppPolicy, AppRegistry};
use crate::config::AppConfig;
use sockudo_io_shard::{AppRecord, FindResult, IoRequest, Lookup, SourceError};
use sockudo_webhooks::WebhookDefaults;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Why a lookup has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The app database cannot answer now (down, slow, or too many lookups waiting).
    #[error("{0}")]
    Unavailable(String),
}

/// The answer handed to the callers waiting for one lookup.
pub(crate) type Outcome = Result<Option<Rc<App>>, LookupError>;

/// How long uncached lookups fail at once after a failed query.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);

/// How long a shard waits for the I/O shard's answer (a little more than the I/O shard's own bound).
const ANSWER_TIMEOUT: Duration =
    Duration::from_millis(sockudo_io_shard::LOOKUP_TIMEOUT.as_millis() as u64 + 1000);

/// The app `by` names: from the cache when it holds a fresh answer, otherwise from the app database (an
/// expired entry is served again only when the database cannot answer).
pub async fn resolve(apps: &Rc<AppRegistry>, by: Lookup) -> Result<Option<Rc<App>>, LookupError> {
    let now = Instant::now();
    let database_down = apps.down_until.get().is_some_and(|t| t > now);
    match apps.cached(&by, now) {
        Hit::Fresh(answer) => return Ok(answer),
        // The database just failed: keep serving what we had.
        Hit::Stale(app) if database_down => return Ok(Some(app)),
        Hit::Stale(_) | Hit::Miss => {}
    }
    if !apps.is_database() {
        return Ok(None);
    }
    if database_down {
        return Err(LookupError::Unavailable(
            "the app database is unavailable; retry later".into(),
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let first = {
        let mut pending = apps.pending.borrow_mut();
        let waiters = pending.entry(by.clone()).or_default();
        waiters.push(tx);
        waiters.len() == 1
    };
    if first {
        start_fetch(apps, by);
    }
    rx.await.unwrap_or_else(|_| {
        Err(LookupError::Unavailable(
            "the app lookup was abandoned".into(),
        ))
    })
}

/// Starts the request for `by` in a task of its own, so that a caller that goes away (its connection closed)
/// does not abandon the others waiting for the same answer.
fn start_fetch(apps: &Rc<AppRegistry>, by: Lookup) {
    apps.pending.borrow_mut().entry(by.clone()).or_default();
    let apps = apps.clone();
    glommio::spawn_local(async move {
        let result = ask_io_shard(&apps, &by).await;
        let outcome = apply(&apps, &by, result);
        for waiter in apps.pending.borrow_mut().remove(&by).unwrap_or_default() {
            let _ = waiter.send(outcome.clone());
        }
    })
    .detach();
}

async fn ask_io_shard(apps: &AppRegistry, by: &Lookup) -> FindResult {
    let Some(io) = &apps.io else {
        return Err(SourceError::NotConfigured);
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if !io.send(IoRequest::FindApp {
        by: by.clone(),
        reply,
    }) {
        return Err(SourceError::Busy);
    }
    let timeout = async {
        glommio::timer::sleep(ANSWER_TIMEOUT).await;
        Err(SourceError::Timeout(ANSWER_TIMEOUT))
    };
    let answer = async {
        answer
            .await
            .unwrap_or_else(|_| Err(SourceError::Unavailable("the I/O shard is gone".into())))
    };
    futures_lite::future::or(answer, timeout).await
}

/// Records the database's answer in the cache and turns it into what the callers get.
fn apply(apps: &AppRegistry, by: &Lookup, result: FindResult) -> Outcome {
    let now = Instant::now();
    let (ttl, negative_ttl) = match apps.policy {
        AppPolicy::Database { ttl, negative_ttl } => (ttl, negative_ttl),
        AppPolicy::Memory => (Duration::MAX, Duration::MAX),
    };
    let record = match result {
        Ok(record) => {
            apps.down_until.set(None);
            record
        }
        Err(e) => {
            apps.down_until.set(Some(now + RETRY_AFTER_FAILURE));
            // A cached copy (even an expired one) keeps serving.
            return match apps.cached(by, now) {
                Hit::Stale(app) | Hit::Fresh(Some(app)) => Ok(Some(app)),
                _ => Err(LookupError::Unavailable(e.to_string())),
            };
        }
    };
    let found = record.and_then(|r| parse_record(r, by, &apps.webhook_defaults));
    match found {
        Some(cfg) => {
            let shared = apps.slots.intern(&cfg.id);
            let previous = apps.by_index(shared.slot);
            shared.publish(Some(&cfg));
            let app = Rc::new(App::build(
                &cfg,
                &shared,
                &apps.defaults,
                &apps.webhook_defaults,
            ));
            if previous
                .as_ref()
                .is_none_or(|p| p.config.webhooks != cfg.webhooks)
            {
                tell_io_webhooks(apps, &app);
            }
            apps.insert(app.clone(), now.checked_add(ttl));
            Ok(Some(app))
        }
        None => {
            let gone = match apps.cached(by, now) {
                Hit::Stale(app) | Hit::Fresh(Some(app)) => Some(app),
                _ => None,
            };
            apps.insert_missing(by, now + negative_ttl);
            if let Some(app) = gone {
                // Not found by id: the app is gone. Not found by key: it may only have a new key, so
                // nothing changes until a lookup by id says so.
                if matches!(by, Lookup::Id(_)) {
                    app.shared.publish(None);
                    if let Some(io) = &apps.io {
                        io.send(IoRequest::AppWebhooks {
                            slot: app.index,
                            hooks: None,
                        });
                    }
                }
            }
            Ok(None)
        }
    }
}

/// The I/O shard delivers this app's webhooks from now on.
fn tell_io_webhooks(apps: &AppRegistry, app: &App) {
    if let Some(io) = &apps.io {
        io.send(IoRequest::AppWebhooks {
            slot: app.index,
            hooks: Some(app_webhooks(&app.config, &apps.webhook_defaults)),
        });
    }
}

/// The app of a database record, or `None` (with a warning naming the app id and the field) when the record
/// cannot be used.
pub fn parse_record(
    record: AppRecord,
    by: &Lookup,
    webhook_defaults: &WebhookDefaults,
) -> Option<AppConfig> {
    let id = record
        .get("id")
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .unwrap_or_default();
    let cfg: AppConfig = match serde_path_to_error::deserialize(serde_json::Value::Object(record)) {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::warn!(app_id = %id, field = %e.path(), error = %e.inner(), "app record skipped: a field does not parse");
            return None;
        }
    };
    for (field, value) in [("id", &cfg.id), ("key", &cfg.key), ("secret", &cfg.secret)] {
        if value.is_empty() {
            tracing::warn!(app_id = %id, field, "app record skipped: empty field");
            return None;
        }
    }
    if let Some(hooks) = cfg.webhooks.as_deref() {
        if let Err(e) = sockudo_webhooks::parse_webhooks_with(hooks, webhook_defaults) {
            tracing::warn!(app_id = %id, field = "webhooks", error = %e, "app record skipped: a field does not parse");
            return None;
        }
    }
    let matches = match by {
        Lookup::Key(key) => cfg.key == *key,
        Lookup::Id(app_id) => cfg.id == *app_id,
    };
    matches.then_some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(v: serde_json::Value) -> AppRecord {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_good_record_parses_with_string_numbers() {
        let cfg = parse_record(
            record(json!({"id": "1", "key": "k", "secret": "s", "enabled": true, "max_connections": "5"})),
            &Lookup::Key("k".into()),
            &WebhookDefaults::default(),
        )
        .unwrap();
        assert_eq!(cfg.max_connections, Some(5));
    }

    #[test]
    fn the_client_event_window_and_termination_come_from_the_policy_column() {
        // The SQL drivers lift `policy.limits.decay_seconds` / `terminate_on_limit` into the flat record.
        let cfg = parse_record(
            record(json!({"id": "1", "key": "k", "secret": "s", "decay_seconds": "5", "terminate_on_limit": true})),
            &Lookup::Id("1".into()),
            &WebhookDefaults::default(),
        )
        .unwrap();
        assert_eq!(
            (cfg.decay_seconds, cfg.terminate_on_limit),
            (Some(5), Some(true))
        );
    }

    #[test]
    fn bad_records_are_skipped() {
        let by = Lookup::Id("1".into());
        assert!(parse_record(
            record(json!({"id": "1", "key": "k", "secret": "s", "max_connections": "many"})),
            &by,
            &WebhookDefaults::default()
        )
        .is_none());
        assert!(parse_record(
            record(json!({"id": "1", "key": "k", "secret": ""})),
            &by,
            &WebhookDefaults::default()
        )
        .is_none());
        assert!(parse_record(record(json!({"id": "1", "key": "k", "secret": "s", "webhooks": [{"event_types": ["nope"]}]})), &by, &WebhookDefaults::default()).is_none());
        assert!(
            parse_record(
                record(json!({"id": "2", "key": "k", "secret": "s"})),
                &by,
                &WebhookDefaults::default()
            )
            .is_none(),
            "another app"
        );
    }
}
