//! A one-request HTTP/1.1 responder for transport tests.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Reads one request (head + `Content-Length` body) from `stream`, answers `status` with `headers` (each
/// `name: value\r\n`) and `body`, closes, and returns the request as text.
pub async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    status: &str,
    headers: &str,
    body: &str,
) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        buf.extend_from_slice(&chunk[..n]);
        if n == 0 || request_complete(&buf) {
            break;
        }
    }
    let answer = format!(
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(answer.as_bytes()).await;
    let _ = stream.shutdown().await;
    String::from_utf8_lossy(&buf).to_string()
}

fn request_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some(head_end) = text.find("\r\n\r\n") else {
        return false;
    };
    let len: usize = text[..head_end]
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    buf.len() >= head_end + 4 + len
}
