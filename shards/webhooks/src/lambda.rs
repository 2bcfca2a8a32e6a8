//! AWS Lambda delivery (feature `lambda`): an asynchronous `Invoke` (`InvocationType::Event`) whose payload is
//! the same body bytes an HTTP webhook would get.
//!
//! Region: the webhook's `lambda.region`, else the AWS chain (`AWS_REGION`, profile, IMDS). Credentials: the
//! AWS default chain. Endpoint: aws-config itself reads `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL` (and
//! the profile's `endpoint_url`), which is how tests point it at moto. The SDK's own retries are off: the
//! webhook's retry policy decides, the same as for HTTP.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_lambda::Client;
use bytes::Bytes;
use tokio::sync::Mutex;

use crate::error::{error_chain, DeliveryError};
use crate::retry::status_is_retryable;

/// Invokes Lambda functions; one SDK client per region, made on first use.
#[derive(Debug, Default)]
pub struct LambdaSender {
    base: Option<SdkConfig>,
    clients: Mutex<HashMap<Option<String>, Client>>,
}

impl LambdaSender {
    /// A sender using the AWS default configuration chain.
    pub fn new() -> LambdaSender {
        LambdaSender::default()
    }

    /// A sender built on `base` instead of the default chain (explicit endpoint, credentials, region).
    pub fn with_sdk_config(base: SdkConfig) -> LambdaSender {
        LambdaSender {
            base: Some(base),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Invokes `function_name` asynchronously with `payload`. Ok once Lambda accepted the event.
    pub async fn invoke(
        &self,
        function_name: &str,
        region: Option<&str>,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        // Loading the default configuration may ask the instance metadata service: it counts too.
        let call = async {
            self.client(region)
                .await
                .invoke()
                .function_name(function_name)
                .invocation_type(InvocationType::Event)
                .payload(Blob::new(payload.to_vec()))
                .send()
                .await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(DeliveryError::Timeout(timeout)),
            Ok(Ok(_accepted)) => Ok(()),
            Ok(Err(err)) => Err(classify(err)),
        }
    }

    async fn client(&self, region: Option<&str>) -> Client {
        let key = region.map(str::to_owned);
        let mut clients = self.clients.lock().await;
        if let Some(client) = clients.get(&key) {
            return client.clone();
        }
        let client = match &self.base {
            Some(base) => {
                let mut conf = aws_sdk_lambda::config::Builder::from(base)
                    .retry_config(RetryConfig::disabled());
                if let Some(r) = region {
                    conf = conf.region(Region::new(r.to_owned()));
                }
                Client::from_conf(conf.build())
            }
            None => {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .retry_config(RetryConfig::disabled());
                if let Some(r) = region {
                    loader = loader.region(Region::new(r.to_owned()));
                }
                Client::new(&loader.load().await)
            }
        };
        clients.insert(key, client.clone());
        client
    }
}

/// Throttling (429) and service errors (5xx) and anything that never got an answer are retryable; other
/// refusals (unknown function, bad credentials, payload too large) are not.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static, R>(
    err: SdkError<E, R>,
) -> DeliveryError
where
    R: HttpStatus + std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status_code();
            let e = service.err();
            let message = format!(
                "{} ({status}): {}",
                e.code().unwrap_or("unknown"),
                e.message().unwrap_or("")
            );
            DeliveryError::Lambda {
                message,
                retryable: status_is_retryable(status),
            }
        }
        SdkError::ConstructionFailure(_) => DeliveryError::Invalid(error_chain(&err)),
        other => DeliveryError::Transport(error_chain(&other)),
    }
}

/// The status of a raw SDK response (abstracted for the classification tests).
pub trait HttpStatus {
    /// The HTTP status code.
    fn status_code(&self) -> u16;
}

impl HttpStatus for aws_sdk_lambda::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::serve_one;
    use aws_sdk_lambda::config::Credentials;
    use tokio::net::TcpListener;

    async fn local_config(port: u16) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(format!("http://127.0.0.1:{port}"))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await
    }

    /// A local stand-in for the Lambda API (no network): accepted, throttled, unknown function.
    #[tokio::test]
    async fn invokes_asynchronously_and_classifies_refusals() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let answers = [
                ("202 Accepted", "", ""),
                (
                    "429 Too Many Requests",
                    "x-amzn-errortype: TooManyRequestsException\r\ncontent-type: application/json\r\n",
                    "{\"message\":\"Rate exceeded\"}",
                ),
                (
                    "404 Not Found",
                    "x-amzn-errortype: ResourceNotFoundException\r\ncontent-type: application/json\r\n",
                    "{\"message\":\"Function not found\"}",
                ),
            ];
            let mut seen = Vec::new();
            for (status, headers, body) in answers {
                let (s, _) = listener.accept().await.expect("accept");
                seen.push(serve_one(s, status, headers, body).await);
            }
            seen
        });
        let sender = LambdaSender::with_sdk_config(local_config(port).await);
        let body = Bytes::from_static(b"{\"time_ms\":1,\"events\":[]}");
        let t = Duration::from_secs(5);
        sender
            .invoke("fn1", None, body.clone(), t)
            .await
            .expect("202 accepted");
        let throttled = sender
            .invoke("fn1", None, body.clone(), t)
            .await
            .expect_err("429");
        assert!(throttled.is_retryable(), "{throttled}");
        assert!(
            throttled.to_string().contains("TooManyRequestsException"),
            "{throttled}"
        );
        let missing = sender
            .invoke("fn1", Some("eu-west-1"), body, t)
            .await
            .expect_err("404");
        assert!(!missing.is_retryable(), "{missing}");

        let seen = server.await.expect("server");
        let first = seen[0].to_ascii_lowercase();
        assert!(
            first.starts_with("post /2015-03-31/functions/fn1/invocations"),
            "{first}"
        );
        assert!(
            first.contains("\r\nx-amz-invocation-type: event\r\n"),
            "{first}"
        );
        assert!(
            seen[0].ends_with("{\"time_ms\":1,\"events\":[]}"),
            "{}",
            seen[0]
        );
        assert!(
            seen[2].contains("eu-west-1"),
            "region override signs for eu-west-1"
        );
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_retryable() {
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let sender = LambdaSender::with_sdk_config(local_config(port).await);
        let err = sender
            .invoke(
                "fn1",
                None,
                Bytes::from_static(b"{}"),
                Duration::from_secs(5),
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(err, DeliveryError::Transport(_)) && err.is_retryable(),
            "{err}"
        );
    }

    /// Against a real moto server when `SOCKUDO_TEST_MOTO_URL` names one that has a function `pusher-hook`
    /// (see docs/webhooks.md); skipped otherwise, so the suite needs no network.
    #[tokio::test]
    async fn moto_accepts_the_invocation_when_available() {
        let Ok(url) = std::env::var("SOCKUDO_TEST_MOTO_URL") else {
            return;
        };
        let config = aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(url)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .load()
            .await;
        let sender = LambdaSender::with_sdk_config(config);
        let body = Bytes::from_static(b"{\"time_ms\":1,\"events\":[]}");
        // moto 5.2 answers 202 even for unknown functions on Event invocations: nothing more to check.
        let accepted = sender
            .invoke("pusher-hook", None, body, Duration::from_secs(10))
            .await;
        accepted.expect("moto accepts the invocation");
    }
}
