//! The metrics port: a plain thread (not a shard) answering `GET /metrics` and `GET /usage`.
//!
//! Each scrape is served on a short-lived thread of its own, at most [`MAX_CLIENTS`] at once, and each has
//! [`REQUEST_DEADLINE`] in all to send its request and take the answer: a client trickling bytes cannot hold the
//! endpoint, and a flood of them cannot take more than a few threads. When all [`MAX_CLIENTS`] are busy, a new
//! client takes the place of the oldest one (whose socket is cut): a real scrape is answered in milliseconds, so the
//! oldest is almost always a client that is holding its connection, and a few of those cannot lock scrapes out.

use super::{usage::Usage, MetricsRegistry};
use crate::http::{self, Method, Response};
use anyhow::Context;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Content type of the Prometheus text format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How long one client may take, in all, to send its request and read the answer.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Clients served at once; one more takes the place of the oldest.
pub const MAX_CLIENTS: usize = 16;

/// Threads alive at once, counting those of cut clients that have not noticed yet; a client beyond this is answered
/// 503 at once.
const MAX_THREADS: usize = 2 * MAX_CLIENTS;

/// The clients being served, oldest first: an id and a handle on the socket to cut it.
#[derive(Default)]
struct Inflight {
    next_id: u64,
    clients: VecDeque<(u64, TcpStream)>,
}

