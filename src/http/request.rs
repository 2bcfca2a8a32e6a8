//! HTTP/1.1 request-head parsing for the single port that serves both
//! WebSocket upgrades and the REST API.
//!
//! Only the head is parsed here; the caller reads `content_length` body bytes
//! after the returned header length. Bodies are always length-delimited:
//! Pusher REST clients send `Content-Length`, and refusing chunked encoding
//! keeps request smuggling (CL/TE disagreement) impossible by construction.

use thiserror::Error;

/// httparse needs a fixed header array; more than this is answered with 431.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head (request line + headers + blank line).
    pub max_header_bytes: usize,
    /// Largest `Content-Length` accepted.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Malformed(httparse::Error),
    #[error("unsupported HTTP version")]
    UnsupportedVersion,
    #[error("more than {MAX_HEADERS} headers")]
    TooManyHeaders,
    #[error("request headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    #[error("invalid Content-Length")]
    InvalidContentLength,
    #[error("duplicate Content-Length")]
    DuplicateContentLength,
    #[error("chunked transfer encoding is not supported; send Content-Length")]
    ChunkedNotSupported,
    #[error("unsupported transfer encoding")]
    UnsupportedTransferEncoding,
    #[error("body of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { len: usize, max: usize },
}

impl HttpError {
    /// Status code of the error response to send before closing.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_)
            | HttpError::InvalidContentLength
            | HttpError::DuplicateContentLength => 400,
            HttpError::ChunkedNotSupported => 411,
            HttpError::PayloadTooLarge { .. } => 413,
            HttpError::TooManyHeaders | HttpError::HeadersTooLarge(_) => 431,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::UnsupportedVersion => 505,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
    Head,
    Options,
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "HEAD" => Method::Head,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        }
    }
}

/// All request headers, names lowercased, packed into one string.
///
/// Two allocations per request (text + index) instead of two per header;
/// lookups are a linear scan, which beats hashing for the ~10 headers a
/// request carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// (name_start, name_end, value_end) into `text`; value starts at name_end.
    index: Vec<(u32, u32, u32)>,
}

impl Headers {
    fn with_capacity(bytes: usize, count: usize) -> Self {
        Headers {
            text: String::with_capacity(bytes),
            index: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, name: &str, value: &[u8]) {
        let start = self.text.len();
        self.text.push_str(name);
        self.text[start..].make_ascii_lowercase();
        let (start, name_end) = (start as u32, self.text.len() as u32);
        // obs-text (non-UTF-8) values are rare and never meaningful to us;
        // lossy conversion keeps them visible without failing the request.
        match std::str::from_utf8(value) {
            Ok(v) => self.text.push_str(v),
            Err(_) => self.text.push_str(&String::from_utf8_lossy(value)),
        }
        self.index.push((start, name_end, self.text.len() as u32));
    }

    fn entry(&self, &(s, n, e): &(u32, u32, u32)) -> (&str, &str) {
        let name = self.text.get(s as usize..n as usize).unwrap_or("");
        let value = self.text.get(n as usize..e as usize).unwrap_or("");
        (name, value)
    }

    /// First value of header `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of header `name`, in request order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// (lowercased name, value) pairs in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.index.iter().map(move |e| self.entry(e))
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn host(&self) -> Option<&str> {
        self.get("host")
    }
    pub fn upgrade(&self) -> Option<&str> {
        self.get("upgrade")
    }
    pub fn connection(&self) -> Option<&str> {
        self.get("connection")
    }
    pub fn sec_websocket_key(&self) -> Option<&str> {
        self.get("sec-websocket-key")
    }
    pub fn sec_websocket_version(&self) -> Option<&str> {
        self.get("sec-websocket-version")
    }
    pub fn origin(&self) -> Option<&str> {
        self.get("origin")
    }
    pub fn content_type(&self) -> Option<&str> {
        self.get("content-type")
    }
    pub fn content_length(&self) -> Option<&str> {
        self.get("content-length")
    }
    pub fn transfer_encoding(&self) -> Option<&str> {
        self.get("transfer-encoding")
    }
    pub fn x_forwarded_for(&self) -> Option<&str> {
        self.get("x-forwarded-for")
    }
    pub fn user_agent(&self) -> Option<&str> {
        self.get("user-agent")
    }

    /// Whether any value of `name` contains `token` in its comma-separated
    /// list (case-insensitive), as `Connection` and `Upgrade` require.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Raw request target path, not percent-decoded: route matching on the
    /// raw form avoids `%2F` smuggling a separator into a segment.
    pub path: String,
    /// Raw query string without the `?`; empty when absent.
    pub query: String,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Headers,
    /// Body length to read after the head; 0 when no Content-Length.
    pub content_length: usize,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
}

impl Request {
    /// Non-empty `/`-separated segments of the raw path, so `/apps//1/` and
    /// `/apps/1` route the same.
    pub fn path_segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.path.split('/').filter(|s| !s.is_empty())
    }

