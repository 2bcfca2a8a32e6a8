//! Slow consumers, shutdown and configuration errors: the process-level behaviour.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn slow_consumer_is_closed_4100_and_memory_stays_bounded() {
    let metrics_port = free_port();
    let server = Server::start_with(ServerOptions {
        env: vec![
            ("WEBSOCKET_MAX_MESSAGES".into(), "100".into()),
            ("METRICS_ENABLED".into(), "true".into()),
            ("METRICS_HOST".into(), "127.0.0.1".into()),
            ("METRICS_PORT".into(), metrics_port.to_string()),
        ],
        ..Default::default()
    });
    let mut slow = server.client();
    slow.subscribe("firehose");
    let mut fast = server.client();
    fast.subscribe("firehose");
    let before = rss_kb(server.pid());
    let data = "x".repeat(8 * 1024);
    // Up to ~32 MB offered to a client that reads nothing: more than the kernel's socket buffers plus the
    // 100-message queue. Publishing stops as soon as the server counts the slow consumer's 4100, so the client
    // reads its backlog well before the server gives up on the close handshake (5 s), however busy the machine.
    let closed_slow = || {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", metrics_port)).expect("metrics port");
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text.lines()
            .any(|l| l == "sockudo_slow_consumer_disconnections_total 1")
    };
    for i in 0..4000 {
        server.publish(&["firehose"], "e", &data);
        let _ = fast.next_event();
        if i % 20 == 19 && closed_slow() {
            break;
        }
    }
    assert!(closed_slow(), "the slow consumer was never closed");
    let after = rss_kb(server.pid());
    assert!(
        after < before + 20 * 1024,
        "RSS grew from {before} kB to {after} kB"
    );
    // The slow client finds its backlog and then the 4100 close.
    assert_eq!(slow.close_code(), Some(4100));
    // The healthy client is unaffected.
    server.publish(&["firehose"], "after", "ok");
    assert_eq!(fast.next_event()["event"], "after");
}

#[test]
fn sigterm_closes_clients_4200_and_exits_zero() {
    let mut server = Server::start_with(ServerOptions {
        env: vec![("SHUTDOWN_GRACE_PERIOD".into(), "1".into())],
        ..Default::default()
    });
    let mut clients: Vec<Client> = (0..6).map(|_| server.client()).collect();
    for c in clients.iter_mut() {
        c.subscribe("c");
    }
    let waiter = std::thread::spawn(move || {
        clients
            .iter_mut()
            .map(|c| c.close_code())
            .collect::<Vec<_>>()
    });
    let status = server
        .terminate(Duration::from_secs(15))
        .expect("server exited in time");
    assert!(status.success(), "exit status {status:?}");
    let codes = waiter.join().unwrap();
    assert!(codes.iter().all(|c| *c == Some(4200)), "{codes:?}");
}

#[test]
fn unknown_config_key_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("sockudo-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        json!({"app_manager":{"array":{"apps":[app_json(json!({"max_conections": 5}))]}}})
            .to_string(),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .arg("--config")
        .arg(&path)
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_conections"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .env_clear()
        .env("PORT", "abc")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT"));
}

#[test]
fn port_in_use_stops_the_process_with_a_message() {
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .env_clear()
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen"), "{stderr}");
}

#[test]
fn without_disconnect_on_buffer_full_a_slow_consumer_loses_messages_but_stays() {
    let server = Server::start_with(ServerOptions {
        env: vec![
            ("WEBSOCKET_MAX_MESSAGES".into(), "50".into()),
            ("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL".into(), "false".into()),
        ],
        ..Default::default()
    });
    let mut slow = server.client();
    slow.subscribe("firehose");
    let data = "x".repeat(8 * 1024);
    for i in 0..1500 {
        server.publish(&["firehose"], "e", &format!("{i}{data}"));
    }
    // Drain what was kept: some events were dropped, and the connection is still open.
    let mut received = 0;
    slow.ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    while let Ok(tungstenite::Message::Text(_)) = slow.ws.read() {
        received += 1;
    }
    slow.ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    server.publish(&["firehose"], "after", "ok");
    assert_eq!(slow.next_event()["event"], "after");
    assert!(received > 0 && received < 1500, "kept {received} of 1500");
    slow.send(json!({"event":"pusher:ping","data":{}}));
    assert_eq!(slow.next_event()["event"], "pusher:pong");
}
