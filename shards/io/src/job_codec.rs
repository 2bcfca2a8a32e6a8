//! A webhook request as stored in the durable queue (sans-IO): the signed request exactly as it will be
//! sent (body, signature and headers, `X-Sockudo-Webhook-Id` included), where to send it and how to retry.
//! Storing the signed bytes means any node can deliver it without knowing the app, and a redelivery is
//! byte-for-byte the same request. Versioned (`v`) so a later format can still read these.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sockudo_webhooks::payload::SignedRequest;
use sockudo_webhooks::{RetryPolicy, WebhookTarget};

use crate::deliver::Job;

/// The header that carries a request's stable id.
pub(crate) const ID_HEADER: &str = "X-Sockudo-Webhook-Id";

const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    id: String,
    app_id: String,
    target: WireTarget,
    retry: WireRetry,
    timeout_ms: u64,
    headers: Vec<(String, String)>,
    body: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireTarget {
    Http {
        url: String,
    },
    Lambda {
        function_name: String,
        region: Option<String>,
    },
}

#[derive(Serialize, Deserialize)]
struct WireRetry {
    enabled: bool,
    max_attempts: Option<u32>,
    max_elapsed_ms: u64,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
}

/// Why a stored message could not be read back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("not a queued webhook: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown queued webhook format version {0}")]
    Version(u8),
}

fn ms(d: Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// The stored form of `job`.
pub(crate) fn encode(job: &Job) -> Bytes {
    let wire = Wire {
        v: VERSION,
        id: job.id.clone(),
        app_id: job.app_id.to_string(),
        target: match &job.target {
            WebhookTarget::Http { url } => WireTarget::Http { url: url.clone() },
            WebhookTarget::Lambda {
                function_name,
                region,
            } => WireTarget::Lambda {
                function_name: function_name.clone(),
                region: region.clone(),
            },
        },
        retry: WireRetry {
            enabled: job.retry.enabled,
            max_attempts: job.retry.max_attempts,
            max_elapsed_ms: ms(job.retry.max_elapsed),
            initial_backoff_ms: ms(job.retry.initial_backoff),
            max_backoff_ms: ms(job.retry.max_backoff),
        },
        timeout_ms: ms(job.timeout),
        headers: job.request.headers.clone(),
        // The body is JSON text we built: always UTF-8.
        body: String::from_utf8_lossy(&job.request.body).into_owned(),
    };
    // Strings, integers and booleans only: serialising cannot fail.
    Bytes::from(serde_json::to_vec(&wire).unwrap_or_default())
}

/// The job stored as `bytes`.
pub(crate) fn decode(bytes: &[u8]) -> Result<Job, DecodeError> {
    let wire: Wire = serde_json::from_slice(bytes)?;
    if wire.v != VERSION {
        return Err(DecodeError::Version(wire.v));
    }
    Ok(Job {
        id: wire.id,
        app_id: Arc::from(wire.app_id),
        target: match wire.target {
            WireTarget::Http { url } => WebhookTarget::Http { url },
            WireTarget::Lambda {
                function_name,
                region,
            } => WebhookTarget::Lambda {
                function_name,
                region,
            },
        },
        retry: RetryPolicy {
            enabled: wire.retry.enabled,
            max_attempts: wire.retry.max_attempts,
            max_elapsed: Duration::from_millis(wire.retry.max_elapsed_ms),
            initial_backoff: Duration::from_millis(wire.retry.initial_backoff_ms),
            max_backoff: Duration::from_millis(wire.retry.max_backoff_ms),
        },
        timeout: Duration::from_millis(wire.timeout_ms),
        request: SignedRequest {
            body: Bytes::from(wire.body),
            headers: wire.headers,
        },
    })
}

/// Hands out request ids unique across processes: 64 random bits chosen at start, then a counter.
#[derive(Debug)]
pub(crate) struct JobIds {
    prefix: u64,
    next: u64,
}

impl JobIds {
    pub(crate) fn new() -> JobIds {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(now) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            hasher.write_u128(now.as_nanos());
        }
        JobIds {
            prefix: hasher.finish(),
            next: 0,
        }
    }

    pub(crate) fn next(&mut self) -> String {
        self.next += 1;
        format!("{:016x}{:016x}", self.prefix, self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            id: "00000000000000aa0000000000000001".into(),
            app_id: Arc::from("1001"),
            target: WebhookTarget::Http {
                url: "http://127.0.0.1:9/hook".into(),
            },
            retry: RetryPolicy {
                enabled: true,
                max_attempts: Some(4),
                max_elapsed: Duration::from_secs(30),
                initial_backoff: Duration::from_millis(250),
                max_backoff: Duration::from_secs(2),
            },
            timeout: Duration::from_millis(1500),
            request: SignedRequest {
                body: Bytes::from_static(
                    br#"{"time_ms":1,"events":[{"name":"channel_occupied","channel":"c"}]}"#,
                ),
                headers: vec![
                    ("X-Pusher-Signature".into(), "abc".into()),
                    (ID_HEADER.into(), "00000000000000aa0000000000000001".into()),
                ],
            },
        }
    }

    #[test]
    fn round_trip_keeps_every_byte_and_setting() {
        let original = job();
        let back = decode(&encode(&original)).expect("decodes");
        assert_eq!(back.id, original.id);
        assert_eq!(&*back.app_id, "1001");
        assert_eq!(back.target, original.target);
        assert_eq!(back.retry, original.retry);
        assert_eq!(back.timeout, original.timeout);
        assert_eq!(back.request.body, original.request.body);
        assert_eq!(back.request.headers, original.request.headers);
        let lambda = Job {
            target: WebhookTarget::Lambda {
                function_name: "f".into(),
                region: Some("eu-west-1".into()),
            },
            ..job()
        };
        assert_eq!(
            decode(&encode(&lambda)).expect("decodes").target,
            lambda.target
        );
    }

    #[test]
    fn foreign_or_newer_messages_are_errors() {
        assert!(matches!(decode(b"not json"), Err(DecodeError::Json(_))));
        assert!(matches!(decode(b""), Err(DecodeError::Json(_))));
        let newer = String::from_utf8(encode(&job()).to_vec())
            .expect("utf-8")
            .replacen("\"v\":1", "\"v\":9", 1);
        assert!(matches!(
            decode(newer.as_bytes()),
            Err(DecodeError::Version(9))
        ));
    }

    #[test]
    fn ids_are_distinct() {
        let mut a = JobIds::new();
        let mut b = JobIds::new();
        let (x, y, z) = (a.next(), a.next(), b.next());
        assert_ne!(x, y);
        assert_ne!(x, z);
        assert_eq!(x.len(), 32);
    }
}
