//! Hostile clients: what one connection can cost is bounded, nothing waits without a deadline, and the smaller
//! protocol gaps of issue #14 stay closed. Every test drives the real binary over loopback.

mod common;
use common::*;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A masked client frame with FIN set.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked_frame(0x80 | opcode, payload)
}

/// A masked client frame whose first byte (FIN, opcode) is `first`.
fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = [7u8, 1, 9, 3];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// The server's frames in `bytes`: (opcode, payload) until the bytes run out.
fn server_frames(bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let opcode = bytes[at] & 0x0f;
        let (len, head) = match bytes[at + 1] & 0x7f {
            126 if at + 4 <= bytes.len() => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 if at + 10 <= bytes.len() => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&bytes[at + 2..at + 10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n if n < 126 => (n as usize, 2),
            _ => break,
        };
        let Some(payload) = bytes.get(at + head..at + head + len) else {
            break;
        };
        frames.push((opcode, payload.to_vec()));
        at += head + len;
    }
    frames
}

/// Opens a raw WebSocket to the test app with a small receive buffer; returns the stream after the 101.
fn raw_websocket(server: &Server, recv_buf: usize) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(recv_buf).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", server.port).parse().unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut s: TcpStream = socket.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /app/{APP_KEY}?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// Reads until end-of-stream (or `within` passes); returns every byte.
fn read_all(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                eprintln!("read_all: {e} after {} bytes", out.len());
                break;
            }
        }
    }
    out
}

/// The close code of the close frame among `frames`, and the `pusher:error` just before it.
fn close_and_error(frames: &[(u8, Vec<u8>)]) -> (Option<u16>, Option<Value>) {
    let Some(i) = frames.iter().position(|(op, _)| *op == 8) else {
        return (None, None);
    };
    let code = frames[i]
        .1
        .get(..2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]));
    let error = i
        .checked_sub(1)
        .and_then(|j| serde_json::from_slice::<Value>(&frames[j].1).ok())
        .filter(|v| v["event"] == "pusher:error");
    (code, error)
}

