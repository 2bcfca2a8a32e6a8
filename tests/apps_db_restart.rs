//! The app database really stopped and started while the server runs (PostgreSQL, with the stop and start
//! commands `scripts/services/postgres.sh` exports). A test binary of its own: cargo runs test binaries one
//! after another, so stopping the shared throwaway database cannot break the tests of `tests/apps_db.rs`.
//! `tests/apps_db.rs` covers the same outage for every driver through a proxy it cuts. Fails (never skips)
//! when the database is not running.
#![cfg(feature = "postgres")]

mod common;

use common::app_outage::{self, connect};
use common::{Server, ServerOptions, APP_ID, APP_KEY, APP_SECRET};
use serde_json::json;
use std::time::Duration;

fn env_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the database with scripts/services/postgres.sh (scripts/test.sh does)")
    })
}

fn sh(command: &str) {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run sh");
    assert!(status.success(), "{command} failed");
}

fn psql(sql: &str) {
    let out = std::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &env_var("SOCKUDO_TEST_POSTGRES_PORT"),
        ])
        .args([
            "-U",
            "postgres",
            "-d",
            "sockudo",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts the database again when the test ends, even when it fails half-way.
struct Restart(String);

impl Drop for Restart {
    fn drop(&mut self) {
        let _ = std::process::Command::new("sh")
            .args(["-c", &self.0])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn postgres_stopped_and_started() {
    let stop = env_var("SOCKUDO_TEST_POSTGRES_STOP");
    let start = env_var("SOCKUDO_TEST_POSTGRES_START");
    let table = format!("apps_restart_{}", std::process::id());
    psql(&format!(
        "CREATE TABLE {table} (id VARCHAR(255) PRIMARY KEY, key VARCHAR(255) UNIQUE NOT NULL,
            secret VARCHAR(255) NOT NULL, max_connections INTEGER NOT NULL DEFAULT 100,
            enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE, enabled BOOLEAN NOT NULL DEFAULT TRUE,
            max_client_events_per_second INTEGER NOT NULL DEFAULT 100, policy JSONB, webhooks JSONB,
            allowed_origins JSONB);
         INSERT INTO {table} (id, key, secret) VALUES ('{APP_ID}', '{APP_KEY}', '{APP_SECRET}'),
            ('later', 'later-key', 'later-secret')"
    ));
    let server = Server::start_with(ServerOptions {
        shards: 2,
        config: json!({}),
        env: [
            ("APP_MANAGER_DRIVER", "postgresql".to_string()),
            ("APP_MANAGER_CACHE_TTL", "1".into()),
            ("DATABASE_POSTGRES_HOST", "127.0.0.1".into()),
            (
                "DATABASE_POSTGRES_PORT",
                env_var("SOCKUDO_TEST_POSTGRES_PORT"),
            ),
            ("DATABASE_POSTGRES_USERNAME", "postgres".into()),
            ("DATABASE_POSTGRES_DATABASE", "sockudo".into()),
            ("DATABASE_POSTGRES_TABLE_NAME", table.clone()),
            ("DATABASE_POSTGRES_CONNECTION_POOL_SIZE", "2".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect(),
    });
    let mut c = server.client();
    c.subscribe("up");
    // Both shards have looked the app up by id (REST) and by key (connect) before the database goes.
    for _ in 0..4 {
        assert_eq!(
            server
                .signed("GET", &format!("/apps/{APP_ID}/channels"), &[], b"")
                .0,
            200
        );
        connect(&server, APP_KEY).expect("connects while the database is up");
    }

    sh(&stop);
    let restart = Restart(start.clone());
    std::thread::sleep(Duration::from_millis(1500)); // past the TTL: cached entries are stale now

    app_outage::assert_cached_apps_serve_through_the_outage(&server, &mut c);

    sh(&start);
    std::mem::forget(restart);
    app_outage::assert_recovers(&server);
    server.publish(&["up"], "after", "outage");
    assert_eq!(c.next_event()["event"], "after");
}
