//! Apps read from a database (PostgreSQL, MySQL/MariaDB, DynamoDB) while the server runs: the real binary
//! against a real database started by `scripts/services/*.sh`. A test whose database is not running fails
//! (it never skips): run `scripts/test.sh`, or source the service script first.
#![cfg(any(feature = "postgres", feature = "mysql", feature = "dynamodb"))]

mod common;

use common::{app_outage, eventually, metric, Server, ServerOptions, APP_ID, APP_KEY, APP_SECRET};
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

/// A database holding Sockudo's `applications` table, written with the database's own client.
trait AppDb {
    /// The server's environment for this database and `table`.
    fn env(&self, table: &str) -> Vec<(String, String)>;
    /// Creates `table` with Sockudo's schema (our own SQL, as a user of Sockudo would have it).
    fn create(&self, table: &str);
    /// Inserts an app.
    fn insert(
        &self,
        table: &str,
        id: &str,
        key: &str,
        secret: &str,
        enabled: bool,
        extra: &[(&str, &str)],
    );
    /// Runs `UPDATE table SET {set} WHERE id = '{id}'`.
    fn update(&self, table: &str, id: &str, set: &str);
}

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the database with scripts/services/*.sh (scripts/test.sh does)")
    })
}

fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd.output().expect("run database client");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique table per test, so tests run in parallel on one database.
fn table(name: &str) -> String {
    format!("apps_{name}_{}", std::process::id())
}

fn start(db: &dyn AppDb, table: &str, ttl_secs: u64, metrics_port: Option<u16>) -> Server {
    let mut env = db.env(table);
    env.push(("APP_MANAGER_CACHE_TTL".into(), ttl_secs.to_string()));
    if let Some(port) = metrics_port {
        env.push(("METRICS_ENABLED".into(), "true".into()));
        env.push(("METRICS_PORT".into(), port.to_string()));
        env.push(("METRICS_HOST".into(), "127.0.0.1".into()));
    }
    Server::start_with(ServerOptions {
        shards: 2,
        config: json!({}),
        env,
    })
}

type Socket = tungstenite::WebSocket<std::net::TcpStream>;

/// Connects with `key`: `Ok(socket_id)` on `connection_established`, `Err(code)` when refused.
fn connect(server: &Server, key: &str) -> Result<String, u16> {
    open(server, key).map(|(_, socket_id)| socket_id)
}

/// Connects with `key` and keeps the socket open: `Ok((socket, socket_id))`, `Err(code)` when refused.
fn open(server: &Server, key: &str) -> Result<(Socket, String), u16> {
    let (mut ws, _) = server.ws(&format!("/app/{key}?protocol=7&client=js&version=8.4.0"));
    loop {
        match ws.read().expect("read") {
            tungstenite::Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                if v["event"] == "pusher:connection_established" {
                    let data: serde_json::Value =
                        serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
                    let socket_id = data["socket_id"].as_str().unwrap().to_string();
                    return Ok((ws, socket_id));
                }
            }
            tungstenite::Message::Close(Some(frame)) => return Err(u16::from(frame.code)),
            tungstenite::Message::Close(None) => return Err(1005),
            _ => {}
        }
    }
}

/// Subscribes `client` to private channel `channel` with auth signed by `secret`: true when the server
/// accepts it, false on `pusher:error`.
fn private_subscribe_signed_with(client: &mut common::Client, channel: &str, secret: &str) -> bool {
    let to_sign = sockudo::protocol::auth::channel_string_to_sign(&client.socket_id, channel, None);
    let auth = sockudo::protocol::auth::expected_auth(APP_KEY, secret, &to_sign);
    client.send(json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}));
    loop {
        let reply = client.next_event();
        match reply["event"].as_str() {
            Some("pusher_internal:subscription_succeeded") => return true,
            Some("pusher:error") => return false,
            _ => continue,
        }
    }
}

/// The pusher protocol basics against database apps: connect, subscribe, REST publish, auth, unknown key.
fn serves_apps_from_the_database(db: &dyn AppDb, name: &str) {
    let table = table(name);
    db.create(&table);
    db.insert(
        &table,
        APP_ID,
        APP_KEY,
        APP_SECRET,
        true,
        &[("enable_client_messages", "true")],
    );
    let server = start(db, &table, 300, None);
    let mut c = server.client();
    c.subscribe("news");
    server.publish(&["news"], "update", "{\"n\":1}");
    let ev = c.next_event();
    assert_eq!(
        (ev["event"].as_str(), ev["channel"].as_str()),
        (Some("update"), Some("news"))
    );
    c.subscribe_private("private-room");
    assert_eq!(connect(&server, "no-such-key"), Err(4001));
    let (status, _, _) = server.signed("GET", "/apps/999/channels", &[], b"");
    assert_eq!(status, 404, "unknown app id");
    let (status, _, body) = server.signed("GET", &format!("/apps/{APP_ID}/channels"), &[], b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("news"), "{body}");
}

/// Apps added, disabled and re-keyed in the database apply within the TTL; connected clients keep working.
fn applies_changes_within_the_ttl(db: &dyn AppDb, name: &str) {
    let table = table(name);
    db.create(&table);
    db.insert(&table, APP_ID, APP_KEY, APP_SECRET, true, &[]);
    let server = start(db, &table, 1, None);
    let mut c = server.client();
    c.subscribe("live");

    assert_eq!(connect(&server, "added-key"), Err(4001));
    db.insert(&table, "added", "added-key", "added-secret", true, &[]);
    eventually(Duration::from_secs(10), "a new app connects", || {
        connect(&server, "added-key").is_ok()
    });

    db.update(&table, APP_ID, "enabled = false");
    eventually(
        Duration::from_secs(10),
        "a disabled app refuses with 4003",
        || connect(&server, APP_KEY) == Err(4003),
    );
    // A disabled app's REST calls are refused (403) within the TTL too (each shard has its own cache).
    eventually(
        Duration::from_secs(10),
        "REST refuses a disabled app",
        || {
            let body = br#"{"name":"x","channels":["live"],"data":"d"}"#;
            server
                .signed("POST", &format!("/apps/{APP_ID}/events"), &[], body)
                .0
                == 403
        },
    );
    db.update(&table, APP_ID, "enabled = true");
    eventually(Duration::from_secs(10), "re-enabled", || {
        let body = br#"{"name":"still","channels":["live"],"data":"here"}"#;
        connect(&server, APP_KEY).is_ok()
            && server
                .signed("POST", &format!("/apps/{APP_ID}/events"), &[], body)
                .0
                == 200
    });
    // The old connection kept working (it may also get events published while the shards disagreed).
    while c.next_event()["event"] != "still" {}

    db.update(&table, "added", &db_key_set("added-key-2"));
    eventually(Duration::from_secs(10), "the new key connects", || {
        connect(&server, "added-key-2").is_ok()
    });
    eventually(Duration::from_secs(10), "the old key is refused", || {
        connect(&server, "added-key") == Err(4001)
    });

    // A lowered limit applies to new connections within the TTL.
    let (_held, _) = open(&server, "added-key-2").expect("one connection under the limit");
    db.update(&table, "added", "max_connections = 1");
    eventually(
        Duration::from_secs(10),
        "max_connections = 1 refuses a second connection with 4004",
        || connect(&server, "added-key-2") == Err(4004),
    );

    // A rotated secret applies within the TTL: REST signatures, and channel auth on a connection opened
    // before the change (a backend signs with the new secret at once).
    db.update(&table, APP_ID, "secret = 'rotated-secret'");
    let events = format!("/apps/{APP_ID}/events");
    let body = br#"{"name":"signed","channels":["live"],"data":"new"}"#;
    eventually(
        Duration::from_secs(10),
        "REST accepts the new secret and refuses the old one",
        || {
            server
                .signed_at(
                    "POST",
                    &events,
                    &[],
                    body,
                    common::now_unix(),
                    "rotated-secret",
                )
                .0
                == 200
                && server.signed("POST", &events, &[], body).0 == 401
        },
    );
    let mut attempt = 0;
    eventually(
        Duration::from_secs(10),
        "an open connection's channel auth uses the new secret",
        || {
            attempt += 1;
            private_subscribe_signed_with(
                &mut c,
                &format!("private-new-{attempt}"),
                "rotated-secret",
            )
        },
    );
    assert!(
        !private_subscribe_signed_with(&mut c, "private-old", APP_SECRET),
        "the old secret no longer authorizes"
    );
}

fn db_key_set(key: &str) -> String {
    // `key` is quoted differently by each database; the implementations' `update` receives it ready.
    format!("{{KEY}} = '{key}'")
}

/// Many connects with unknown keys make a bounded number of queries (shared queries + negative cache).
fn unknown_keys_are_bounded(db: &dyn AppDb, name: &str) {
    let table = table(name);
    db.create(&table);
    db.insert(&table, APP_ID, APP_KEY, APP_SECRET, true, &[]);
    let metrics_port = common::free_port();
    let server = start(db, &table, 300, Some(metrics_port));
    let before = metric(metrics_port, "sockudo_app_manager_queries_total");
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let port = server.port;
            std::thread::spawn(move || {
                for _ in 0..25 {
                    let stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    let (mut ws, _) = tungstenite::client::client(
                        format!("ws://127.0.0.1:{port}/app/flood-key?protocol=7"),
                        stream,
                    )
                    .unwrap();
                    loop {
                        match ws.read() {
                            Ok(tungstenite::Message::Close(Some(f))) => {
                                assert_eq!(u16::from(f.code), 4001);
                                break;
                            }
                            Ok(_) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let after = metric(metrics_port, "sockudo_app_manager_queries_total");
    // 200 connects for one unknown key: at most one query per shard (each shard caches "unknown" for 5 s).
    assert!(
        after - before <= 2.0,
        "{} queries for 200 connects",
        after - before
    );
    assert!(after - before >= 1.0, "the database was asked");
}

/// The server creates Sockudo's table when it is missing (the test then writes into it with the database's own
/// client), and reads what a row leaves unset from Sockudo's nested `policy` JSON.
fn creates_the_missing_table_and_reads_policy(db: &dyn AppDb, name: &str) {
    let table = table(name);
    let server = start(db, &table, 300, None);
    assert_eq!(
        connect(&server, "probe-key"),
        Err(4001),
        "the table was created empty"
    );
    db.insert(
        &table,
        APP_ID,
        APP_KEY,
        APP_SECRET,
        true,
        &[
            ("max_event_batch_size", "NULL"),
            ("policy", r#"'{"limits":{"max_event_batch_size":1}}'"#),
        ],
    );
    assert!(connect(&server, APP_KEY).is_ok());
    let batch = |n: usize| {
        let events: Vec<_> = (0..n)
            .map(|i| json!({"name": "e", "channel": "c", "data": i.to_string()}))
            .collect();
        let body = json!({ "batch": events }).to_string();
        server
            .signed(
                "POST",
                &format!("/apps/{APP_ID}/batch_events"),
                &[],
                body.as_bytes(),
            )
            .0
    };
    assert_eq!(batch(1), 200);
    assert_eq!(
        batch(2),
        400,
        "policy.limits.max_event_batch_size = 1 applies"
    );
}

macro_rules! driver_tests {
    ($module:ident, $feature:literal, $db:expr, $port_var:literal) => {
        #[cfg(feature = $feature)]
        mod $module {
            use super::*;

            #[test]
            fn serves_apps_from_the_database() {
                super::serves_apps_from_the_database(&$db, stringify!($module));
            }

            #[test]
            fn applies_changes_within_the_ttl() {
                super::applies_changes_within_the_ttl(
                    &$db,
                    concat!(stringify!($module), "_changes"),
                );
            }

            #[test]
            fn outage_keeps_cached_apps_and_recovers() {
                super::outage_keeps_cached_apps_and_recovers(
                    &$db,
                    concat!(stringify!($module), "_outage"),
                    $port_var,
                );
            }

            #[test]
            fn creates_the_missing_table_and_reads_policy() {
                super::creates_the_missing_table_and_reads_policy(
                    &$db,
                    concat!(stringify!($module), "_create"),
                );
            }

            #[test]
            fn unknown_keys_are_bounded() {
                super::unknown_keys_are_bounded(&$db, concat!(stringify!($module), "_flood"));
            }
        }
    };
}

// ---- PostgreSQL ---------------------------------------------------------------------------------------------

#[cfg(feature = "postgres")]
struct Postgres;

#[cfg(feature = "postgres")]
impl Postgres {
    fn port(&self) -> String {
        env_var("SOCKUDO_TEST_POSTGRES_PORT")
    }

    fn sql(&self, sql: &str) -> String {
        run(std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port(),
                "-U",
                "postgres",
                "-d",
                "sockudo",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-qtAc", sql]))
    }
}

#[cfg(feature = "postgres")]
impl AppDb for Postgres {
    fn env(&self, table: &str) -> Vec<(String, String)> {
        [
            ("APP_MANAGER_DRIVER", "postgresql".to_string()),
            ("DATABASE_POSTGRES_HOST", "127.0.0.1".into()),
            ("DATABASE_POSTGRES_PORT", self.port()),
            ("DATABASE_POSTGRES_USERNAME", "postgres".into()),
            ("DATABASE_POSTGRES_DATABASE", "sockudo".into()),
            ("DATABASE_POSTGRES_TABLE_NAME", table.into()),
            ("DATABASE_POSTGRES_CONNECTION_POOL_SIZE", "2".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn create(&self, table: &str) {
        // Sockudo's ops/migrations/postgresql/001_fresh_schema.sql (the columns this server reads).
        self.sql(&format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (
                id VARCHAR(255) PRIMARY KEY, key VARCHAR(255) UNIQUE NOT NULL, secret VARCHAR(255) NOT NULL,
                max_connections INTEGER NOT NULL DEFAULT 100, enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
                enabled BOOLEAN NOT NULL DEFAULT TRUE, max_backend_events_per_second INTEGER DEFAULT 100,
                max_client_events_per_second INTEGER NOT NULL DEFAULT 100, max_read_requests_per_second INTEGER DEFAULT 100,
                max_presence_members_per_channel INTEGER DEFAULT 100, max_presence_member_size_in_kb INTEGER DEFAULT 2,
                max_channel_name_length INTEGER DEFAULT 200, max_event_channels_at_once INTEGER DEFAULT 100,
                max_event_name_length INTEGER DEFAULT 200, max_event_payload_in_kb INTEGER DEFAULT 100,
                max_event_batch_size INTEGER DEFAULT 10, enable_user_authentication BOOLEAN DEFAULT FALSE,
                enable_watchlist_events BOOLEAN DEFAULT FALSE, policy JSONB, webhooks JSONB, allowed_origins JSONB,
                channel_delta_compression JSONB, idempotency JSONB, connection_recovery JSONB,
                created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP, updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP)"
        ));
    }

    fn insert(
        &self,
        table: &str,
        id: &str,
        key: &str,
        secret: &str,
        enabled: bool,
        extra: &[(&str, &str)],
    ) {
        let mut cols = String::from("id, key, secret, enabled");
        let mut vals = format!("'{id}', '{key}', '{secret}', {enabled}");
        for (c, v) in extra {
            cols.push_str(&format!(", {c}"));
            vals.push_str(&format!(", {v}"));
        }
        self.sql(&format!("INSERT INTO {table} ({cols}) VALUES ({vals})"));
    }

    fn update(&self, table: &str, id: &str, set: &str) {
        let set = set.replace("{KEY}", "key");
        self.sql(&format!("UPDATE {table} SET {set} WHERE id = '{id}'"));
    }
}

driver_tests!(postgres, "postgres", Postgres, "SOCKUDO_TEST_POSTGRES_PORT");

/// A TCP forwarder between the server and the database, which a test can cut and restore: an outage as the
/// server sees it (refused connections, reset sessions) without stopping a database other tests share.
struct Cuttable {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bumped on every cut: forwarding threads of an older generation stop.
    generation: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Cuttable {
    fn to(target_port: u16) -> Cuttable {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let generation = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (up2, gen2) = (up.clone(), generation.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(SeqCst) {
                    drop(client); // refused, as a stopped database would
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue;
                };
                let born = gen2.load(SeqCst);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let gen = gen2.clone();
                    std::thread::spawn(move || {
                        from.set_read_timeout(Some(Duration::from_millis(100)))
                            .unwrap();
                        let mut buf = [0u8; 16384];
                        loop {
                            if gen.load(SeqCst) != born {
                                let _ = from.shutdown(std::net::Shutdown::Both);
                                let _ = to.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            match from.read(&mut buf) {
                                Ok(0) => {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                Ok(n) => {
                                    if to.write_all(&buf[..n]).is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
            }
        });
        Cuttable {
            port,
            up,
            generation,
        }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The database goes away: cached apps keep working, an uncached key gets 4101 without hanging, `/up` says
/// DEGRADED; the database comes back: new apps connect again without a restart.
fn outage_keeps_cached_apps_and_recovers(db: &dyn AppDb, name: &str, port_var: &str) {
    let table = table(name);
    db.create(&table);
    db.insert(&table, APP_ID, APP_KEY, APP_SECRET, true, &[]);
    db.insert(&table, "later", "later-key", "later-secret", true, &[]);
    let proxy = Cuttable::to(env_var(port_var).parse().unwrap());
    let mut env = db.env(&table);
    for (k, v) in env.iter_mut() {
        if k.ends_with("_PORT") {
            *v = proxy.port.to_string();
        }
        if k.ends_with("_ENDPOINT_URL") {
            *v = format!("http://127.0.0.1:{}", proxy.port);
        }
    }
    env.push(("APP_MANAGER_CACHE_TTL".into(), "1".into()));
    let server = Server::start_with(ServerOptions {
        shards: 2,
        config: json!({}),
        env,
    });
    let mut c = server.client();
    c.subscribe("up");
    proxy.cut();
    std::thread::sleep(Duration::from_millis(1500)); // past the TTL: cached entries are stale now
    app_outage::assert_cached_apps_serve_through_the_outage(&server, &mut c);
    proxy.restore();
    app_outage::assert_recovers(&server);
}

/// A row whose webhooks do not parse is skipped (connect: 4001) without taking the others down.
#[cfg(feature = "postgres")]
#[test]
fn postgres_bad_rows_are_skipped() {
    let db = Postgres;
    let table = table("bad_rows");
    db.create(&table);
    db.insert(&table, APP_ID, APP_KEY, APP_SECRET, true, &[]);
    db.insert(
        &table,
        "bad",
        "bad-key",
        "s",
        true,
        &[(
            "webhooks",
            r#"'[{"url": "http://127.0.0.1:1/", "event_types": ["no_such_event"]}]'"#,
        )],
    );
    let server = start(&db, &table, 300, None);
    assert_eq!(connect(&server, "bad-key"), Err(4001));
    assert!(connect(&server, APP_KEY).is_ok());
}

// ---- MySQL / MariaDB ----------------------------------------------------------------------------------------

#[cfg(feature = "mysql")]
struct Mysql;

#[cfg(feature = "mysql")]
impl Mysql {
    fn port(&self) -> String {
        env_var("SOCKUDO_TEST_MYSQL_PORT")
    }

    fn sql(&self, sql: &str) -> String {
        run(std::process::Command::new("mariadb")
            .args(["--no-defaults", "-h", "127.0.0.1", "-P", &self.port()])
            .args(["-u", "sockudo", "-psockudo", "sockudo", "-e", sql]))
    }
}

#[cfg(feature = "mysql")]
impl AppDb for Mysql {
    fn env(&self, table: &str) -> Vec<(String, String)> {
        [
            ("APP_MANAGER_DRIVER", "mysql".to_string()),
            ("DATABASE_MYSQL_HOST", "127.0.0.1".into()),
            ("DATABASE_MYSQL_PORT", self.port()),
            ("DATABASE_MYSQL_USERNAME", "sockudo".into()),
            ("DATABASE_MYSQL_PASSWORD", "sockudo".into()),
            ("DATABASE_MYSQL_DATABASE", "sockudo".into()),
            ("DATABASE_MYSQL_TABLE_NAME", table.into()),
            ("DATABASE_MYSQL_CONNECTION_POOL_SIZE", "2".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn create(&self, table: &str) {
        // Sockudo's MySQL schema (mysql_app_manager.rs), written by hand.
        self.sql(&format!(
            "DROP TABLE IF EXISTS `{table}`; CREATE TABLE `{table}` (
                id VARCHAR(255) PRIMARY KEY, `key` VARCHAR(255) UNIQUE NOT NULL, secret VARCHAR(255) NOT NULL,
                max_connections INT UNSIGNED NOT NULL DEFAULT 100, enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
                enabled BOOLEAN NOT NULL DEFAULT TRUE, max_backend_events_per_second INT UNSIGNED NULL,
                max_client_events_per_second INT UNSIGNED NOT NULL DEFAULT 100,
                max_read_requests_per_second INT UNSIGNED NULL, max_presence_members_per_channel INT UNSIGNED NULL,
                max_presence_member_size_in_kb INT UNSIGNED NULL, max_channel_name_length INT UNSIGNED NULL,
                max_event_channels_at_once INT UNSIGNED NULL, max_event_name_length INT UNSIGNED NULL,
                max_event_payload_in_kb INT UNSIGNED NULL, max_event_batch_size INT UNSIGNED NULL,
                enable_user_authentication BOOLEAN NULL, enable_watchlist_events BOOLEAN NULL,
                policy JSON NULL, webhooks JSON NULL, allowed_origins JSON NULL,
                created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
                updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP)"
        ));
    }

    fn insert(
        &self,
        table: &str,
        id: &str,
        key: &str,
        secret: &str,
        enabled: bool,
        extra: &[(&str, &str)],
    ) {
        let mut cols = String::from("id, `key`, secret, enabled");
        let mut vals = format!("'{id}', '{key}', '{secret}', {enabled}");
        for (c, v) in extra {
            cols.push_str(&format!(", {c}"));
            vals.push_str(&format!(", {v}"));
        }
        self.sql(&format!("INSERT INTO `{table}` ({cols}) VALUES ({vals})"));
    }

    fn update(&self, table: &str, id: &str, set: &str) {
        let set = set.replace("{KEY}", "`key`");
        self.sql(&format!("UPDATE `{table}` SET {set} WHERE id = '{id}'"));
    }
}

driver_tests!(mysql, "mysql", Mysql, "SOCKUDO_TEST_MYSQL_PORT");

// ---- DynamoDB (moto) ----------------------------------------------------------------------------------------

#[cfg(feature = "dynamodb")]
struct Dynamo;

#[cfg(feature = "dynamodb")]
impl Dynamo {
    /// One DynamoDB API call (JSON protocol) to moto, which does not check signatures.
    fn call(&self, action: &str, body: serde_json::Value) -> serde_json::Value {
        let port: u16 = env_var("SOCKUDO_TEST_DYNAMODB_PORT").parse().unwrap();
        let body = body.to_string();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("moto");
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: DynamoDB_20120810.{action}\r\n\
             Content-Type: application/x-amz-json-1.0\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=test/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{action}: {head}\n{body}");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    fn attribute(value: &str) -> serde_json::Value {
        match value {
            "true" | "false" => json!({"BOOL": value == "true"}),
            "NULL" => json!({"NULL": true}),
            v if v.starts_with('\'') => json!({"S": v.trim_matches('\'')}),
            v => json!({"N": v}),
        }
    }
}

#[cfg(feature = "dynamodb")]
impl AppDb for Dynamo {
    fn env(&self, table: &str) -> Vec<(String, String)> {
        [
            ("APP_MANAGER_DRIVER", "dynamodb".to_string()),
            ("DATABASE_DYNAMODB_REGION", "us-east-1".into()),
            ("DATABASE_DYNAMODB_TABLE_NAME", table.into()),
            (
                "DATABASE_DYNAMODB_ENDPOINT_URL",
                env_var("SOCKUDO_TEST_DYNAMODB_URL"),
            ),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn create(&self, table: &str) {
        // Sockudo's layout: partition key `id` (string).
        self.call(
            "CreateTable",
            json!({"TableName": table, "BillingMode": "PAY_PER_REQUEST",
                   "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                   "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}]}),
        );
    }

    fn insert(
        &self,
        table: &str,
        id: &str,
        key: &str,
        secret: &str,
        enabled: bool,
        extra: &[(&str, &str)],
    ) {
        let mut item = json!({"id": {"S": id}, "key": {"S": key}, "secret": {"S": secret},
                              "enabled": {"BOOL": enabled}, "max_connections": {"N": "100"},
                              "max_client_events_per_second": {"N": "100"}});
        for (c, v) in extra {
            item[*c] = Dynamo::attribute(v);
        }
        self.call("PutItem", json!({"TableName": table, "Item": item}));
    }

    fn update(&self, table: &str, id: &str, set: &str) {
        let (name, value) = set.split_once(" = ").expect("name = value");
        let name = name.replace("{KEY}", "key");
        self.call(
            "UpdateItem",
            json!({"TableName": table, "Key": {"id": {"S": id}},
                   "UpdateExpression": "SET #a = :v",
                   "ExpressionAttributeNames": {"#a": name},
                   "ExpressionAttributeValues": {":v": Dynamo::attribute(value)}}),
        );
    }
}

driver_tests!(dynamodb, "dynamodb", Dynamo, "SOCKUDO_TEST_DYNAMODB_PORT");