#[test]
fn a_client_that_never_reads_its_replies_is_closed_4100_with_memory_bounded() {
    let server = Server::start_with(ServerOptions {
        shards: 1,
        env: vec![("WEBSOCKET_MAX_MESSAGES".into(), "100".into())],
        ..Default::default()
    });
    let mut s = raw_websocket(&server, 4096);
    let before = rss_kb(server.pid());
    // Each empty text frame is answered with a pusher:error, each ping frame with a pong, each pusher:ping
    // with a pusher:pong: 3 replies per 30 bytes sent.
    let mut burst = Vec::new();
    for _ in 0..2000 {
        burst.extend(client_frame(1, b""));
        burst.extend(client_frame(9, b"p"));
        burst.extend(client_frame(1, br#"{"event":"pusher:ping"}"#));
    }
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut sent = 0usize;
    // Without a bound this would queue ~3 replies per 30 bytes, without end; with it the server stops reading.
    while sent < 256 * 1024 * 1024 {
        match s.write_all(&burst) {
            Ok(()) => sent += burst.len(),
            Err(e) => {
                eprintln!("flood write: {e}");
                break;
            }
        }
    }
    assert!(
        sent < 256 * 1024 * 1024,
        "the server kept reading {sent} bytes from a client that never read"
    );
    eprintln!("flood: sent {sent} bytes");
    let during = rss_kb(server.pid());
    assert!(
        during < before + 32 * 1024,
        "RSS grew from {before} kB to {during} kB while flooded"
    );
    let frames = server_frames(&read_all(&mut s, Duration::from_secs(15)));
    eprintln!(
        "flood: {} frames back, RSS {before} -> {during} kB",
        frames.len()
    );
    let (code, error) = close_and_error(&frames);
    assert_eq!(
        code,
        Some(4100),
        "{} frames, last {:?}",
        frames.len(),
        frames.last()
    );
    let error = error.expect("pusher:error before the close");
    let data: Value = match &error["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    };
    assert_eq!(data["code"], 4100, "{error}");
    // The server is healthy afterwards and gave the connection's memory back.
    let mut ok = server.client();
    ok.subscribe("after");
    let after = rss_kb(server.pid());
    assert!(
        after < before + 16 * 1024,
        "RSS {after} kB after the flood, {before} kB before"
    );
}

#[test]
fn a_slow_subscriber_gets_pusher_error_before_its_4100_close() {
    let server = Server::start_with(ServerOptions {
        shards: 1,
        env: vec![("WEBSOCKET_MAX_MESSAGES".into(), "20".into())],
        ..Default::default()
    });
    let mut s = raw_websocket(&server, 4096);
    s.write_all(&client_frame(
        1,
        br#"{"event":"pusher:subscribe","data":{"channel":"firehose"}}"#,
    ))
    .unwrap();
    let mut fast = server.client();
    fast.subscribe("firehose");
    let data = "x".repeat(8 * 1024);
    for _ in 0..600 {
        server.publish(&["firehose"], "e", &data);
        let _ = fast.next_event();
    }
    let frames = server_frames(&read_all(&mut s, Duration::from_secs(15)));
    let (code, error) = close_and_error(&frames);
    assert_eq!(code, Some(4100));
    assert!(error.is_some(), "no pusher:error before the 4100 close");
}

/// Sends `request` on a fresh connection and reads the answer; returns (status, head, how long it took).
fn raw_http(server: &Server, request: &[u8], wait: Duration) -> (u16, String, Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let started = Instant::now();
    s.write_all(request).unwrap();
    let raw = read_all(&mut s, wait);
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text, started.elapsed())
}

#[test]
fn a_body_sent_to_a_route_that_takes_none_does_not_cost_the_answer() {
    // `/up` takes no body: the server answers without reading it and closes. Closing with 8 MiB unread would
    // send a reset that can destroy the answer (and fail the client's write) before the client reads it.
    let server = Server::start();
    for _ in 0..3 {
        let mut req = format!(
            "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            8 * 1024 * 1024
        )
        .into_bytes();
        req.extend(vec![b'x'; 8 * 1024 * 1024]);
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&req)
            .expect("the whole body is taken (and dropped)");
        let text = String::from_utf8_lossy(&read_all(&mut s, Duration::from_secs(5))).to_string();
        assert!(text.starts_with("HTTP/1.1 "), "no answer: {text:?}");
    }
}

#[test]
fn unsigned_or_oversized_bodies_are_refused_before_they_are_read() {
    let server = Server::start();
    let path = format!("/apps/{APP_ID}/events");
    // 10 MiB announced, not one byte sent: answered at once, the connection closed.
    for query in [
        String::new(),
        "auth_key=test-key&auth_timestamp=1&auth_version=1.0&auth_signature=00".to_string(),
    ] {
        let req =
            format!("POST {path}?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n");
        let (status, text, took) = raw_http(&server, req.as_bytes(), Duration::from_secs(5));
        assert_eq!(status, 401, "{text}");
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
    }
    // A client that sends its 3 MiB unsigned body right away still gets its 401.
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        3 * 1024 * 1024
    )
    .into_bytes();
    req.extend(vec![b'x'; 3 * 1024 * 1024]);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(&req);
    let text = String::from_utf8_lossy(&read_all(&mut s, Duration::from_secs(5))).to_string();
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    // Unknown app: 404 before the body.
    let req = "POST /apps/nope/events HTTP/1.1\r\nHost: x\r\nContent-Length: 10485760\r\n\r\n";
    assert_eq!(
        raw_http(&server, req.as_bytes(), Duration::from_secs(5)).0,
        404
    );
    // Correctly signed, but larger than this app's event limits can need: 413 before the body.
    let body = vec![b' '; 2 * 1024 * 1024];
    let query = signed_query("POST", &path, &body);
    let req = format!(
        "POST {path}?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (status, text, took) = raw_http(&server, req.as_bytes(), Duration::from_secs(5));
    assert_eq!(status, 413, "{text}");
    assert!(took < Duration::from_secs(3));
    // A signed head with a body that does not match its body_md5: 401 after the body.
    let good = br#"{"name":"e","channel":"c","data":"1"}"#;
    let query = signed_query("POST", &path, good);
    let evil = br#"{"name":"e","channel":"c","data":"2"}"#;
    let (status, _, body) = server
        .try_http("POST", &format!("{path}?{query}"), evil)
        .unwrap();
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("body_md5"), "{body}");
    // `Expect: 100-continue`: refused without the body being sent, or invited to send it once the head passed.
    let req = format!(
        "POST {path}?auth_key={APP_KEY} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000\r\n\r\n"
    );
    assert_eq!(
        raw_http(&server, req.as_bytes(), Duration::from_secs(5)).0,
        401
    );
    let query = signed_query("POST", &path, good);
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "POST {path}?{query} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        good.len()
    )
    .unwrap();
    let mut invite = [0u8; 25];
    s.read_exact(&mut invite).unwrap();
    assert_eq!(&invite, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(good).unwrap();
    let mut rest = String::new();
    s.read_to_string(&mut rest).unwrap();
    assert!(rest.starts_with("HTTP/1.1 200"), "{rest}");
    // And the real thing still works.
    server.publish(&["c"], "e", "1");
}

