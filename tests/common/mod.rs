//! Test harness: runs the real `sockudo` binary on a free loopback port and talks to it with real clients.
#![allow(dead_code)]

pub mod app_outage;
pub mod broker;
pub mod presence;

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

pub const APP_ID: &str = "123";
pub const APP_KEY: &str = "test-key";
pub const APP_SECRET: &str = "test-secret";

/// A running server process, stopped with SIGTERM (then killed) when dropped.
pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub dir: std::path::PathBuf,
}

pub fn free_port() -> u16 {
    // Take a port from the kernel and hope nobody grabs it before the server binds it.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// The default test app config (flat Sockudo shape), with `extra` merged into the app record.
pub fn app_json(extra: Value) -> Value {
    let mut app = serde_json::json!({
        "id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, "enabled": true,
        "enable_client_messages": true
    });
    if let (Some(a), Some(e)) = (app.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            a.insert(k.clone(), v.clone());
        }
    }
    app
}

pub struct ServerOptions {
    pub shards: usize,
    pub config: Value,
    pub env: Vec<(String, String)>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            shards: 2,
            config: serde_json::json!({ "app_manager": { "array": { "apps": [app_json(serde_json::json!({}))] } } }),
            env: Vec::new(),
        }
    }
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(ServerOptions::default())
    }

    pub fn start_with(opts: ServerOptions) -> Server {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("sockudo-test-{}-{}", std::process::id(), port));
        std::fs::create_dir_all(&dir).unwrap();
        let config_path = dir.join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&opts.config).unwrap(),
        )
        .unwrap();
        let mut cmd = Command::new(
            std::env::var_os("SOCKUDO_TEST_BIN").unwrap_or(env!("CARGO_BIN_EXE_sockudo").into()),
        );
        cmd.arg("--config")
            .arg(&config_path)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("SHARDS", opts.shards.to_string())
            .env("METRICS_ENABLED", "false")
            .env(
                "RUST_LOG",
                std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn sockudo");
        let server = Server {
            child: Some(child),
            port,
            dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _, _)) = self.try_http("GET", "/up", b"") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server on port {} did not become ready", self.port);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    /// Connects a WebSocket to `path`; returns it and the shard that accepted it.
    pub fn ws(&self, path: &str) -> (WebSocket<TcpStream>, usize) {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (ws, resp) =
            tungstenite::client::client(self.url(path), stream).expect("websocket handshake");
        let shard = resp
            .headers()
            .get("x-sockudo-shard")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("X-Sockudo-Shard header");
        (ws, shard)
    }

    /// Connects to the test app and reads `pusher:connection_established`; returns the client and its socket id.
    pub fn client(&self) -> Client {
        let (ws, shard) = self.ws(&format!(
            "/app/{APP_KEY}?protocol=7&client=js&version=8.4.0"
        ));
        let mut c = Client {
            ws,
            shard,
            socket_id: String::new(),
        };
        let msg = c.next_event();
        assert_eq!(msg["event"], "pusher:connection_established", "{msg}");
        let data: Value =
            serde_json::from_str(msg["data"].as_str().expect("data is a string")).unwrap();
        c.socket_id = data["socket_id"].as_str().unwrap().to_string();
        assert!(data["activity_timeout"].is_number());
        c
    }

    /// Opens clients until one lands on `shard`.
    pub fn client_on_shard(&self, shard: usize) -> Client {
        for _ in 0..200 {
            let c = self.client();
            if c.shard == shard {
                return c;
            }
        }
        panic!("no connection landed on shard {shard}");
    }

    pub fn try_http(
        &self,
        method: &str,
        path_and_query: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, String, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let req = format!(
            "{method} {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(req.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        Ok(parse_http_response(&raw))
    }

    /// A signed REST call; returns status, headers and body.
    pub fn signed(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String, String) {
        let ts = now_unix();
        self.signed_at(method, path, params, body, ts, APP_SECRET)
    }

    pub fn signed_at(
        &self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &[u8],
        ts: u64,
        secret: &str,
    ) -> (u16, String, String) {
        let query = sockudo::protocol::rest_auth::sign_query(
            method, path, params, body, APP_KEY, secret, ts,
        );
        self.try_http(method, &format!("{path}?{query}"), body)
            .expect("http")
    }

    /// Publishes `data` as `name` on `channels`; asserts 200 `{}`.
    pub fn publish(&self, channels: &[&str], name: &str, data: &str) {
        let body =
            serde_json::json!({ "name": name, "channels": channels, "data": data }).to_string();
        let (status, _, resp) = self.signed(
            "POST",
            &format!("/apps/{APP_ID}/events"),
            &[],
            body.as_bytes(),
        );
        assert_eq!((status, resp.as_str()), (200, "{}"));
    }

    /// Sends SIGTERM and waits for the exit status (None if it had to be killed).
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Status, head and body of a whole HTTP/1.1 response (status 0 when the status line does not parse).
pub fn parse_http_response(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The query string signing `method path` with `body` for the test app, stamped now.
pub fn signed_query(method: &str, path: &str, body: &[u8]) -> String {
    sockudo::protocol::rest_auth::sign_query(
        method,
        path,
        &[],
        body,
        APP_KEY,
        APP_SECRET,
        now_unix(),
    )
}

/// A connected Pusher client.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub shard: usize,
    pub socket_id: String,
}

impl Client {
    pub fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).unwrap();
    }

    /// The next Pusher event (pings answered by tungstenite are skipped).
    pub fn next_event(&mut self) -> Value {
        loop {
            match self.ws.read().expect("read event") {
                Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
                Message::Close(c) => panic!("unexpected close: {c:?}"),
                _ => continue,
            }
        }
    }

    /// Reads until the server closes; returns the close code.
    pub fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(Some(frame))) => return Some(u16::from(frame.code)),
                Ok(Message::Close(None)) => return None,
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => return None,
                Err(e) => panic!("error while waiting for close: {e}"),
            }
        }
    }

    pub fn subscribe(&mut self, channel: &str) {
        self.send(
            serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":""}}),
        );
        let msg = self.next_event();
        assert_eq!(
            msg["event"], "pusher_internal:subscription_succeeded",
            "{msg}"
        );
        assert_eq!(msg["channel"], channel);
    }

    /// True when nothing arrives within `wait`.
    pub fn is_silent_for(&mut self, wait: Duration) -> bool {
        self.ws.get_mut().set_read_timeout(Some(wait)).unwrap();
        let r = match self.ws.read() {
            Ok(_) => false,
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                true
            }
            Err(_) => false,
        };
        self.ws
            .get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        r
    }
}

