//! TLS on the main port over the real binary: WebSocket (wss) and REST over TLS with a test CA, the plain-HTTP
//! redirect port, bad material refused at start, a handshake that never comes cut by the header timeout, and
//! SIGHUP swapping the certificate while an open connection stays.

mod common;

use common::{app_json, free_port, parse_http_response, APP_ID, APP_KEY};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A test CA and the server certificates it signs.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca"),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for localhost and 127.0.0.1, written as `cert.pem`/`key.pem` in `dir`; returns its DER.
    fn issue_into(&self, dir: &Path, common_name: &str) -> CertificateDer<'static> {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
        cert.der().clone()
    }
}

struct TlsServer {
    child: Child,
    port: u16,
    http_port: u16,
    dir: PathBuf,
    client: Arc<ClientConfig>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sockudo-tls-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn client_config(ca_pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("ca pem")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

use rustls::pki_types::pem::PemObject;

/// The sockudo command with TLS on, material in `dir`.
fn command(dir: &Path, port: u16, http_port: u16, config: &Value) -> Command {
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockudo"));
    cmd.arg("--config")
        .arg(&config_path)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "2")
        .env("METRICS_ENABLED", "false")
        .env("SSL_ENABLED", "true")
        .env("SSL_CERT_PATH", dir.join("cert.pem"))
        .env("SSL_KEY_PATH", dir.join("key.pem"))
        .env("SSL_REDIRECT_HTTP", "true")
        .env("SSL_HTTP_PORT", http_port.to_string())
        .env(
            "RUST_LOG",
            std::env::var("TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null());
    cmd
}

fn default_config() -> Value {
    json!({ "app_manager": { "array": { "apps": [app_json(json!({}))] } },
            "http_api": { "header_timeout": 2 } })
}

impl TlsServer {
    fn start(ca: &Ca, name: &str) -> (TlsServer, CertificateDer<'static>) {
        TlsServer::start_with(ca, name, &default_config())
    }

    fn start_with(ca: &Ca, name: &str, config: &Value) -> (TlsServer, CertificateDer<'static>) {
        let dir = temp_dir(name);
        let der = ca.issue_into(&dir, "first");
        let (port, http_port) = (free_port(), free_port());
        let child = command(&dir, port, http_port, config)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn sockudo");
        let server = TlsServer {
            child,
            port,
            http_port,
            dir,
            client: client_config(&ca.pem()),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _, _)) = server.https("GET", "/up", b"") {
                return (server, der);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("TLS server on port {port} did not become ready");
    }

    fn connect(&self) -> std::io::Result<Tls> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let name = ServerName::try_from("localhost").expect("name");
        let conn =
            ClientConnection::new(self.client.clone(), name).map_err(std::io::Error::other)?;
        let mut tls = StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(tls)
    }

    /// The certificate the server presents to a new connection.
    fn presented_certificate(&self) -> CertificateDer<'static> {
        let tls = self.connect().expect("handshake");
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.conn.peer_certificates().expect("certs")[0].clone()
    }

    fn https(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, String, String)> {
        let mut tls = self.connect()?;
        let req = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tls.write_all(req.as_bytes())?;
        tls.write_all(body)?;
        tls.flush()?;
        let mut raw = Vec::new();
        tls.read_to_end(&mut raw)?;
        Ok(parse_http_response(&raw))
    }

    fn publish(&self, channel: &str, name: &str) {
        let body = json!({ "name": name, "channels": [channel], "data": "{}" }).to_string();
        let path = format!("/apps/{APP_ID}/events");
        let query = common::signed_query("POST", &path, body.as_bytes());
        let (status, _, resp) = self
            .https("POST", &format!("{path}?{query}"), body.as_bytes())
            .expect("https");
        assert_eq!((status, resp.as_str()), (200, "{}"));
    }

    fn wss(&self) -> WebSocket<Tls> {
        let tls = self.connect().expect("handshake");
        let url = format!(
            "wss://localhost:{}/app/{APP_KEY}?protocol=7&client=js&version=8.4.0",
            self.port
        );
        let (mut ws, _) = tungstenite::client(url.as_str(), tls).expect("upgrade");
        assert_eq!(
            next_event(&mut ws)["event"],
            "pusher:connection_established"
        );
        ws
    }

    fn hup(&self) {
        // SAFETY: signalling our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGHUP);
        }
    }
}

