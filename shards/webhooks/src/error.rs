//! Why one delivery attempt failed, and whether trying again could help.

use std::time::Duration;

use crate::retry::status_is_retryable;

/// A failed delivery attempt.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered with a non-2xx status.
    #[error("HTTP status {0}")]
    Status(u16),
    /// No complete answer within the request timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting, TLS or the exchange itself failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// The request could not be built (bad URL or header): retrying cannot help.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// AWS Lambda refused the invocation; `retryable` for throttling and service-side errors.
    #[error("lambda error: {message}")]
    Lambda {
        /// The service's message (code and text).
        message: String,
        /// True for throttling (429) and 5xx answers.
        retryable: bool,
    },
    /// This build cannot deliver to the target (Lambda without the `lambda` feature).
    #[error("unsupported target: {0}")]
    Unsupported(&'static str),
}

impl DeliveryError {
    /// True when a later attempt may succeed: 5xx, 408, 429, timeouts, transport errors, Lambda throttling.
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::Status(status) => status_is_retryable(*status),
            DeliveryError::Timeout(_) | DeliveryError::Transport(_) => true,
            DeliveryError::Lambda { retryable, .. } => *retryable,
            DeliveryError::Invalid(_) | DeliveryError::Unsupported(_) => false,
        }
    }
}

/// Could not set up a client (e.g. TLS configuration).
#[derive(Debug, thiserror::Error)]
#[error("webhook client setup failed: {0}")]
pub struct ClientInitError(pub String);

/// `error: cause: cause...`: the top-level errors of hyper and the AWS SDK alone ("client error (Connect)",
/// "dispatch failure") say too little.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors() {
        assert!(DeliveryError::Status(503).is_retryable());
        assert!(DeliveryError::Status(429).is_retryable());
        assert!(!DeliveryError::Status(400).is_retryable());
        assert!(!DeliveryError::Status(404).is_retryable());
        assert!(DeliveryError::Timeout(Duration::from_secs(1)).is_retryable());
        assert!(DeliveryError::Transport("refused".into()).is_retryable());
        assert!(!DeliveryError::Invalid("bad".into()).is_retryable());
        assert!(!DeliveryError::Unsupported("lambda").is_retryable());
        let throttled = DeliveryError::Lambda {
            message: "TooManyRequests".into(),
            retryable: true,
        };
        assert!(throttled.is_retryable());
    }
}