/// `key:signature` for a private or presence channel.
pub fn channel_auth(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    let to_sign = sockudo::protocol::auth::channel_string_to_sign(socket_id, channel, channel_data);
    sockudo::protocol::auth::expected_auth(APP_KEY, APP_SECRET, &to_sign)
}

impl Client {
    /// Subscribes to a private channel with a correct signature.
    pub fn subscribe_private(&mut self, channel: &str) {
        let auth = channel_auth(&self.socket_id, channel, None);
        self.send(
            serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth}}),
        );
        let msg = self.next_event();
        assert_eq!(
            msg["event"], "pusher_internal:subscription_succeeded",
            "{msg}"
        );
    }

    /// Joins a presence channel as `user_id`; returns the presence snapshot.
    pub fn join_presence(&mut self, channel: &str, user_id: &str, info: Value) -> Value {
        let channel_data = serde_json::json!({"user_id": user_id, "user_info": info}).to_string();
        let auth = channel_auth(&self.socket_id, channel, Some(&channel_data));
        self.send(serde_json::json!({"event":"pusher:subscribe","data":{"channel":channel,"auth":auth,"channel_data":channel_data}}));
        let msg = self.next_event();
        assert_eq!(
            msg["event"], "pusher_internal:subscription_succeeded",
            "{msg}"
        );
        let data: Value = serde_json::from_str(msg["data"].as_str().unwrap()).unwrap();
        data["presence"].clone()
    }

    /// Signs in as `user_id`; returns the server's answer.
    pub fn signin(&mut self, user_data: &str) -> Value {
        let to_sign = sockudo::protocol::auth::user_string_to_sign(&self.socket_id, user_data);
        let auth = sockudo::protocol::auth::expected_auth(APP_KEY, APP_SECRET, &to_sign);
        self.send(
            serde_json::json!({"event":"pusher:signin","data":{"auth":auth,"user_data":user_data}}),
        );
        self.next_event()
    }
}

/// The next event within `wait`, if any.
pub fn next_within(client: &mut Client, wait: Duration) -> Option<Value> {
    client.ws.get_mut().set_read_timeout(Some(wait)).unwrap();
    let got = loop {
        match client.ws.read() {
            Ok(Message::Text(t)) => break serde_json::from_str(t.as_str()).ok(),
            Ok(_) => continue,
            Err(_) => break None,
        }
    };
    client
        .ws
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    got
}

/// The value of metric `name` (no labels) scraped from the metrics port `port`.
pub fn metric(port: u16, name: &str) -> f64 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not exported"))
}

/// Waits (polling every 100 ms: this is a test) until `check` holds; panics naming `what` after `within`.
pub fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("not within {within:?}: {what}");
}
