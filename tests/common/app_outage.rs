//! What a server whose apps come from a database does while the database is unreachable, and after it is back:
//! shared by the outage made with a proxy (`apps_db.rs`, every driver) and a really stopped PostgreSQL
//! (`apps_db_restart.rs`). The database holds the test app, already looked up, and `later` (`later-key`), never
//! looked up; the app cache TTL has run out.

use super::{eventually, Client, Server, APP_KEY};
use std::time::{Duration, Instant};

/// Opens a WebSocket with `key`: `Ok` on `pusher:connection_established`, else the close code.
pub fn connect(server: &Server, key: &str) -> Result<(), u16> {
    let (mut ws, _) = server.ws(&format!("/app/{key}?protocol=7"));
    loop {
        match ws.read().expect("read") {
            tungstenite::Message::Text(t) if t.as_str().contains("connection_established") => {
                return Ok(())
            }
            tungstenite::Message::Close(Some(frame)) => return Err(u16::from(frame.code)),
            tungstenite::Message::Close(None) => return Err(1005),
            _ => {}
        }
    }
}

/// During the outage: the cached app keeps connecting and delivering (to `subscriber`, joined to `up`), the
/// uncached one is refused at once (close 4101, REST 503 with `Retry-After: 1`) and `/up` reports it.
pub fn assert_cached_apps_serve_through_the_outage(server: &Server, subscriber: &mut Client) {
    for _ in 0..3 {
        assert_eq!(
            connect(server, APP_KEY),
            Ok(()),
            "a cached app keeps connecting"
        );
    }
    server.publish(&["up"], "during", "outage");
    assert_eq!(subscriber.next_event()["event"], "during");

    let t = Instant::now();
    assert_eq!(connect(server, "later-key"), Err(4101), "an uncached app");
    let (status, headers, body) = server.try_http("GET", "/apps/later/channels", b"").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(
        headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{headers}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "refused without hanging: {:?}",
        t.elapsed()
    );
    let (status, _, body) = server.try_http("GET", "/up", b"").unwrap();
    assert!(
        matches!((status, body.as_str()), (200, "DEGRADED") | (503, "ERROR")),
        "{status} {body}"
    );
}

/// Once the database is back: the uncached app connects and `/up` says `OK`, without a restart.
pub fn assert_recovers(server: &Server) {
    eventually(
        Duration::from_secs(20),
        "an uncached app connects once the database is back",
        || connect(server, "later-key").is_ok(),
    );
    eventually(
        Duration::from_secs(10),
        "/up says OK again",
        || matches!(server.try_http("GET", "/up", b""), Ok((200, _, ref b)) if b == "OK"),
    );
}