#[test]
fn one_signature_rule_lowercase_hex_and_auth_version_required() {
    let server = Server::start();
    let path = format!("/apps/{APP_ID}/channels");
    let query = signed_query("GET", &path, b"");
    let sig_at = query.find("auth_signature=").unwrap() + "auth_signature=".len();
    let upper = format!("{}{}", &query[..sig_at], query[sig_at..].to_uppercase());
    assert_ne!(upper, query);
    assert_eq!(
        server
            .try_http("GET", &format!("{path}?{query}"), b"")
            .unwrap()
            .0,
        200
    );
    let (status, _, body) = server
        .try_http("GET", &format!("{path}?{upper}"), b"")
        .unwrap();
    assert_eq!(status, 401, "{upper}: {body}");
    // Signed without auth_version: refused, naming it.
    let ts = now_unix().to_string();
    let to_sign = sockudo::protocol::rest_auth::string_to_sign(
        "GET",
        &path,
        [("auth_key", APP_KEY), ("auth_timestamp", ts.as_str())],
    );
    let sig = sockudo::protocol::auth::hmac_sha256_hex(APP_SECRET.as_bytes(), to_sign.as_bytes());
    let q = format!("auth_key={APP_KEY}&auth_timestamp={ts}&auth_signature={sig}");
    let (status, _, body) = server.try_http("GET", &format!("{path}?{q}"), b"").unwrap();
    assert_eq!(status, 401);
    assert!(body.contains("auth_version"), "{body}");
    // WebSocket: an uppercase channel signature is refused too.
    let mut c = server.client();
    let auth = channel_auth(&c.socket_id, "private-x", None);
    let (key, sig) = auth.split_once(':').unwrap();
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"private-x","auth":format!("{key}:{}", sig.to_uppercase())}}));
    assert_eq!(c.next_event()["event"], "pusher:error");
}

