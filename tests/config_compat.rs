//! Sockudo configuration files start the real binary (issue #15): stand-ins for each file Sockudo 5.0.1
//! ships (same key sets, generated from the key catalogue), the nested app `policy` shape with its
//! limits enforced, `--check-config`, and typos refused with a suggestion.

mod common;
use common::*;
use serde_json::{json, Value};
use sockudo::config::catalogue::catalogue;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary on `config` (written as `name` in a fresh directory) with `env`, returns its output.
fn run_to_end(
    name: &str,
    config: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!(
        "sockudo-cfg-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockudo"));
    cmd.arg("--config")
        .arg(&path)
        .args(args)
        .current_dir(&dir)
        .env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run sockudo");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

/// Starts the binary on `config` with backends on local drivers and the port from the environment,
/// waits for `GET /up` to answer 200, stops it and returns what it logged.
fn start_and_check_up(name: &str, config: &str) -> String {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sockudo-cfg-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, config).expect("write config");
    let log = std::env::temp_dir().join(format!("sockudo-cfg-{}-{port}.log", std::process::id()));
    let child = Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .arg("--config")
        .arg(&path)
        .current_dir(&dir)
        .env_clear()
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "1")
        .env("METRICS_ENABLED", "false")
        .env("ADAPTER_DRIVER", "local")
        .env("APP_MANAGER_DRIVER", "memory")
        // Sockudo's node1.json / node2.json run the rate limiter on a (TLS) Redis.
        .env("RATE_LIMITER_DRIVER", "memory")
        .env("CACHE_DRIVER", "memory")
        .env("QUEUE_DRIVER", "memory")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn sockudo");
    let server = Server {
        child: Some(child),
        port,
        dir: dir.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut up = None;
    while Instant::now() < deadline {
        if let Ok((status, _, body)) = server.try_http("GET", "/up", b"") {
            up = Some((status, body));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server);
    // Dropping the server removed `dir`; the log lives beside it.
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let (status, _) =
        up.unwrap_or_else(|| panic!("{name}: server never answered /up; log:\n{logged}"));
    assert_eq!(status, 200, "{name}: GET /up; log:\n{logged}");
    let _ = std::fs::remove_file(&log);
    logged
}

#[test]
fn each_sockudo_shipped_file_key_set_starts_the_server() {
    let names = [
        "config.delta-cluster-coordination-nats.example.json",
        "config.delta-cluster-coordination.example.json",
        "config.json",
        "config.redis-cluster-delta-e2e.json",
        "delta_compression_example.json",
        "node1.json",
        "node2.json",
        "config.toml",
    ];
    for (i, name) in names.iter().enumerate() {
        let fixture = catalogue().sockudo_file_fixture(i as u8 + 1);
        let text = if name.ends_with(".toml") {
            toml::to_string(&fixture).expect("TOML")
        } else {
            serde_json::to_string_pretty(&fixture).expect("JSON")
        };
        let logged = start_and_check_up(name, &text);
        let warnings: Vec<&str> = logged
            .lines()
            .filter(|l| l.contains("Sockudo setting(s)"))
            .collect();
        // One warning lists the ignored keys; a file that uses only honoured keys (the delta example, now
        // that delta compression is implemented) gets none.
        let expected = usize::from(*name != "delta_compression_example.json");
        assert_eq!(
            warnings.len(),
            expected,
            "{name}: one warning lists the ignored keys; log:\n{logged}"
        );
    }
}

fn policy_app(policy: Value) -> Value {
    json!({"id": APP_ID, "key": APP_KEY, "secret": APP_SECRET, "enabled": true, "policy": policy})
}

#[test]
fn limits_set_through_the_nested_policy_are_enforced() {
    let config = json!({"app_manager": {"driver": "array", "array": {"apps": [policy_app(json!({
        "limits": {"max_connections": 1, "max_event_payload_in_kb": 1},
        "features": {"enable_client_messages": true},
        "channels": {"allowed_origins": ["*"]},
        "idempotency": {"enabled": true, "ttl_seconds": 300}
    }))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        shards: 1,
        ..Default::default()
    });
    let first = server.client();
    let (ws, _) = server.ws(&format!("/app/{APP_KEY}"));
    let mut second = Client {
        ws,
        shard: 0,
        socket_id: String::new(),
    };
    assert_eq!(
        second.next_event()["data"]["code"],
        4004,
        "policy.limits.max_connections = 1"
    );
    assert_eq!(second.close_code(), Some(4004));
    drop(first);

    let path = format!("/apps/{APP_ID}/events");
    let small = json!({"name": "e", "channel": "c", "data": "x".repeat(1000)}).to_string();
    let (status, _, body) = server.signed("POST", &path, &[], small.as_bytes());
    assert_eq!(status, 200, "{body}");
    let big = json!({"name": "e", "channel": "c", "data": "x".repeat(1025)}).to_string();
    let (status, _, _) = server.signed("POST", &path, &[], big.as_bytes());
    assert_eq!(status, 413, "policy.limits.max_event_payload_in_kb = 1");
}

#[test]
fn client_events_follow_policy_features() {
    let config = json!({"app_manager": {"array": {"apps": [policy_app(json!({
        "features": {"enable_client_messages": false}
    }))]}}});
    let server = Server::start_with(ServerOptions {
        config,
        shards: 1,
        ..Default::default()
    });
    let mut c = server.client();
    c.subscribe_private("private-room");
    c.send(json!({"event": "client-hello", "channel": "private-room", "data": {}}));
    let reply = c.next_event();
    assert_eq!(reply["event"], "pusher:error", "{reply}");
}

/// The `#   item` lines of `--check-config`'s section whose title starts with `title`.
fn listed<'a>(stdout: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = stdout.lines().skip_while(|l| !l.starts_with(title));
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let items: Vec<&str> = lines.map_while(|l| l.strip_prefix("#   ")).collect();
    assert!(
        header.ends_with(&format!("({}):", items.len())),
        "{header} announces another count than the {} lines listed",
        items.len()
    );
    items
}

#[test]
fn check_config_lists_honoured_and_ignored_keys() {
    let config = json!({
        "port": 6001, "mode": "production",
        "ssl": {"enabled": false, "passphrase": ""},
        "app_manager": {"array": {"apps": [policy_app(json!({"limits": {"max_connections": 5},
                                                              "idempotency": {"enabled": true}}))]}}
    });
    let out = run_to_end(
        "config.json",
        &config.to_string(),
        &["--check-config"],
        &[
            ("CORS_ORIGINS", "*".into()),
            ("CACHE_MAX_CAPACITY", "10".into()),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("# configuration OK"), "{stdout}");
    let mut honoured = listed(&stdout, "# honoured keys");
    honoured.sort_unstable();
    assert_eq!(
        honoured,
        [
            "app_manager.array.apps[0].enabled",
            "app_manager.array.apps[0].id",
            "app_manager.array.apps[0].key",
            "app_manager.array.apps[0].policy.limits.max_connections",
            "app_manager.array.apps[0].secret",
            "port",
            "ssl.enabled",
        ],
        "{stdout}"
    );
    let mut ignored = listed(&stdout, "# ignored keys");
    ignored.sort_unstable();
    assert_eq!(
        ignored,
        [
            "app_manager.array.apps[0].policy.idempotency.enabled",
            "mode",
            "ssl.passphrase",
        ],
        "{stdout}"
    );
    let mut ignored_env = listed(&stdout, "# ignored environment variables");
    ignored_env.sort_unstable();
    assert_eq!(
        ignored_env,
        ["CACHE_MAX_CAPACITY", "CORS_ORIGINS"],
        "{stdout}"
    );
}

#[test]
fn a_typo_stops_the_server_with_the_closest_key() {
    let config = json!({"websocket": {"max_mesages": 10}});
    for args in [&["--check-config"][..], &[][..]] {
        let out = run_to_end(
            "config.json",
            &config.to_string(),
            args,
            &[("PORT", free_port().to_string())],
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "unknown key \"websocket.max_mesages\" (did you mean \"websocket.max_messages\"?)"
            ),
            "{stderr}"
        );
    }
}
