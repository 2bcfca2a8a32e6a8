//! WebSocket and REST over the Unix socket listener of the real binary, with a stale socket file at start, the
//! configured file mode, no TCP port, and the file removed at stop.

mod common;

use common::{app_json, signed_query, APP_ID, APP_KEY};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::Message;

struct UdsServer {
    child: Child,
    path: PathBuf,
    dir: PathBuf,
}

impl Drop for UdsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn http(path: &Path, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(path).expect("connect to the unix socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn read_event(ws: &mut tungstenite::WebSocket<UnixStream>) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            _ => continue,
        }
    }
}

fn start(tag: &str, port: u16) -> UdsServer {
    let dir = std::env::temp_dir().join(format!("sockudo-uds-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sockudo.sock");
    // A stale socket file left by a process that died: bound once, nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let config = dir.join("config.json");
    std::fs::write(
        &config,
        json!({"app_manager": {"array": {"apps": [app_json(json!({}))]}}}).to_string(),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .arg("--config")
        .arg(&config)
        .env_clear()
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "2")
        .env("METRICS_ENABLED", "false")
        .env("SHUTDOWN_GRACE_PERIOD", "1")
        .env("UNIX_SOCKET_ENABLED", "true")
        .env("UNIX_SOCKET_PATH", &path)
        .env("UNIX_SOCKET_PERMISSION_MODE", "600")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let server = UdsServer { child, path, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if UnixStream::connect(&server.path).is_ok()
            && http(&server.path, "GET", "/up", "").0 == 200
        {
            return server;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("server did not answer on {}", server.path.display());
}

#[test]
fn websocket_and_rest_over_the_unix_socket() {
    let port = common::free_port();
    let mut server = start("main", port);
    let mode = std::fs::metadata(&server.path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "with the unix socket on, the TCP port stays closed (as in Sockudo)"
    );

    let stream = UnixStream::connect(&server.path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, _) = tungstenite::client::client(
        format!("ws://localhost/app/{APP_KEY}?protocol=7&client=js&version=8.4.0"),
        stream,
    )
    .expect("websocket handshake over the unix socket");
    assert_eq!(
        read_event(&mut ws)["event"],
        "pusher:connection_established"
    );
    ws.send(Message::text(
        json!({"event": "pusher:subscribe", "data": {"channel": "uds", "auth": ""}}).to_string(),
    ))
    .unwrap();
    assert_eq!(
        read_event(&mut ws)["event"],
        "pusher_internal:subscription_succeeded"
    );

    let body = json!({"name": "hello", "channels": ["uds"], "data": "{}"}).to_string();
    let path = format!("/apps/{APP_ID}/events");
    let query = signed_query("POST", &path, body.as_bytes());
    assert_eq!(
        http(&server.path, "POST", &format!("{path}?{query}"), &body),
        (200, "{}".to_string())
    );
    assert_eq!(read_event(&mut ws)["event"], "hello");

    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(!server.path.exists(), "socket file removed at stop");
}