impl Inflight {
    /// Registers a client, first cutting the oldest when [`MAX_CLIENTS`] are served; returns the new client's id.
    fn admit(&mut self, handle: TcpStream) -> u64 {
        if self.clients.len() >= MAX_CLIENTS {
            if let Some((_, oldest)) = self.clients.pop_front() {
                tracing::debug!(peer = ?oldest.peer_addr().ok(), "metrics: cutting the oldest client for a new one");
                // Wakes its thread, blocked in a read or a write, with end-of-file or an error.
                let _ = oldest.shutdown(Shutdown::Both);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.clients.push_back((id, handle));
        id
    }

    /// A client is done (or was cut).
    fn remove(&mut self, id: u64) {
        self.clients.retain(|(c, _)| *c != id);
    }
}

/// Binds the metrics port; start-up fails with this error when it cannot.
pub fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(addr.as_str()).with_context(|| {
        format!("cannot listen for metrics on {addr} (metrics.host:metrics.port / METRICS_HOST, METRICS_PORT)")
    })
}

/// Serves `listener` on a new thread for the life of the process.
pub fn spawn(listener: TcpListener, registry: Arc<MetricsRegistry>) -> anyhow::Result<()> {
    let addr = listener.local_addr().ok();
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            tracing::info!(addr = ?addr, "metrics serving");
            let active = Arc::new(AtomicUsize::new(0));
            let inflight = Arc::new(Mutex::new(Inflight::default()));
            for stream in listener.incoming() {
                match stream {
                    Ok(s) => dispatch(s, &registry, &active, &inflight),
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
        .context("cannot spawn the metrics thread")?;
    Ok(())
}

/// Hands one client to a thread of its own (cutting the oldest client when [`MAX_CLIENTS`] are served), or answers
/// 503 when [`MAX_THREADS`] are still alive.
fn dispatch(
    mut stream: TcpStream,
    registry: &Arc<MetricsRegistry>,
    active: &Arc<AtomicUsize>,
    inflight: &Arc<Mutex<Inflight>>,
) {
    if active.fetch_add(1, Ordering::AcqRel) >= MAX_THREADS {
        active.fetch_sub(1, Ordering::AcqRel);
        let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
        let mut out = Vec::new();
        Response::error(503, "Too many metrics clients").write_to(&mut out, false);
        let _ = stream.write_all(&out);
        return;
    }
    let handle = match stream.try_clone() {
        Ok(h) => h,
        Err(e) => {
            active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(error = %e, "metrics: cannot clone a client socket");
            return;
        }
    };
    let id = lock(inflight).admit(handle);
    let (registry, done, list) = (registry.clone(), active.clone(), inflight.clone());
    let spawned = std::thread::Builder::new()
        .name("metrics-client".into())
        .spawn(move || {
            if let Err(e) = serve(stream, &registry) {
                tracing::debug!(error = %e, "metrics request failed");
            }
            lock(&list).remove(id);
            done.fetch_sub(1, Ordering::AcqRel);
        });
    if let Err(e) = spawned {
        lock(inflight).remove(id);
        active.fetch_sub(1, Ordering::AcqRel);
        tracing::warn!(error = %e, "cannot spawn a metrics client thread");
    }
}

/// The client list, even if a client thread panicked while holding it (the list stays consistent).
fn lock(inflight: &Mutex<Inflight>) -> std::sync::MutexGuard<'_, Inflight> {
    inflight
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Time left before `deadline`, or a timed-out error.
fn left(deadline: Instant) -> std::io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| std::io::ErrorKind::TimedOut.into())
}

fn serve(mut stream: TcpStream, registry: &MetricsRegistry) -> std::io::Result<()> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let limits = http::Limits {
        max_header_bytes: 16 * 1024,
        max_body_bytes: 0,
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let resp = loop {
        match http::parse_request(&buf, &limits) {
            Ok(Some((req, _))) => break answer(&req.method, &req.path, registry),
            Ok(None) => {}
            Err(e) => break Response::error(e.status(), &e.to_string()),
        }
        // The deadline covers the whole request, not each read: trickled bytes do not extend it.
        stream.set_read_timeout(Some(left(deadline)?))?;
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let mut out = Vec::with_capacity(resp.body.len() + 256);
    resp.write_to(&mut out, false);
    stream.set_write_timeout(Some(left(deadline)?))?;
    stream.write_all(&out)?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

/// The response to one request on the metrics port.
pub fn answer(method: &Method, path: &str, registry: &MetricsRegistry) -> Response {
    match (method, path) {
        (Method::Get, "/metrics") => Response::new(200, TEXT_FORMAT, registry.render()),
        (Method::Get, "/usage") => Response::json(200, Usage::now(registry).to_json()),
        (_, "/metrics" | "/usage") => {
            Response::error(405, "Method not allowed").with_header("Allow", "GET")
        }
        _ => Response::error(404, "Not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_metrics_usage_and_404() {
        let r = MetricsRegistry::new(
            1,
            {
                let slots = Arc::new(crate::app::AppSlots::default());
                slots.intern("1");
                slots
            },
            "sockudo_",
        );
        let m = answer(&Method::Get, "/metrics", &r);
        assert_eq!(m.status, 200);
        assert_eq!(m.content_type, TEXT_FORMAT);
        assert!(String::from_utf8_lossy(&m.body).contains("sockudo_connected{app_id=\"1\"} 0"));
        let u = answer(&Method::Get, "/usage", &r);
        assert_eq!(u.status, 200);
        assert_eq!(answer(&Method::Get, "/nope", &r).status, 404);
    }

    #[test]
    fn a_new_client_takes_the_place_of_the_oldest() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut inflight = Inflight::default();
        let mut ids = Vec::new();
        let mut peers = Vec::new();
        for _ in 0..=MAX_CLIENTS {
            let client = TcpStream::connect(addr).unwrap();
            let (server_side, _) = listener.accept().unwrap();
            ids.push(inflight.admit(server_side));
            peers.push(client);
        }
        assert_eq!(inflight.clients.len(), MAX_CLIENTS);
        assert_eq!(inflight.clients.front().map(|c| c.0), Some(ids[1]));
        // The oldest was cut: its peer reads end-of-stream.
        peers[0]
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(peers[0].read(&mut [0u8; 8]).unwrap(), 0);
        inflight.remove(ids[5]);
        assert_eq!(inflight.clients.len(), MAX_CLIENTS - 1);
        assert!(inflight.clients.iter().all(|c| c.0 != ids[5]));
    }

    #[test]
    fn serves_over_tcp() {
        let listener = bind("127.0.0.1", 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        spawn(
            listener,
            Arc::new(MetricsRegistry::new(1, Default::default(), "x_")),
        )
        .unwrap();
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.contains("x_ws_messages_sent_total 0"), "{text}");
    }
}
