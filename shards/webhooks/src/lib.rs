//! Pusher webhooks (PROTOCOL.md 2.3): what worker shards report ([`WebhookEvent`]), how an app's webhook
//! definitions are read, filtered, signed, batched and delivered over HTTP (or to AWS Lambda, feature `lambda`).

pub mod event;

pub use event::{EventKind, KindSet, WebhookEvent};

// Placeholder until the full definitions land: reads `event_types` only.
/// One webhook definition of an app.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// The event types it wants.
    pub event_types: KindSet,
}

/// Reads an app's `webhooks` list.
pub fn parse_webhooks(raw: &[serde_json::Value]) -> Result<Vec<WebhookConfig>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, w)| {
            let mut set = KindSet::EMPTY;
            for t in w["event_types"].as_array().into_iter().flatten() {
                let name = t.as_str().unwrap_or_default();
                let kind = EventKind::from_name(name)
                    .ok_or_else(|| format!("webhooks[{i}].event_types: unknown event type {t}"))?;
                set.insert(kind);
            }
            Ok(WebhookConfig { event_types: set })
        })
        .collect()
}

/// The webhooks of one app with what signing them needs.
#[derive(Debug, Clone)]
pub struct AppWebhooks {
    /// App id.
    pub app_id: String,
    /// App key (`X-Pusher-Key`).
    pub key: String,
    /// App secret (signature).
    pub secret: String,
    /// Its webhooks.
    pub webhooks: Vec<WebhookConfig>,
}

impl AppWebhooks {
    /// Every event type some webhook of the app wants.
    pub fn wanted(&self) -> KindSet {
        let mut set = KindSet::EMPTY;
        for w in &self.webhooks {
            for k in EventKind::ALL {
                if w.event_types.contains(k) {
                    set.insert(k);
                }
            }
        }
        set
    }
}