fn next_event(ws: &mut WebSocket<Tls>) -> Value {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return serde_json::from_str(t.as_str()).expect("json"),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

fn subscribe(ws: &mut WebSocket<Tls>, channel: &str) {
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
    ws.send(Message::text(msg.to_string())).expect("send");
    assert_eq!(
        next_event(ws)["event"],
        "pusher_internal:subscription_succeeded"
    );
}

#[test]
fn websocket_and_rest_over_tls_and_the_https_redirect() {
    let ca = Ca::new("sockudo test CA");
    let (server, _) = TlsServer::start(&ca, "serve");
    let mut ws = server.wss();
    subscribe(&mut ws, "news");
    for i in 0..20 {
        server.publish("news", &format!("e{i}"));
    }
    for i in 0..20 {
        assert_eq!(next_event(&mut ws)["event"], format!("e{i}"));
    }
    // Client events and pings are answered over the same TLS connection.
    ws.send(Message::text(
        json!({"event": "pusher:ping", "data": {}}).to_string(),
    ))
    .expect("ping");
    assert_eq!(next_event(&mut ws)["event"], "pusher:pong");

    // Plain text on the TLS port is refused by the TLS layer, never answered in clear.
    let mut plain = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /up HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("write");
    let mut reply = Vec::new();
    let _ = plain.read_to_end(&mut reply);
    assert!(
        !String::from_utf8_lossy(&reply).contains("HTTP/1.1"),
        "{reply:?}"
    );

    // The redirect port answers every request with a 301 to https on the main port.
    let mut http = TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    http.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    http.write_all(
        b"GET /apps/123/channels?info=user_count HTTP/1.1\r\nHost: localhost:80\r\n\r\n",
    )
    .expect("write");
    let mut reply = String::new();
    http.read_to_string(&mut reply).expect("read");
    assert!(reply.starts_with("HTTP/1.1 301"), "{reply}");
    let location = format!(
        "location: https://localhost:{}/apps/123/channels?info=user_count",
        server.port
    );
    assert!(reply.to_ascii_lowercase().contains(&location), "{reply}");

    // The connection from the start is still served.
    server.publish("news", "last");
    assert_eq!(next_event(&mut ws)["event"], "last");
}

#[test]
fn a_handshake_that_never_comes_is_cut_by_the_header_timeout() {
    let ca = Ca::new("sockudo test CA");
    let (server, _) = TlsServer::start(&ca, "slow");
    let mut idle = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Half a ClientHello record header, then silence.
    idle.write_all(&[0x16, 0x03]).expect("write");
    let started = Instant::now();
    // At most an alert comes back, then end-of-stream (a read timeout would be an error here).
    let mut reply = Vec::new();
    idle.read_to_end(&mut reply)
        .expect("the server closes the socket");
    let waited = started.elapsed();
    assert!(
        !String::from_utf8_lossy(&reply).contains("HTTP/1.1"),
        "{reply:?}"
    );
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8),
        "closed after {waited:?} (header_timeout = 2 s)"
    );
}

#[test]
fn bad_material_stops_the_start_naming_the_file() {
    let dir = temp_dir("bad");
    let ca = Ca::new("sockudo test CA");
    ca.issue_into(&dir, "bad");
    std::fs::write(dir.join("cert.pem"), "not a certificate\n").expect("write");
    let out = command(&dir, free_port(), free_port(), &default_config())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a bad certificate");
    let cert_path = dir.join("cert.pem");
    assert!(
        stderr.contains(&format!("ssl.cert_path {}", cert_path.display()))
            && stderr.contains("no \"BEGIN CERTIFICATE\" section"),
        "{stderr}"
    );

    std::fs::remove_file(dir.join("key.pem")).expect("rm");
    ca.issue_into(&dir, "ok");
    std::fs::remove_file(dir.join("key.pem")).expect("rm");
    let out = command(&dir, free_port(), free_port(), &default_config())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ssl.key_path") && stderr.contains("cannot read"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_swaps_the_certificate_and_keeps_open_connections() {
    let ca = Ca::new("sockudo test CA");
    let (server, first) = TlsServer::start(&ca, "reload");
    assert_eq!(server.presented_certificate(), first);
    let mut ws = server.wss();
    subscribe(&mut ws, "kept");

    let second = ca.issue_into(&server.dir, "second");
    assert_ne!(first, second);
    server.hup();
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.presented_certificate() != second {
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.publish("kept", "after-reload");
    assert_eq!(next_event(&mut ws)["event"], "after-reload");

    // A broken certificate is refused and the running one kept.
    std::fs::write(server.dir.join("cert.pem"), "-----BEGIN CERTIFICATE-----\n").expect("write");
    server.hup();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(server.presented_certificate(), second);
    server.publish("kept", "after-bad-reload");
    assert_eq!(next_event(&mut ws)["event"], "after-bad-reload");
}

#[test]
fn a_backlog_larger_than_the_socket_arrives_whole_and_in_order() {
    let ca = Ca::new("sockudo test CA");
    let mut config = default_config();
    config["event_limits"] = json!({"max_payload_in_kb": 100, "max_batch_size": 100});
    config["http_api"]["request_limit_in_mb"] = json!(20);
    let (server, _) = TlsServer::start_with(&ca, "backlog", &config);
    let mut ws = server.wss();
    subscribe(&mut ws, "bulk");
    // 200 events of 90 KB (18 MB) while the client does not read: more than loopback socket buffers hold (at
    // most 4 MB sent + 6 MB received by default), so the
    // connection waits for writability with records pending in rustls.
    let data = "x".repeat(90_000);
    for batch in 0..2 {
        let events: Vec<Value> = (0..100)
            .map(|i| json!({"name": format!("e{}", batch * 100 + i), "channel": "bulk", "data": data}))
            .collect();
        let body = json!({ "batch": events }).to_string();
        let path = format!("/apps/{APP_ID}/batch_events");
        let query = common::signed_query("POST", &path, body.as_bytes());
        let (status, _, resp) = server
            .https("POST", &format!("{path}?{query}"), body.as_bytes())
            .expect("https");
        assert_eq!(status, 200, "{resp}");
    }
    for i in 0..200 {
        let event = next_event(&mut ws);
        assert_eq!(event["event"], format!("e{i}"));
        assert_eq!(event["data"].as_str().map(str::len), Some(90_000));
    }
}

#[test]
fn check_config_loads_the_certificate_and_key() {
    let dir = temp_dir("check");
    let ca = Ca::new("sockudo test CA");
    ca.issue_into(&dir, "check");
    let run = |dir: &Path| {
        command(dir, free_port(), free_port(), &default_config())
            .arg("--check-config")
            .stderr(Stdio::piped())
            .output()
            .expect("run")
    };
    let out = run(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("key.pem"), "nothing\n").expect("write");
    let out = run(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("ssl.key_path") && stderr.contains("no private key found"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