    /// RFC 6455 §4.2.1 opening-handshake checks.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.check_websocket_upgrade().is_ok()
    }

    /// RFC 6455 §4.2.1 opening-handshake checks, saying which one failed: the
    /// answer is 400, or 426 with `Sec-WebSocket-Version: 13` for a version
    /// this server does not speak (§4.4).
    pub fn check_websocket_upgrade(&self) -> Result<(), UpgradeError> {
        if self.method != Method::Get
            || self.version < 1
            || !self.headers.has_token("upgrade", "websocket")
            || !self.headers.has_token("connection", "upgrade")
        {
            return Err(UpgradeError::NotAnUpgrade);
        }
        match self.headers.sec_websocket_version().map(str::trim) {
            Some("13") => {}
            _ => return Err(UpgradeError::UnsupportedVersion),
        }
        match self.websocket_key() {
            Some(key) if is_websocket_key(key) => Ok(()),
            _ => Err(UpgradeError::InvalidKey),
        }
    }

    /// The client's `Sec-WebSocket-Key`, trimmed, if present and non-empty.
    pub fn websocket_key(&self) -> Option<&str> {
        self.headers
            .sec_websocket_key()
            .map(str::trim)
            .filter(|k| !k.is_empty())
    }
}

/// Why a request to a WebSocket path cannot be upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UpgradeError {
    #[error("WebSocket upgrade required on /app/{{key}}")]
    NotAnUpgrade,
    #[error("unsupported Sec-WebSocket-Version; this server speaks 13")]
    UnsupportedVersion,
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    InvalidKey,
}

impl UpgradeError {
    /// Status of the refusal; 426 comes with `Sec-WebSocket-Version: 13`.
    pub fn status(&self) -> u16 {
        match self {
            UpgradeError::UnsupportedVersion => 426,
            UpgradeError::NotAnUpgrade | UpgradeError::InvalidKey => 400,
        }
    }
}

/// A `Sec-WebSocket-Key` is 16 bytes in base64: 22 characters of the base64
/// alphabet, the last carrying only 2 bits (so one of `AQgw`), then `==`.
fn is_websocket_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && matches!(b[21], b'A' | b'Q' | b'g' | b'w')
        && &b[22..] == b"=="
}

/// Strict Content-Length: digits only, no sign or list. Lenient parsing
/// (e.g. `"5, 5"`, `"+5"`) is what lets a proxy and a server disagree about
/// where a body ends.
fn parse_content_length(v: &[u8]) -> Result<usize, HttpError> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return Err(HttpError::InvalidContentLength);
    }
    v.iter().try_fold(0usize, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(HttpError::InvalidContentLength);
        }
        acc.checked_mul(10)
            .and_then(|a| a.checked_add(usize::from(b - b'0')))
            .ok_or(HttpError::InvalidContentLength)
    })
}

