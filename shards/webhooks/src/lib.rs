//! Pusher webhooks (PROTOCOL.md 2.3): what worker shards report ([`WebhookEvent`]), how an app's webhook
//! definitions are read ([`parse_webhooks`]), filtered, signed ([`payload`]), batched ([`batch`]), retried
//! ([`retry`]) and delivered over HTTP ([`http`]) or to AWS Lambda ([`lambda`], feature `lambda`).
//!
//! Everything but `http` and `lambda` is sans-IO: the I/O shard (crate `sockudo-io-shard`) drives it.

pub mod batch;
pub mod config;
pub mod error;
pub mod event;
pub mod filter;
pub mod http;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod payload;
pub mod retry;
#[cfg(test)]
mod test_support;

pub use config::{
    parse_webhooks, parse_webhooks_with, AppWebhooks, WebhookConfig, WebhookDefaults, WebhookTarget,
};
pub use error::{ClientInitError, DeliveryError};
pub use event::{EventKind, KindSet, WebhookEvent};
pub use filter::ChannelFilter;
pub use retry::RetryPolicy;
