//! The plain-HTTP listener of `ssl.redirect_http`: every request is answered with a 301 to the same host and
//! path over `https://` on the TLS port. Nothing else is served in plain text.

use crate::http::{self, Response};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use std::time::Duration;

/// Where a request for `target` (path and query) with `Host: host` goes over TLS on `tls_port`.
/// `None` when the host is missing or not a plain host name or address.
pub fn location(host: Option<&str>, target: &str, tls_port: u16) -> Option<String> {
    let host = host?.trim();
    let name = match host.strip_prefix('[') {
        // IPv6 literal: keep the brackets, drop a port after them.
        Some(rest) => &host[..rest.find(']')? + 2],
        None => host.split(':').next()?,
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b));
    if !valid {
        return None;
    }
    let target = if target.starts_with('/') { target } else { "/" };
    Some(if tls_port == 443 {
        format!("https://{name}{target}")
    } else {
        format!("https://{name}:{tls_port}{target}")
    })
}

/// The answer to one request head.
pub fn answer(req: &http::Request, tls_port: u16) -> Response {
    let target = if req.query.is_empty() {
        req.path.clone()
    } else {
        format!("{}?{}", req.path, req.query)
    };
    match location(req.headers.host(), &target, tls_port) {
        Some(url) => {
            Response::text(301, "Moved Permanently: use https\n").with_header("Location", url)
        }
        None => Response::error(400, "Missing or invalid Host header"),
    }
}

/// Serves one plain-HTTP connection: reads one request head within `header_timeout`, answers, closes.
pub async fn serve(
    mut stream: TcpStream,
    tls_port: u16,
    limits: http::Limits,
    header_timeout: Duration,
) {
    let read_head = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match http::parse_request(&buf, &limits) {
                Ok(Some((req, _))) => return Some(answer(&req, tls_port)),
                Ok(None) => {}
                Err(e) => return Some(Response::error(e.status(), &e.to_string())),
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let resp = match glommio::timer::timeout(header_timeout, async { Ok(read_head.await) }).await {
        Ok(Some(resp)) => resp,
        Ok(None) => return,
        Err(_) => Response::error(408, "Request head not received in time"),
    };
    let bytes = resp.bytes(false);
    let _ = glommio::timer::timeout(header_timeout, async {
        stream.write_all(&bytes).await?;
        stream.close().await?;
        Ok(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_keeps_host_and_target_and_names_the_tls_port() {
        assert_eq!(
            location(Some("example.com:80"), "/apps/1/channels?x=1", 6001).as_deref(),
            Some("https://example.com:6001/apps/1/channels?x=1")
        );
        assert_eq!(
            location(Some("example.com"), "/", 443).as_deref(),
            Some("https://example.com/")
        );
        assert_eq!(
            location(Some("[::1]:8080"), "/app/k", 8443).as_deref(),
            Some("https://[::1]:8443/app/k")
        );
        assert_eq!(location(None, "/", 443), None);
        assert_eq!(location(Some("evil.com/x"), "/", 443), None);
        assert_eq!(location(Some(""), "/", 443), None);
        assert_eq!(location(Some("h"), "*", 443).as_deref(), Some("https://h/"));
    }
}
