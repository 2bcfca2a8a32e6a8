//! Draining on SIGTERM over the real binary: `/up` and new upgrades answer 503 first, existing connections keep
//! being served through `shutdown_grace_period`, then they are closed with 4200 and the process exits 0.

mod common;

use common::{Server, ServerOptions, APP_KEY};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn upgrade_status(port: u16) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!(
        "GET /app/{APP_KEY}?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[test]
fn sigterm_answers_503_first_keeps_serving_then_closes_4200() {
    let mut server = Server::start_with(ServerOptions {
        env: vec![("SHUTDOWN_GRACE_PERIOD".into(), "2".into())],
        ..Default::default()
    });
    let mut client = server.client();
    client.subscribe("news");
    assert_eq!(server.try_http("GET", "/up", b"").unwrap().0, 200);

    let sent = Instant::now();
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGTERM);
    }
    let draining_seen = loop {
        let (status, _, body) = server
            .try_http("GET", "/up", b"")
            .expect("/up while draining");
        if status == 503 {
            assert_eq!(body, "DRAINING");
            break Instant::now();
        }
        assert!(
            sent.elapsed() < Duration::from_secs(1),
            "/up still {status} after 1 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let (status, text) = upgrade_status(server.port);
    assert_eq!(status, 503, "a new WebSocket while draining: {text}");
    assert!(text.ends_with("DRAINING"), "{text}");

    // The connection that was there keeps receiving events during the grace period.
    server.publish(&["news"], "still-here", "{}");
    assert_eq!(client.next_event()["event"], "still-here");

    assert_eq!(client.close_code(), Some(4200));
    let closed = Instant::now();
    assert!(draining_seen < closed);
    assert!(
        closed - sent >= Duration::from_millis(1500),
        "closed {:?} after SIGTERM, before the grace period",
        closed - sent
    );
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("exited after the drain");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_signal_closes_at_once() {
    let mut server = Server::start_with(ServerOptions {
        env: vec![("SHUTDOWN_GRACE_PERIOD".into(), "30".into())],
        ..Default::default()
    });
    let mut client = server.client();
    let sent = Instant::now();
    unsafe {
        libc::kill(server.pid() as i32, libc::SIGTERM);
    }
    while server.try_http("GET", "/up", b"").map(|r| r.0).unwrap_or(0) != 503 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = server
        .terminate(Duration::from_secs(10))
        .expect("the second SIGTERM stops it");
    assert!(status.success(), "{status:?}");
    assert_eq!(client.close_code(), Some(4200));
    assert!(sent.elapsed() < Duration::from_secs(10));
}
