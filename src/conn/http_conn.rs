//! The first phase of every TCP connection: HTTP/1.1 requests on the shared port.
//!
//! `GET /app/{key}` with upgrade headers becomes a WebSocket; everything else is answered by the REST router,
//! with keep-alive and pipelining (requests are parsed out of one buffer in order).
//!
//! Nothing waits without a deadline: a request head must arrive within `http_api.header_timeout`, its body within
//! `body_timeout`, the next request on a kept-alive connection within `keep_alive_timeout` (which also bounds
//! writing a response). A REST request is authenticated from its head before its body is read, so an unsigned
//! or oversized body is refused without being buffered.

use crate::conn::stream::Stream;
use crate::http::{self, Response};
use crate::metrics::Route;
use crate::rest::{self, Admission};
use crate::shard::Shard;
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite, AsyncWriteExt, Future};
use glommio::timer::Timer;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// The HTTP-phase deadlines, from `http_api`.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    header: Duration,
    body: Duration,
    keep_alive: Duration,
}

/// Why reading stopped.
enum ReadEnd {
    /// The peer closed or the socket failed.
    Closed,
    /// The deadline passed first.
    TimedOut,
}

/// Serves one accepted TCP connection until it closes or becomes a WebSocket.
pub async fn serve(shard: Rc<Shard>, mut stream: Stream) {
    let cfg = &shard.config.http_api;
    let limits = http::Limits {
        max_header_bytes: cfg.max_header_bytes,
        max_body_bytes: cfg.request_limit_in_mb * 1024 * 1024,
    };
    let timeouts = Timeouts {
        header: Duration::from_secs(cfg.header_timeout),
        body: Duration::from_secs(cfg.body_timeout),
        keep_alive: Duration::from_secs(cfg.keep_alive_timeout),
    };
    let mut buf: Vec<u8> = Vec::new();
    // A new connection has the header timeout to send its first request; after a response the keep-alive
    // timeout applies until the next request starts, then the header timeout again.
    let mut deadline = Instant::now() + timeouts.header;
    let mut idle = false;
    loop {
        let parsed = http::parse_request(&buf, &limits);
        match parsed {
            Ok(Some((req, header_len))) => {
                if req.path.starts_with("/app/") && req.method == http::Method::Get {
                    if let Err(e) = req.check_websocket_upgrade() {
                        let mut resp = Response::error(e.status(), &e.to_string());
                        if e.status() == 426 {
                            resp = resp.with_header("Sec-WebSocket-Version", "13");
                        }
                        answer_and_close(&shard, &mut stream, &resp, header_len, timeouts).await;
                        return;
                    }
                    if shard.is_shutting_down() {
                        // Draining: refuse before the upgrade, so the client (or its load balancer) goes elsewhere.
                        let resp = Response::text(503, "DRAINING").with_header("Retry-After", "1");
                        answer_and_close(&shard, &mut stream, &resp, header_len, timeouts).await;
                        return;
                    }
                    let leftover = buf.split_off(header_len);
                    crate::conn::websocket::upgrade(shard, stream, req, leftover).await;
                    return;
                }
                let admission = match rest::admit(&shard, &req).await {
                    Ok(a) => a,
                    Err(resp) => {
                        // The body (if any) is never buffered: answer and close, discarding what the client is
                        // already sending for a moment so that it reads the answer instead of a reset.
                        answer_and_close(&shard, &mut stream, &resp, header_len, timeouts).await;
                        let unread = (header_len + req.content_length).saturating_sub(buf.len());
                        discard_briefly(&shard, &mut stream, unread).await;
                        return;
                    }
                };
                // A route that takes no body does not get one read either.
                let takes_body = matches!(admission, Admission::Api(_));
                let body_len = if takes_body { req.content_length } else { 0 };
                let need = header_len + body_len;
                if buf.len() < need && req.headers.has_token("expect", "100-continue") {
                    // The head passed every check: invite the body (curl waits a second for this otherwise).
                    let invite = b"HTTP/1.1 100 Continue\r\n\r\n";
                    let deadline = Instant::now() + timeouts.keep_alive;
                    if write_all_until(&mut stream, invite, deadline)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                let body_deadline = Instant::now() + timeouts.body;
                while buf.len() < need {
                    match read_into(&shard, &mut stream, &mut buf, body_deadline).await {
                        Ok(_) => {}
                        Err(ReadEnd::TimedOut) => {
                            let resp = Response::error(408, "Request body not received in time");
                            answer_and_close(&shard, &mut stream, &resp, buf.len(), timeouts).await;
                            return;
                        }
                        Err(ReadEnd::Closed) => return,
                    }
                }
                let started = Instant::now();
                let keep_alive =
                    req.keep_alive && !shard.is_shutting_down() && body_len == req.content_length;
                let resp = rest::handle(&shard, &req, admission, &buf[header_len..need]).await;
                let sent = write_response(&mut stream, &shard, &resp, keep_alive, timeouts).await;
                let route = Route::of(&req.path);
                let (took, out) = (started.elapsed(), *sent.as_ref().unwrap_or(&0));
                shard.metrics.http_call(route, resp.status, took, need, out);
                if sent.is_err() || !keep_alive {
                    if sent.is_ok() && body_len < req.content_length {
                        // A body the route does not take was not read: drop it for a moment before closing, so
                        // the client reads the answer instead of a reset.
                        let unread = (header_len + req.content_length).saturating_sub(buf.len());
                        discard_briefly(&shard, &mut stream, unread).await;
                    }
                    return;
                }
                buf.drain(..need);
                idle = buf.is_empty();
                deadline = Instant::now()
                    + if idle {
                        timeouts.keep_alive
                    } else {
                        timeouts.header
                    };
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let resp = Response::error(e.status(), &e.to_string());
                answer_and_close(&shard, &mut stream, &resp, buf.len(), timeouts).await;
                return;
            }
        }
        match read_into(&shard, &mut stream, &mut buf, deadline).await {
            Ok(_) => {
                if idle {
                    // The next request has started: it gets the whole header timeout.
                    idle = false;
                    deadline = Instant::now() + timeouts.header;
                }
            }
            Err(ReadEnd::TimedOut) if !idle => {
                let resp = Response::error(408, "Request head not received in time");
                answer_and_close(&shard, &mut stream, &resp, buf.len(), timeouts).await;
                return;
            }
            // An idle keep-alive connection is closed without a word, as every HTTP server does.
            Err(_) => return,
        }
    }
}

/// Sends `resp` with `Connection: close`, counts it, and closes.
async fn answer_and_close(
    shard: &Shard,
    stream: &mut Stream,
    resp: &Response,
    received: usize,
    timeouts: Timeouts,
) {
    let started = Instant::now();
    let sent = write_response(stream, shard, resp, false, timeouts).await;
    let sent = sent.unwrap_or(0);
    shard
        .metrics
        .http_call(Route::Other, resp.status, started.elapsed(), received, sent);
}

/// How long a refused request's body is read and thrown away before the socket is closed.
const DISCARD_FOR: Duration = Duration::from_secs(2);

/// Reads and drops up to `bytes` (or until the peer stops, or [`DISCARD_FOR`] passes): closing a socket with
/// unread input sends a reset, which can destroy the answer before the client reads it. Nothing is kept.
async fn discard_briefly(shard: &Shard, stream: &mut Stream, bytes: usize) {
    let deadline = Instant::now() + DISCARD_FOR;
    let mut left = bytes;
    let mut sink = Vec::new();
    while left > 0 {
        match read_into(shard, stream, &mut sink, deadline).await {
            Ok(n) => left = left.saturating_sub(n),
            Err(_) => return,
        }
        sink.clear();
    }
}

/// Reads what the socket has through the shard's scratch buffer and appends it to `buf`: no read buffer lives in
/// the connection's task (it would also be copied into every spawned task). Gives up at `deadline`; the timer is
/// only set up when the read has to wait.
async fn read_into(
    shard: &Shard,
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<usize, ReadEnd> {
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| {
        let mut scratch = shard.read_scratch.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(ReadEnd::Closed)),
            Poll::Ready(Ok(n)) => {
                buf.extend_from_slice(&scratch[..n]);
                return Poll::Ready(Ok(n));
            }
            Poll::Pending => {}
        }
        let timer = timer
            .get_or_insert_with(|| Timer::new(deadline.saturating_duration_since(Instant::now())));
        match Pin::new(timer).poll(cx) {
            Poll::Ready(_) => Poll::Ready(Err(ReadEnd::TimedOut)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Writes `resp`; a client that does not take it within the keep-alive timeout is dropped.
async fn write_response(
    stream: &mut Stream,
    shard: &Shard,
    resp: &Response,
    keep_alive: bool,
    timeouts: Timeouts,
) -> std::io::Result<usize> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    resp.clone()
        .with_header("X-Sockudo-Shard", shard.id.to_string())
        .write_to(&mut out, keep_alive);
    write_all_until(stream, &out, Instant::now() + timeouts.keep_alive).await?;
    if !keep_alive {
        let _ = stream.close().await;
    }
    Ok(out.len())
}

/// Writes all of `bytes`, giving up at `deadline`; the timer is only set up when the socket is full.
async fn write_all_until(
    stream: &mut Stream,
    bytes: &[u8],
    deadline: Instant,
) -> std::io::Result<()> {
    let mut written = 0;
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| {
        let progress = loop {
            if written == bytes.len() {
                // A TLS stream may still hold the last records; a plain socket has nothing to flush.
                break Pin::new(&mut *stream).poll_flush(cx);
            }
            match Pin::new(&mut *stream).poll_write(cx, &bytes[written..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()))
                }
                Poll::Ready(Ok(n)) => written += n,
                other => break other.map(|r| r.map(|_| ())),
            }
        };
        match progress {
            Poll::Pending => {
                let timer = timer.get_or_insert_with(|| {
                    Timer::new(deadline.saturating_duration_since(Instant::now()))
                });
                match Pin::new(timer).poll(cx) {
                    Poll::Ready(_) => Poll::Ready(Err(std::io::ErrorKind::TimedOut.into())),
                    Poll::Pending => Poll::Pending,
                }
            }
            done => done,
        }
    })
    .await
}
