//! The first phase of every TCP connection: HTTP/1.1 requests on the shared port.
//!
//! `GET /app/{key}` with upgrade headers becomes a WebSocket; everything else is answered by the REST router,
//! with keep-alive and pipelining (requests are parsed out of one buffer in order).

use crate::conn::stream::Stream;
use crate::http::{self, Response};
use crate::metrics::Route;
use crate::rest;
use crate::shard::Shard;
use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWriteExt};
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

/// Serves one accepted TCP connection until it closes or becomes a WebSocket.
pub async fn serve(shard: Rc<Shard>, mut stream: Stream) {
    let limits = http::Limits {
        max_header_bytes: shard.config.http_api.max_header_bytes,
        max_body_bytes: shard.config.http_api.request_limit_in_mb * 1024 * 1024,
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let parsed = http::parse_request(&buf, &limits);
        match parsed {
            Ok(Some((req, header_len))) => {
                if req.path.starts_with("/app/") && req.method == http::Method::Get {
                    if !req.is_websocket_upgrade() {
                        let started = Instant::now();
                        let resp = Response::error(400, "WebSocket upgrade required on /app/{key}");
                        let sent = write_response(&mut stream, &shard, &resp, false).await;
                        let sent = sent.unwrap_or(0);
                        let took = started.elapsed();
                        shard
                            .metrics
                            .http_call(Route::Other, 400, took, header_len, sent);
                        return;
                    }
                    if shard.is_shutting_down() {
                        // Draining: refuse before the upgrade, so the client (or its load balancer) goes elsewhere.
                        let started = Instant::now();
                        let resp = Response::text(503, "DRAINING").with_header("Retry-After", "1");
                        let sent = write_response(&mut stream, &shard, &resp, false).await;
                        let (took, sent) = (started.elapsed(), sent.unwrap_or(0));
                        shard
                            .metrics
                            .http_call(Route::Other, 503, took, header_len, sent);
                        return;
                    }
                    let leftover = buf.split_off(header_len);
                    crate::conn::websocket::upgrade(shard, stream, req, leftover).await;
                    return;
                }
                let need = header_len + req.content_length;
                while buf.len() < need {
                    match read_into(&shard, &mut stream, &mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
                let started = Instant::now();
                let keep_alive = req.keep_alive && !shard.is_shutting_down();
                let resp = rest::handle(&shard, &req, &buf[header_len..need]).await;
                let sent = write_response(&mut stream, &shard, &resp, keep_alive).await;
                let route = Route::of(&req.path);
                let (took, out) = (started.elapsed(), *sent.as_ref().unwrap_or(&0));
                shard.metrics.http_call(route, resp.status, took, need, out);
                if sent.is_err() || !keep_alive {
                    return;
                }
                buf.drain(..need);
                continue;
            }
            Ok(None) => {}
            Err(e) => {
                let started = Instant::now();
                let resp = Response::error(e.status(), &e.to_string());
                let sent = write_response(&mut stream, &shard, &resp, false).await;
                let took = started.elapsed();
                let (status, received) = (resp.status, buf.len());
                let sent = sent.unwrap_or(0);
                shard
                    .metrics
                    .http_call(Route::Other, status, took, received, sent);
                return;
            }
        }
        match read_into(&shard, &mut stream, &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Reads what the socket has through the shard's scratch buffer and appends it to `buf`: no read buffer lives in
/// the connection's task (it would also be copied into every spawned task).
async fn read_into(
    shard: &Shard,
    stream: &mut Stream,
    buf: &mut Vec<u8>,
) -> std::io::Result<usize> {
    poll_fn(|cx| {
        let mut scratch = shard.read_scratch.borrow_mut();
        match Pin::new(&mut *stream).poll_read(cx, &mut scratch[..]) {
            Poll::Ready(Ok(n)) => {
                buf.extend_from_slice(&scratch[..n]);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    })
    .await
}

async fn write_response(
    stream: &mut Stream,
    shard: &Shard,
    resp: &Response,
    keep_alive: bool,
) -> std::io::Result<usize> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    resp.clone()
        .with_header("X-Sockudo-Shard", shard.id.to_string())
        .write_to(&mut out, keep_alive);
    stream.write_all(&out).await?;
    if !keep_alive {
        let _ = stream.close().await;
    }
    Ok(out.len())
}
