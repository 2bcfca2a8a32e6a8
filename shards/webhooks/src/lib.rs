//! Pusher webhooks (PROTOCOL.md 2.3): what worker shards report ([`WebhookEvent`]), how an app's webhook
//! definitions are read, filtered, signed, batched and delivered over HTTP (or to AWS Lambda, feature `lambda`).

pub mod event;

pub use event::{EventKind, KindSet, WebhookEvent};
