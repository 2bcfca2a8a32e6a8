//! HTTP(S) delivery: one `POST` of a signed request, answered 2xx or not within the timeout.
//!
//! hyper-util's pooled client with hyper-rustls on the `ring` provider: keep-alive pooling per host, TLS with
//! the Mozilla roots (webpki-roots, so slim containers work) plus the system's store (private CAs), and no
//! process-global TLS state for other crates to trip over.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::{error_chain, ClientInitError, DeliveryError};
use crate::payload::SignedRequest;

/// Response bodies are read (so the connection can be reused) up to this size, then dropped.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// How long an idle keep-alive connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends webhook requests over HTTP/1.1, `http://` or `https://`. Cheap to clone (shared pool).
#[derive(Clone, Debug)]
pub struct HttpSender {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpSender {
    /// A sender trusting the Mozilla roots and the system's certificate store.
    pub fn new() -> Result<HttpSender, ClientInitError> {
        HttpSender::with_extra_roots(Vec::new())
    }

    /// As [`HttpSender::new`], also trusting `extra` (e.g. a private or test CA).
    pub fn with_extra_roots(
        extra: Vec<CertificateDer<'static>>,
    ) -> Result<HttpSender, ClientInitError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        // Unreadable system certificates are skipped: the Mozilla roots still apply.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for cert in extra {
            roots
                .add(cert)
                .map_err(|e| ClientInitError(format!("extra root: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientInitError(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            // Some receivers compare header names case-sensitively; send them as written.
            .http1_title_case_headers(true)
            .build(connector);
        Ok(HttpSender { client })
    }

    /// POSTs `request` to `url`. Ok on a 2xx answer within `timeout`.
    pub async fn post(
        &self,
        url: &str,
        request: &SignedRequest,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let mut builder = http::Request::post(url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let req = builder
            .body(Full::new(request.body.clone()))
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| DeliveryError::Transport(error_chain(&e)))?;
            let status = resp.status();
            // Best effort: an unread or oversized body only costs the connection's reuse.
            let _ = Limited::new(resp.into_body(), MAX_RESPONSE_BODY)
                .collect()
                .await;
            if status.is_success() {
                Ok(())
            } else {
                Err(DeliveryError::Status(status.as_u16()))
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| DeliveryError::Timeout(timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::serve_one;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::net::TcpListener;

    fn request() -> SignedRequest {
        SignedRequest {
            body: Bytes::from_static(b"{\"time_ms\":1,\"events\":[]}"),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Pusher-Key".into(), "key".into()),
            ],
        }
    }

    #[tokio::test]
    async fn posts_over_plain_http_and_maps_statuses() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let mut seen = Vec::new();
            for status in ["200 OK", "503 Service Unavailable", "400 Bad Request"] {
                let (s, _) = listener.accept().await.expect("accept");
                seen.push(serve_one(s, status, "", "").await);
            }
            seen
        });
        let sender = HttpSender::new().expect("client");
        let url = format!("http://{addr}/hook");
        let t = Duration::from_secs(5);
        sender
            .post(&url, &request(), t)
            .await
            .expect("200 is success");
        let err = sender.post(&url, &request(), t).await.expect_err("503");
        assert!(matches!(err, DeliveryError::Status(503)) && err.is_retryable());
        let err = sender.post(&url, &request(), t).await.expect_err("400");
        assert!(matches!(err, DeliveryError::Status(400)) && !err.is_retryable());
        let seen = server.await.expect("server");
        assert!(
            seen[0].starts_with("POST /hook HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].contains("\r\nContent-Type: application/json\r\n"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0].ends_with("{\"time_ms\":1,\"events\":[]}"),
            "{}",
            seen[0]
        );
    }

    #[tokio::test]
    async fn refused_connection_and_silence_are_retryable() {
        let sender = HttpSender::new().expect("client");
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let err = sender
            .post(
                &format!("http://{addr}/"),
                &request(),
                Duration::from_secs(5),
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(err, DeliveryError::Transport(_)) && err.is_retryable(),
            "{err}"
        );

        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = silent.local_addr().expect("addr");
        let err = sender
            .post(
                &format!("http://{addr}/"),
                &request(),
                Duration::from_millis(200),
            )
            .await
            .expect_err("no answer");
        assert!(
            matches!(err, DeliveryError::Timeout(_)) && err.is_retryable(),
            "{err}"
        );
        drop(silent);
    }

    #[tokio::test]
    async fn posts_over_https() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
        let cert_der = cert.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert_der.clone()], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            // First connection: a client that does not trust the test CA gives up in the handshake.
            let (s, _) = listener.accept().await.expect("accept");
            assert!(
                acceptor.accept(s).await.is_err(),
                "untrusted client must abort"
            );
            let (s, _) = listener.accept().await.expect("accept");
            let tls = acceptor.accept(s).await.expect("handshake");
            serve_one(tls, "204 No Content", "", "").await
        });
        let url = format!("https://localhost:{port}/secure");
        let strict = HttpSender::new().expect("client");
        let err = strict
            .post(&url, &request(), Duration::from_secs(5))
            .await
            .expect_err("self-signed certificate is not trusted");
        assert!(matches!(err, DeliveryError::Transport(_)), "{err}");
        let sender = HttpSender::with_extra_roots(vec![cert_der]).expect("client");
        sender
            .post(&url, &request(), Duration::from_secs(5))
            .await
            .expect("https delivery");
        let seen = server.await.expect("server");
        assert!(seen.starts_with("POST /secure HTTP/1.1\r\n"), "{seen}");
    }
}
