//! Signed REST publishing (PROTOCOL.md 2.2) over hand-written keep-alive HTTP/1.1.

use crate::net::{Conn, Target};
use anyhow::{bail, Result};
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone)]
pub struct Signer {
    pub app_id: String,
    pub key: String,
    pub secret: String,
}

impl Signer {
    /// Query string (without `?`) for `method path` with `body`, signed at `timestamp`.
    pub fn signed_query(&self, method: &str, path: &str, body: &[u8], timestamp: u64) -> String {
        let mut params: Vec<(String, String)> = vec![
            ("auth_key".into(), self.key.clone()),
            ("auth_timestamp".into(), timestamp.to_string()),
            ("auth_version".into(), "1.0".into()),
        ];
        if !body.is_empty() {
            params.push(("body_md5".into(), hex::encode(Md5::digest(body))));
        }
        params.sort();
        let query = params
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_lowercase(), v))
            .collect::<Vec<_>>()
            .join("&");
        let to_sign = format!("{}\n{}\n{}", method.to_uppercase(), path, query);
        let mut mac =
            Hmac::<Sha256>::new_from_slice(self.secret.as_bytes()).expect("HMAC accepts any key");
        mac.update(to_sign.as_bytes());
        let sig = hex::encode(mac.finalize().into_bytes());
        format!("{query}&auth_signature={sig}")
    }

    pub fn events_path(&self) -> String {
        format!("/apps/{}/events", self.app_id)
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// JSON body of a trigger: `{"name":..,"channel":..,"data":"<string>"}`.
pub fn event_body(name: &str, channel: &str, data: &str) -> String {
    serde_json::json!({ "name": name, "channel": channel, "data": data }).to_string()
}

/// An event body tagged `{"k": tag}` (tag filtering runs).
pub fn event_body_tagged(name: &str, channel: &str, data: &str, tag: &str) -> String {
    serde_json::json!({ "name": name, "channel": channel, "data": data, "tags": { "k": tag } })
        .to_string()
}

/// One persistent keep-alive HTTP/1.1 connection. Reconnects transparently when the server closes.
pub struct HttpConn {
    target: Target,
    stream: Option<Conn>,
    buf: Vec<u8>,
}

impl HttpConn {
    pub fn new(target: Target) -> Self {
        Self {
            target,
            stream: None,
            buf: Vec::with_capacity(1024),
        }
    }

    /// POST and return the status code. One retry on a fresh connection if a reused one was stale.
    pub async fn post(&mut self, path_and_query: &str, body: &[u8]) -> Result<u16> {
        let reused = self.stream.is_some();
        match self.try_post(path_and_query, body).await {
            Ok(code) => Ok(code),
            Err(e) => {
                self.stream = None;
                if reused {
                    self.try_post(path_and_query, body).await
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn try_post(&mut self, path_and_query: &str, body: &[u8]) -> Result<u16> {
        if self.stream.is_none() {
            self.stream = Some(crate::net::open(&self.target, None).await?);
            self.buf.clear();
        }
        let Some(stream) = self.stream.as_mut() else {
            bail!("no connection");
        };
        let mut req = format!(
            "POST {path_and_query} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            self.target.host_header,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        stream.write_all(&req).await?;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(hlen) = resp.parse(&self.buf)? {
                let code = resp.code.unwrap_or(0);
                let mut content_length = 0usize;
                let mut close = false;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        content_length = std::str::from_utf8(h.value)?.trim().parse()?;
                    } else if h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                    {
                        close = true;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("chunked responses are not supported");
                    }
                }
                while self.buf.len() < hlen + content_length {
                    if stream.read_buf(&mut self.buf).await? == 0 {
                        bail!("connection closed in response body");
                    }
                }
                self.buf.drain(..hlen + content_length);
                if close {
                    self.stream = None;
                }
                return Ok(code);
            }
            if self.buf.len() > 64 * 1024 {
                bail!("response headers too large");
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                bail!("connection closed before response");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_worked_example() {
        let s = Signer {
            app_id: "3".into(),
            key: "278d425bdf160c739803".into(),
            secret: "7ad3773142a6692b25b8".into(),
        };
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        let q = s.signed_query("POST", "/apps/3/events", body, 1353088179);
        assert_eq!(
            q,
            "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0\
             &body_md5=ec365a775a4cd0599faeb73354201b6f\
             &auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
        );
    }
}
