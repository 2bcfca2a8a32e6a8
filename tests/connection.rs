//! Connection lifecycle over a real WebSocket (PROTOCOL.md 1.1-1.5).

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;
use tungstenite::Message;

#[test]
fn pusher_ping_gets_pusher_pong() {
    let server = Server::start();
    let mut c = server.client();
    assert!(c.socket_id.contains('.'));
    c.send(json!({"event":"pusher:ping","data":{}}));
    assert_eq!(c.next_event()["event"], "pusher:pong");
    // pysher sends data as a string
    c.send(json!({"event":"pusher:ping","data":""}));
    assert_eq!(c.next_event()["event"], "pusher:pong");
}

#[test]
fn websocket_ping_frame_gets_pong_frame() {
    let server = Server::start();
    let mut c = server.client();
    c.ws.send(Message::Ping(b"hi".to_vec().into())).unwrap();
    match c.ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"hi"),
        other => panic!("expected pong, got {other:?}"),
    }
}

#[test]
fn socket_ids_are_unique() {
    let server = Server::start();
    let ids: std::collections::HashSet<String> =
        (0..20).map(|_| server.client().socket_id).collect();
    assert_eq!(ids.len(), 20);
}

#[test]
fn unknown_app_key_gets_error_and_close_4001() {
    let server = Server::start();
    let (ws, _) = server.ws("/app/no-such-key?protocol=7");
    let mut c = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    let msg = c.next_event();
    assert_eq!(msg["event"], "pusher:error");
    assert_eq!(msg["data"]["code"], 4001);
    assert_eq!(c.close_code(), Some(4001));
}

#[test]
fn protocol_versions_are_checked() {
    let server = Server::start();
    let (ws, _) = server.ws(&format!("/app/{APP_KEY}?protocol=99"));
    let mut c = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    assert_eq!(c.next_event()["data"]["code"], 4007);
    assert_eq!(c.close_code(), Some(4007));

    let (ws, _) = server.ws(&format!("/app/{APP_KEY}?protocol=seven"));
    let mut c = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    assert_eq!(c.close_code(), Some(4006));

    // No protocol at all (k6 benchmarks, slanger specs): treated as 7.
    let (ws, _) = server.ws(&format!("/app/{APP_KEY}"));
    let mut c = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    assert_eq!(c.next_event()["event"], "pusher:connection_established");
}

#[test]
fn disabled_app_gets_4003_and_full_app_gets_4004() {
    let config = json!({"app_manager":{"array":{"apps":[
        app_json(json!({"max_connections": 2})),
        {"id":"9","key":"off-key","secret":"s","enabled":false}
    ]}}});
    let server = Server::start_with(ServerOptions {
        config,
        ..Default::default()
    });
    let (ws, _) = server.ws("/app/off-key");
    let mut c = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    assert_eq!(c.next_event()["data"]["code"], 4003);
    assert_eq!(c.close_code(), Some(4003));

    let _a = server.client();
    let b = server.client();
    let (ws, _) = server.ws(&format!("/app/{APP_KEY}"));
    let mut c = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    assert_eq!(c.next_event()["data"]["code"], 4004);
    assert_eq!(c.close_code(), Some(4004));
    // A slot frees up when a client leaves (on whatever shard it was).
    drop(b);
    std::thread::sleep(Duration::from_millis(300));
    let _c = server.client();
}

#[test]
fn binary_frames_and_bad_json_get_errors_but_keep_the_connection() {
    let server = Server::start();
    let mut c = server.client();
    c.ws.send(Message::Binary(vec![1, 2, 3].into())).unwrap();
    assert_eq!(c.next_event()["event"], "pusher:error");
    c.ws.send(Message::text("{not json")).unwrap();
    assert_eq!(c.next_event()["event"], "pusher:error");
    c.send(json!({"event":"pusher:subscribe"}));
    assert_eq!(c.next_event()["event"], "pusher:error");
    c.subscribe("still-alive");
}

#[test]
fn oversized_frame_closes_1009() {
    let server = Server::start_with(ServerOptions {
        env: vec![("WEBSOCKET_MAX_PAYLOAD_KB".into(), "1".into())],
        ..Default::default()
    });
    let mut c = server.client();
    let big = "x".repeat(2048);
    c.ws.send(Message::text(format!(
        "{{\"event\":\"pusher:ping\",\"data\":\"{big}\"}}"
    )))
    .unwrap();
    assert_eq!(c.close_code(), Some(1009));
}

#[test]
fn invalid_channel_names_get_errors_and_double_subscribe_is_ignored() {
    let server = Server::start();
    let mut c = server.client();
    for bad in ["", "has space", "#reserved", &"a".repeat(200)] {
        c.send(json!({"event":"pusher:subscribe","data":{"channel":bad}}));
        let msg = c.next_event();
        assert_eq!(msg["event"], "pusher:error", "channel {bad:?}: {msg}");
    }
    c.subscribe("ok-channel_=@,.;");
    c.send(json!({"event":"pusher:subscribe","data":{"channel":"ok-channel_=@,.;"}}));
    assert!(
        c.is_silent_for(Duration::from_millis(300)),
        "second subscribe must be ignored"
    );
}

#[test]
fn server_pings_idle_clients_and_closes_4201_without_pong() {
    let mut opts = ServerOptions::default();
    opts.config["activity_timeout"] = json!(1);
    opts.config["pong_timeout"] = json!(1);
    let server = Server::start_with(opts);
    let mut c = server.client();
    let msg = c.next_event();
    assert_eq!(msg["event"], "pusher:ping");
    // Answer once: the connection stays.
    c.send(json!({"event":"pusher:pong","data":{}}));
    assert_eq!(c.next_event()["event"], "pusher:ping");
    // Stay silent: closed with 4201.
    assert_eq!(c.close_code(), Some(4201));
}

#[test]
fn http_garbage_gets_4xx_and_unknown_paths_404() {
    let server = Server::start();
    let (status, _, _) = server.try_http("GET", "/nope", b"").unwrap();
    assert_eq!(status, 404);
    let (status, _, body) = server.try_http("GET", "/up", b"").unwrap();
    assert_eq!((status, body.as_str()), (200, "OK"));
    let (status, _, _) = server
        .try_http("GET", &format!("/up/{APP_ID}"), b"")
        .unwrap();
    assert_eq!(status, 200);
    let (status, _, _) = server.try_http("GET", "/up/999999", b"").unwrap();
    assert_eq!(status, 404);
    // A plain GET on the WebSocket path without upgrade headers.
    let (status, _, _) = server
        .try_http("GET", &format!("/app/{APP_KEY}"), b"")
        .unwrap();
    assert_eq!(status, 400);
    // Raw garbage.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // Headers too large.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let huge = format!(
        "GET /up HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = s.write_all(huge.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
}