fn has_token(v: &[u8], token: &str) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parse a request head from the front of `buf`.
///
/// `Ok(None)`: the head is incomplete; read more and call again with the
/// whole buffer. `Ok(Some((req, n)))`: the head is `buf[..n]`; the body is the
/// next `req.content_length` bytes. Errors map to a status via
/// [`HttpError::status`]; the connection should be closed after answering.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<(Request, usize)>, HttpError> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_header_bytes {
                return Err(HttpError::HeadersTooLarge(limits.max_header_bytes));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HttpError::UnsupportedVersion),
        Err(e) => return Err(HttpError::Malformed(e)),
    };
    if head_len > limits.max_header_bytes {
        return Err(HttpError::HeadersTooLarge(limits.max_header_bytes));
    }
    // Complete status guarantees these are set.
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(HttpError::Malformed(httparse::Error::Token));
    };

    let mut content_length = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut text_len = 0;
    for h in req.headers.iter() {
        text_len += h.name.len() + h.value.len();
        if h.name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(HttpError::DuplicateContentLength);
            }
            content_length = Some(parse_content_length(h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(&[]);
            return Err(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                HttpError::ChunkedNotSupported
            } else {
                HttpError::UnsupportedTransferEncoding
            });
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection_close |= has_token(h.value, "close");
            connection_keep_alive |= has_token(h.value, "keep-alive");
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > limits.max_body_bytes {
        return Err(HttpError::PayloadTooLarge {
            len: content_length,
            max: limits.max_body_bytes,
        });
    }

    let mut headers = Headers::with_capacity(text_len, req.headers.len());
    for h in req.headers.iter() {
        headers.push(h.name, h.value);
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let keep_alive = if version >= 1 {
        !connection_close
    } else {
        connection_keep_alive && !connection_close
    };

    Ok(Some((
        Request {
            method: Method::parse(method),
            path: path.to_owned(),
            query: query.to_owned(),
            version,
            headers,
            content_length,
            keep_alive,
        },
        head_len,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &[u8] = b"GET /app/key123?protocol=7&client=js&version=8.4 HTTP/1.1\r\n\
Host: example.com\r\n\
Upgrade: WebSocket\r\n\
Connection: keep-alive, Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\n\
Origin: https://example.com\r\n\
\r\n";

    const POST: &[u8] = b"POST /apps/1/events?auth_key=k&auth_signature=s HTTP/1.1\r\n\
Host: localhost\r\n\
Content-Type: application/json\r\n\
Content-Length: 13\r\n\
\r\n\
{\"name\":\"e\"}\n";

    fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
        parse_request(buf, &Limits::default())
    }

    fn complete(buf: &[u8]) -> (Request, usize) {
        parse(buf).expect("valid").expect("complete")
    }

    #[test]
    fn websocket_upgrade_with_query() {
        let (r, n) = complete(UPGRADE);
        assert_eq!(n, UPGRADE.len());
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/app/key123");
        assert_eq!(r.query, "protocol=7&client=js&version=8.4");
        assert_eq!(r.path_segments().collect::<Vec<_>>(), ["app", "key123"]);
        assert!(r.is_websocket_upgrade());
        assert_eq!(r.websocket_key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
        assert_eq!(r.headers.host(), Some("example.com"));
        assert_eq!(r.headers.origin(), Some("https://example.com"));
        assert_eq!(r.headers.get("ORIGIN"), Some("https://example.com"));
        assert_eq!(r.headers.len(), 6);
        assert!(r.keep_alive);
        assert_eq!(r.content_length, 0);
    }

    #[test]
    fn upgrade_requirements() {
        let variants: [(&[u8], &[u8]); 5] = [
            (b"GET /app", b"POST /app"),
            (b"Upgrade: WebSocket", b"Upgrade: h2c"),
            (b"keep-alive, Upgrade", b"keep-alive"),
            (b"Version: 13", b"Version: 8"),
            (b"Key: dGhlIHNhbXBsZSBub25jZQ==", b"Key:"),
        ];
        for (from, to) in variants {
            let text = String::from_utf8(UPGRADE.to_vec()).unwrap();
            let changed = text.replacen(
                std::str::from_utf8(from).unwrap(),
                std::str::from_utf8(to).unwrap(),
                1,
            );
            assert_ne!(text, changed);
            let (r, _) = complete(changed.as_bytes());
            assert!(!r.is_websocket_upgrade(), "{changed}");
        }
        let http10 = String::from_utf8(UPGRADE.to_vec())
            .unwrap()
            .replace("HTTP/1.1", "HTTP/1.0");
        assert!(!complete(http10.as_bytes()).0.is_websocket_upgrade());
    }

    #[test]
    fn upgrade_refusals_say_why() {
        let text = String::from_utf8(UPGRADE.to_vec()).unwrap();
        let with = |from: &str, to: &str| {
            let changed = text.replacen(from, to, 1);
            assert_ne!(text, changed);
            complete(changed.as_bytes()).0.check_websocket_upgrade()
        };
        assert_eq!(complete(UPGRADE).0.check_websocket_upgrade(), Ok(()));
        let version = with("Version: 13", "Version: 8");
        assert_eq!(version, Err(UpgradeError::UnsupportedVersion));
        assert_eq!(version.unwrap_err().status(), 426);
        assert_eq!(
            with("Sec-WebSocket-Version: 13\r\n", ""),
            Err(UpgradeError::UnsupportedVersion)
        );
        assert_eq!(
            with("Upgrade: WebSocket", "Upgrade: h2c"),
            Err(UpgradeError::NotAnUpgrade)
        );
        for bad in [
            "",
            "abc",
            "dGhlIHNhbXBsZSBub25jZQ=",
            "dGhlIHNhbXBsZSBub25jZQ===",
            "dGhlIHNhbXBsZSBub25jZR==",
            "dGhlIHNhbXBsZSBub25jZ!==",
            "dGhlIHNhbXBsZSBub25jZQAA",
            "dGhlIHNhbXBsZSBub25jZQ==dGhl",
        ] {
            let r = with("dGhlIHNhbXBsZSBub25jZQ==", bad);
            assert_eq!(r, Err(UpgradeError::InvalidKey), "{bad:?}");
        }
        assert_eq!(
            with("dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA=="),
            Ok(())
        );
        assert_eq!(
            with("dGhlIHNhbXBsZSBub25jZQ==", "+/+/+/+/+/+/+/+/+/+/+w=="),
            Ok(())
        );
    }

    #[test]
    fn post_with_body() {
        let (r, n) = complete(POST);
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/apps/1/events");
        assert_eq!(r.query, "auth_key=k&auth_signature=s");
        assert_eq!(r.content_length, 13);
        assert_eq!(r.headers.content_type(), Some("application/json"));
        assert_eq!(r.headers.content_length(), Some("13"));
        assert_eq!(&POST[n..n + r.content_length], b"{\"name\":\"e\"}\n");
        assert!(!r.is_websocket_upgrade());
    }

    #[test]
    fn pipelined_requests() {
        let mut buf = POST.to_vec();
        buf.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (r1, n1) = complete(&buf);
        buf.drain(..n1 + r1.content_length);
        let (r2, n2) = complete(&buf);
        assert_eq!(r2.path, "/health");
        assert_eq!(r2.query, "");
        assert!(!r2.keep_alive);
        assert_eq!(n2, buf.len());
    }

    #[test]
    fn incomplete_at_every_split_point() {
        for req in [UPGRADE, POST] {
            let (full, n) = complete(req);
            for split in 0..n {
                assert_eq!(parse(&req[..split]), Ok(None), "split {split}");
            }
            let (again, n2) = complete(&req[..n]);
            assert_eq!((again, n2), (full, n));
        }
    }

    #[test]
    fn oversize_headers() {
        let limits = Limits {
            max_header_bytes: 64,
            max_body_bytes: 10,
        };
        // Incomplete and already past the limit.
        let mut buf = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        buf.extend(std::iter::repeat_n(b'a', 100));
        let e = parse_request(&buf, &limits).unwrap_err();
        assert_eq!(e, HttpError::HeadersTooLarge(64));
        assert_eq!(e.status(), 431);
        // Complete in one read but past the limit.
        buf.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            parse_request(&buf, &limits),
            Err(HttpError::HeadersTooLarge(64))
        );
        // Too many headers.
        let mut buf = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            buf.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        buf.extend_from_slice(b"\r\n");
        let e = parse(&buf).unwrap_err();
        assert_eq!((e.clone(), e.status()), (HttpError::TooManyHeaders, 431));
    }

    #[test]
    fn bad_request_line() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"G\x01T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status(), 400, "{e:?}");
        }
        let e = parse(b"GET / HTTP/2.0\r\n\r\n").unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (HttpError::UnsupportedVersion, 505)
        );
    }

    #[test]
    fn chunked_and_transfer_encoding() {
        let e = parse(b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (HttpError::ChunkedNotSupported, 411)
        );
        // Smuggling shape: both CL and TE.
        let e = parse(
            b"POST /x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(e.status(), 411);
        let e = parse(b"POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (HttpError::UnsupportedTransferEncoding, 501)
        );
    }

    #[test]
    fn content_length_validation() {
        let limits = Limits {
            max_header_bytes: 1024,
            max_body_bytes: 100,
        };
        let req = |cl: &str| format!("POST /x HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
        let e = parse_request(req("101").as_bytes(), &limits).unwrap_err();
        assert_eq!(e, HttpError::PayloadTooLarge { len: 101, max: 100 });
        assert_eq!(e.status(), 413);
        let e = parse_request(req("99999999999999999999999999").as_bytes(), &limits).unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (HttpError::InvalidContentLength, 400)
        );
        for bad in ["-1", "+5", "5, 5", "0x10", "1 2", ""] {
            let e = parse_request(req(bad).as_bytes(), &limits).unwrap_err();
            assert_eq!(e, HttpError::InvalidContentLength, "{bad:?}");
        }
        let dup = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n";
        let e = parse_request(dup, &limits).unwrap_err();
        assert_eq!(
            (e.clone(), e.status()),
            (HttpError::DuplicateContentLength, 400)
        );
        let (r, _) = parse_request(req("100").as_bytes(), &limits)
            .unwrap()
            .unwrap();
        assert_eq!(r.content_length, 100);
    }

    #[test]
    fn keep_alive_semantics() {
        let cases: [(&[u8], bool); 6] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (
                b"GET / HTTP/1.1\r\nConnection: Keep-Alive, CLOSE\r\n\r\n",
                false,
            ),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        ];
        for (req, ka) in cases {
            let (r, _) = complete(req);
            assert_eq!(r.keep_alive, ka, "{}", String::from_utf8_lossy(req));
        }
        assert_eq!(complete(b"GET / HTTP/1.0\r\n\r\n").0.version, 0);
    }

    #[test]
    fn methods_and_segments() {
        for (m, want) in [
            ("GET", Method::Get),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("HEAD", Method::Head),
            ("OPTIONS", Method::Options),
            ("PATCH", Method::Other("PATCH".into())),
        ] {
            let (r, _) = complete(format!("{m} //apps//1/channels/ HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!(r.method, want);
            assert_eq!(r.method.as_str(), m);
            assert_eq!(r.path, "//apps//1/channels/");
            assert_eq!(
                r.path_segments().collect::<Vec<_>>(),
                ["apps", "1", "channels"]
            );
        }
        // Raw path: no percent-decoding.
        let (r, _) = complete(b"GET /a%2Fb?x=%20 HTTP/1.1\r\n\r\n");
        assert_eq!((r.path.as_str(), r.query.as_str()), ("/a%2Fb", "x=%20"));
    }

    #[test]
    fn headers_generic_access() {
        let (r, _) = complete(
            b"GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nUser-Agent: t\xffx\r\n\r\n",
        );
        let h = &r.headers;
        assert_eq!(h.x_forwarded_for(), Some("1.1.1.1"));
        assert_eq!(
            h.get_all("X-FORWARDED-FOR").collect::<Vec<_>>(),
            ["1.1.1.1", "2.2.2.2"]
        );
        assert_eq!(h.user_agent(), Some("t\u{fffd}x"));
        assert_eq!(h.get("missing"), None);
        assert_eq!(
            h.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["x-forwarded-for", "x-forwarded-for", "user-agent"]
        );
    }
}