#[test]
fn half_sent_requests_and_idle_connections_are_closed_by_the_timeouts() {
    let server = Server::start_with(ServerOptions {
        env: vec![
            ("HTTP_API_HEADER_TIMEOUT".into(), "1".into()),
            ("HTTP_API_BODY_TIMEOUT".into(), "1".into()),
            ("HTTP_API_KEEP_ALIVE_TIMEOUT".into(), "1".into()),
        ],
        ..Default::default()
    });
    // Half a request line, and nothing at all: 408 after the header timeout.
    for partial in [&b"GET /up HT"[..], b""] {
        let (status, text, took) = raw_http(&server, partial, Duration::from_secs(6));
        assert_eq!(status, 408, "{partial:?}: {text}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }
    // A signed head whose body never completes: 408 after the body timeout.
    let path = format!("/apps/{APP_ID}/events");
    let body = br#"{"name":"e","channel":"c","data":"1"}"#;
    let query = signed_query("POST", &path, body);
    let req = format!(
        "POST {path}?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{{\"name\"",
        body.len()
    );
    let (status, text, took) = raw_http(&server, req.as_bytes(), Duration::from_secs(6));
    assert_eq!(status, 408, "{text}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // Trickling the head a byte at a time does not extend its deadline.
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let started = Instant::now();
    for b in b"GET /up HTTP/1.1\r\nHost: slow\r\n" {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        if started.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&read_all(&mut s, Duration::from_secs(3))).to_string();
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // A kept-alive connection that goes idle is closed after the keep-alive timeout.
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"GET /up HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let started = Instant::now();
    let text = String::from_utf8_lossy(&read_all(&mut s, Duration::from_secs(6))).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.contains("408"),
        "an idle connection is closed without a response: {text}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn metrics_answer_while_a_slow_client_holds_a_connection_and_bind_metrics_host() {
    let metrics_port = free_port();
    let server = Server::start_with(ServerOptions {
        env: vec![
            ("METRICS_ENABLED".into(), "true".into()),
            ("METRICS_HOST".into(), "127.0.0.2".into()),
            ("METRICS_PORT".into(), metrics_port.to_string()),
        ],
        ..Default::default()
    });
    let _ = &server;
    // Bound where metrics.host says, not on every address.
    assert!(TcpStream::connect(("127.0.0.1", metrics_port)).is_err());
    // A client trickling a byte every 300 ms for 3 s.
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.2", metrics_port)).unwrap();
        for b in b"GET /metrics HT".iter() {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    // And more clients holding connections open than the metrics port serves at once: each new scrape takes the
    // place of the oldest of them.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.2", metrics_port)).unwrap();
            s.write_all(b"G").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let started = Instant::now();
        let mut s = TcpStream::connect(("127.0.0.2", metrics_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    slow.join().unwrap();
    // The first one held was cut to make room: it reads end-of-stream (or a reset), not an answer.
    held[0]
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = held[0].read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
}

#[test]
fn per_connection_subscription_limit() {
    let server = Server::start_with(ServerOptions {
        env: vec![("WEBSOCKET_MAX_SUBSCRIPTIONS".into(), "5".into())],
        ..Default::default()
    });
    let mut c = server.client();
    for i in 0..5 {
        c.subscribe(&format!("c{i}"));
    }
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"c5"}}));
    let e = c.next_event();
    assert_eq!(e["event"], "pusher:error", "{e}");
    assert_eq!(e["data"]["code"], 4300, "{e}");
    assert_eq!(e["channel"], "c5", "{e}");
    // Leaving one makes room again.
    c.send(json!({"event":"pusher:unsubscribe","data":{"channel":"c0"}}));
    c.subscribe("c5");
}

#[test]
fn a_channel_named_twice_in_one_publish_is_delivered_once() {
    let server = Server::start();
    let mut c = server.client();
    c.subscribe("twice");
    server.publish(&["twice", "twice"], "e", "once");
    assert_eq!(c.next_event()["data"], "once");
    assert!(c.is_silent_for(Duration::from_millis(500)));
}

#[test]
fn subscribe_data_as_an_array_is_refused() {
    let server = Server::start();
    let mut c = server.client();
    c.send(json!({"event":"pusher:subscribe","data":["arr","x"]}));
    let e = c.next_event();
    assert_eq!(e["event"], "pusher:error", "{e}");
    assert!(c.is_silent_for(Duration::from_millis(300)));
    // No subscription was made: an event on "arr" does not arrive.
    server.publish(&["arr"], "e", "1");
    assert!(c.is_silent_for(Duration::from_millis(500)));
}

#[test]
fn upgrade_with_version_8_gets_426_and_a_bad_key_gets_400() {
    let server = Server::start();
    let upgrade = |version: &str, key: &str| {
        let req = format!(
            "GET /app/{APP_KEY} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n"
        );
        raw_http(&server, req.as_bytes(), Duration::from_secs(5))
    };
    let (status, text, _) = upgrade("8", "dGhlIHNhbXBsZSBub25jZQ==");
    assert_eq!(status, 426, "{text}");
    assert!(text.contains("Sec-WebSocket-Version: 13\r\n"), "{text}");
    for key in [
        "abc",
        "dGhlIHNhbXBsZSBub25jZQ",
        "!!!!!!!!!!!!!!!!!!!!!!==",
        "dGhlIHNhbXBsZSBub25jZQ==AAAA",
    ] {
        let (status, text, _) = upgrade("13", key);
        assert_eq!(status, 400, "{key}: {text}");
    }
    assert_eq!(upgrade("13", "AAAAAAAAAAAAAAAAAAAAAA==").0, 101);
}

#[test]
fn shutdown_close_4200_is_preceded_by_pusher_error() {
    // A grace period well inside the client's 10 s read timeout.
    let mut server = Server::start_with(ServerOptions {
        env: vec![("SHUTDOWN_GRACE_PERIOD".into(), "1".into())],
        ..ServerOptions::default()
    });
    let mut c = server.client();
    c.subscribe("c");
    let waiter = std::thread::spawn(move || {
        let e = c.next_event();
        (e, c.close_code())
    });
    std::thread::sleep(Duration::from_millis(100));
    server.terminate(Duration::from_secs(15)).expect("exited");
    let (e, code) = waiter.join().unwrap();
    assert_eq!(e["event"], "pusher:error", "{e}");
    assert_eq!(e["data"]["code"], 4200, "{e}");
    assert_eq!(code, Some(4200));
}

#[test]
fn a_message_in_more_than_1024_fragments_is_closed_1009() {
    let server = Server::start();
    // 1,024 frames in all (first + 1,022 continuations + final) make one message: it is answered.
    let mut s = raw_websocket(&server, 64 * 1024);
    let ping = br#"{"event":"pusher:ping"}"#;
    let mut within = masked_frame(0x01, &ping[..1]);
    for b in &ping[1..ping.len() - 1] {
        within.extend(masked_frame(0x00, &[*b]));
    }
    within.extend(std::iter::repeat_n(masked_frame(0x00, b""), 1024 - ping.len()).flatten());
    within.extend(masked_frame(0x80, &ping[ping.len() - 1..]));
    s.write_all(&within).unwrap();
    // One more continuation (1,025 frames): close 1009, and the connection ends.
    let mut over = masked_frame(0x01, b"");
    over.extend(std::iter::repeat_n(masked_frame(0x00, b""), 1024).flatten());
    s.write_all(&over).unwrap();
    let frames = server_frames(&read_all(&mut s, Duration::from_secs(10)));
    let texts: Vec<Value> = frames
        .iter()
        .filter(|(op, _)| *op == 1)
        .filter_map(|(_, p)| serde_json::from_slice(p).ok())
        .collect();
    assert!(
        texts.iter().any(|t| t["event"] == "pusher:pong"),
        "the 1,024-frame message was not answered: {texts:?}"
    );
    let (code, _) = close_and_error(&frames);
    assert_eq!(code, Some(1009), "{texts:?}");
}
