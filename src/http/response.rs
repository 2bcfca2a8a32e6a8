//! Minimal HTTP/1.1 response builder for the REST API and error replies.
//!
//! Always length-delimited (`Content-Length`), never chunked, so a
//! keep-alive client always knows where the response ends.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Rarely more than one or two (CORS, Allow); an empty Vec does not
    /// allocate.
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
}

/// Reason phrase for the statuses this server sends; empty for others,
/// which HTTP/1.1 permits (clients ignore the phrase).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// `body` must already be serialized JSON.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    /// `{"error":"<message>"}`, the shape Pusher REST clients expect.
    pub fn error(status: u16, message: &str) -> Self {
        let mut body = Vec::with_capacity(message.len() + 12);
        body.extend_from_slice(b"{\"error\":");
        push_json_string(&mut body, message);
        body.push(b'}');
        Self::json(status, body)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Append the full response (head and body) to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>, keep_alive: bool) {
        let extra: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum();
        out.reserve(96 + self.content_type.len() + extra + self.body.len());
        out.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(out, usize::from(self.status));
        out.push(b' ');
        out.extend_from_slice(reason_phrase(self.status).as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        push_decimal(out, self.body.len());
        out.extend_from_slice(if keep_alive {
            b"\r\nConnection: keep-alive\r\n"
        } else {
            b"\r\nConnection: close\r\n"
        });
        for (name, value) in &self.headers {
            push_header_text(out, name);
            out.extend_from_slice(b": ");
            push_header_text(out, value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }

    pub fn bytes(&self, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out, keep_alive);
        out
    }
}

/// Header text minus CR/LF, so a value echoed from a request (e.g. an
/// Origin for CORS) can never inject headers or split the response.
fn push_header_text(out: &mut Vec<u8>, s: &str) {
    out.extend(s.bytes().filter(|&b| b != b'\r' && b != b'\n'));
}

fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keep_alive_exact() {
        let r = Response::json(200, "{}");
        assert_eq!(
            r.bytes(true),
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
        );
    }

    #[test]
    fn error_close_with_headers_exact() {
        let r = Response::error(413, "too \"big\"\n")
            .with_header("Access-Control-Allow-Origin", "*")
            .with_header("X-Evil", String::from("a\r\nSet-Cookie: x"));
        let mut out = b"previous".to_vec();
        r.write_to(&mut out, false);
        assert_eq!(
            out,
            &b"previousHTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: 25\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\nX-Evil: aSet-Cookie: x\r\n\r\n{\"error\":\"too \\\"big\\\"\\n\"}"[..]
        );
        assert_eq!(r.body.len(), 25);
    }

    #[test]
    fn text_and_unknown_status() {
        let r = Response::text(299, "ok");
        assert_eq!(
            r.bytes(true),
            b"HTTP/1.1 299 \r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
        );
        for s in [
            101, 200, 400, 401, 403, 404, 405, 411, 413, 429, 431, 500, 503,
        ] {
            assert!(!reason_phrase(s).is_empty(), "{s}");
        }
    }

    #[test]
    fn error_json_escapes_control_chars() {
        let r = Response::error(400, "a\u{1}b\\");
        assert_eq!(r.body, br#"{"error":"a\u0001b\\"}"#);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(v["error"], "a\u{1}b\\");
    }

    #[test]
    fn decimal_lengths() {
        let r = Response::json(200, vec![b' '; 1_234_567]);
        let b = r.bytes(false);
        assert!(b.windows(24).any(|w| w == b"Content-Length: 1234567\r"));
    }
}
