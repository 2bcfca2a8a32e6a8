//! The catalogue against the model, the environment layer, the docs and Sockudo's shipped key sets.
//! When one of these fails after a change, the message says which line of `sockudo_keys.tsv` to fix.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::catalogue::{catalogue, insert_path, Key, Status, ValueType};
use super::env::Env;
use super::file::parse;
use super::*;

const FILE: &str = "c.json";

fn parse_tree(tree: &Value) -> Result<(Config, KeyReport), ConfigError> {
    parse(Path::new(FILE), &tree.to_string())
}

fn tree(path: &str, value: Option<Value>) -> Value {
    let mut tree = json!({});
    insert_path(&mut tree, path, value);
    tree
}

/// `a.b[].c.*.d` -> `a.b[0].c.ticker:*.d`: where [`insert_path`] puts a key.
fn actual_path(path: &str) -> String {
    path.replace("[]", "[0]").replace(".*", ".ticker:*")
}

/// A value of `key`'s type that differs from its default, or `None` when there is no such value.
fn sample(key: &Key) -> Option<Value> {
    let default = key.default_value();
    Some(match &key.ty.shape {
        ValueType::Bool => Value::Bool(!default.and_then(|d| d.as_bool()).unwrap_or(false)),
        ValueType::Int => json!(default.and_then(|d| d.as_u64()).unwrap_or(6) + 1),
        ValueType::Float => json!(0.5),
        ValueType::Str => json!("sample-value"),
        ValueType::List => json!(["https://sample.test"]),
        ValueType::Map | ValueType::Any => json!({}),
        ValueType::Enum(words) => json!(words.iter().find(|w| Some(json!(w)) != default)?),
    })
}

#[test]
fn the_data_file_parses_and_lists_every_shipped_file() {
    let keys = catalogue().keys();
    assert!(keys.len() > 440, "{} keys", keys.len());
    for file in 1..=8 {
        assert!(
            keys.iter().any(|k| k.files.contains(&file)),
            "no key of file {file}"
        );
    }
    let sorted: Vec<&str> = keys.iter().map(|k| k.path.as_str()).collect();
    let mut expected = sorted.clone();
    expected.sort();
    assert_eq!(sorted, expected, "keep sockudo_keys.tsv sorted by path");
}

#[test]
fn every_applied_key_reaches_the_model_and_its_default_is_the_models() {
    for key in catalogue().keys().iter().filter(|k| k.status.is_applied()) {
        let base = parse_tree(&tree(&key.path, None))
            .unwrap_or_else(|e| panic!("{}: sections alone: {e}", key.path))
            .0;
        if let Some(default) = key.default_value() {
            let (config, report) = parse_tree(&tree(&key.path, Some(default)))
                .unwrap_or_else(|e| panic!("{}: the model refuses it: {e}", key.path));
            assert_eq!(
                config, base,
                "{}: the default column is not the model's default",
                key.path
            );
            assert_eq!(
                report.honoured,
                vec![actual_path(&key.path)],
                "{}",
                key.path
            );
        }
        if let Some(value) = sample(key) {
            let (config, _) = parse_tree(&tree(&key.path, Some(value.clone())))
                .unwrap_or_else(|e| panic!("{} = {value}: the model refuses it: {e}", key.path));
            assert_ne!(
                config, base,
                "{} = {value} has no effect: is it really honoured?",
                key.path
            );
        }
    }
}

#[test]
fn every_ignored_key_is_reported_changes_nothing_and_is_not_in_the_model() {
    for key in catalogue()
        .keys()
        .iter()
        .filter(|k| k.status == Status::Ignored)
    {
        let with_key = tree(&key.path, Some(key.example_value()));
        let (config, report) =
            parse_tree(&with_key).unwrap_or_else(|e| panic!("{} = {}: {e}", key.path, key.example));
        let base = parse_tree(&tree(&key.path, None))
            .expect("sections alone")
            .0;
        assert_eq!(config, base, "{}", key.path);
        assert!(
            report.ignored.contains(&actual_path(&key.path)),
            "{}: {report:?}",
            key.path
        );
        assert!(
            serde_path_to_error::deserialize::<_, Config>(with_key).is_err(),
            "{} is marked ignored but the model accepts it: if it is implemented now, change its \
             status to honoured in src/config/sockudo_keys.tsv",
            key.path
        );
    }
}

#[test]
fn ignored_values_are_type_checked() {
    let err = parse_tree(&json!({"rate_limiter": {"enabled": "yes"}})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.json: \"rate_limiter.enabled\": expected a boolean, found string \"yes\""
    );
    let err = parse_tree(&json!({"queue": "redis"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.json: \"queue\": expected a table/object, found string \"redis\""
    );
    let err = parse_tree(&json!({"server_role": "worker"})).unwrap_err();
    assert_eq!(
        err.to_string(),
        "c.json: \"server_role\": expected one of \"default\", \"api\", found string \"worker\""
    );
    // nullable keys take null, as in Sockudo's config.json
    parse_tree(&json!({"adapter": {"kafka": {"sasl_password": null, "nodes_number": null}}}))
        .expect("null ok");
}

#[test]
fn typos_fail_with_the_closest_key() {
    let cases = [
        (json!({"prot": 6001}), "prot", "port"),
        (
            json!({"websocket": {"max_mesages": 5}}),
            "websocket.max_mesages",
            "websocket.max_messages",
        ),
        (
            json!({"adapter": {"fast_presense_transitions": false}}),
            "adapter.fast_presense_transitions",
            "adapter.fast_presence_transitions",
        ),
        (
            json!({"app_manager": {"array": {"apps": [{"id": "a"}, {"policy": {"limits": {"max_conections": 1}}}]}}}),
            "app_manager.array.apps[1].policy.limits.max_conections",
            "app_manager.array.apps[1].policy.limits.max_connections",
        ),
        (
            json!({"app_manager": {"array": {"apps": [{"polcy": {}}]}}}),
            "app_manager.array.apps[0].polcy",
            "app_manager.array.apps[0].policy",
        ),
        (json!({"histroy": {"enabled": true}}), "histroy", "history"),
        (
            json!({"push": {"retry": {"max_attempt": 5}}}),
            "push.retry.max_attempt",
            "push.retry.max_attempts",
        ),
    ];
    for (tree, key, suggestion) in cases {
        let err = parse_tree(&tree).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("c.json: unknown key \"{key}\" (did you mean \"{suggestion}\"?)"),
        );
    }
}

#[test]
fn nested_policy_limits_and_features_are_applied() {
    let text = json!({"app_manager": {"driver": "array", "array": {"apps": [{
        "id": "app-id", "key": "app-key", "secret": "prod-secret", "enabled": true,
        "policy": {
            "limits": {"max_connections": 1, "max_client_events_per_second": 50, "max_event_payload_in_kb": 4},
            "features": {"enable_client_messages": true, "enable_user_authentication": true},
            "channels": {"allowed_origins": ["*"],
                         "channel_delta_compression": {"ticker:*": {"enabled": true, "algorithm": "Fossil"}}},
            "idempotency": {"enabled": true, "ttl_seconds": 300}
        }
    }]}}});
    let (config, report) = parse_tree(&text).expect("loads");
    let app = &config.app_manager.array.apps[0];
    assert_eq!(app.max_connections, Some(1));
    assert_eq!(app.max_client_events_per_second, Some(50));
    assert_eq!(app.max_event_payload_in_kb, Some(4));
    assert!(app.enable_client_messages);
    assert_eq!(app.enable_user_authentication, Some(true));
    assert_eq!(app.allowed_origins, Some(vec!["*".to_string()]));
    assert_eq!(
        report.ignored,
        vec![
            "app_manager.array.apps[0].policy.idempotency.enabled",
            "app_manager.array.apps[0].policy.idempotency.ttl_seconds",
        ]
    );
}

fn env_of(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |k| map.get(k).cloned()
}

/// Text for a variable holding `value`.
fn env_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

#[test]
fn every_variable_of_an_applied_key_is_applied() {
    for key in catalogue().keys().iter().filter(|k| k.status.is_applied()) {
        let Some(value) = sample(key) else { continue };
        for var in &key.env {
            let text = env_text(&value);
            let changed = if let Some(field) = key.path.strip_prefix("app_manager.array.apps[].") {
                let mut vars = vec![
                    ("SOCKUDO_DEFAULT_APP_ID", "id".to_string()),
                    ("SOCKUDO_DEFAULT_APP_KEY", "key".to_string()),
                    ("SOCKUDO_DEFAULT_APP_SECRET", "secret".to_string()),
                ];
                vars.retain(|(v, _)| v != var);
                vars.push((var.as_str(), text.clone()));
                let get = env_of(&vars);
                let app = Env::new(&get)
                    .default_app()
                    .unwrap_or_else(|e| panic!("{var}: {e}"))
                    .unwrap_or_else(|| panic!("{var}: no app"));
                serde_json::to_value(app).expect("serializes")[field].clone()
            } else {
                let get = env_of(&[(var.as_str(), text.clone())]);
                let mut config = Config::default();
                Env::new(&get)
                    .apply(&mut config)
                    .unwrap_or_else(|e| panic!("{var}: {e}"));
                let pointer = format!("/{}", key.path.replace('.', "/"));
                serde_json::to_value(config)
                    .expect("serializes")
                    .pointer(&pointer)
                    .cloned()
                    .unwrap_or(Value::Null)
            };
            assert_eq!(changed, value, "{var}={text} does not set {}", key.path);
        }
    }
}

#[test]
fn variables_of_ignored_features_are_reported_not_applied() {
    let get = env_of(&[
        ("CORS_ORIGINS", "*".into()),
        ("RATE_LIMITER_ENABLED", "true".into()),
        ("HOST", "127.0.0.1".into()),
    ]);
    let mut reported = Env::new(&get).ignored_sockudo_vars();
    reported.sort();
    assert_eq!(reported, vec!["CORS_ORIGINS", "RATE_LIMITER_ENABLED"]);
    for key in catalogue()
        .keys()
        .iter()
        .filter(|k| k.status == Status::Ignored)
    {
        for var in &key.env {
            let get = env_of(&[(var.as_str(), "1".into())]);
            let mut config = Config::default();
            Env::new(&get)
                .apply(&mut config)
                .expect("ignored variables are not parsed");
            assert_eq!(
                config,
                Config::default(),
                "{var} is marked ignored but changes the config"
            );
        }
    }
}

/// The key table in `config/README.md` is generated from the catalogue; regenerate it with
/// `UPDATE_CONFIG_README=1 cargo test --lib config::catalogue_tests`.
#[test]
fn readme_key_table_matches_the_catalogue() {
    const START: &str = "<!-- key catalogue: generated from src/config/sockudo_keys.tsv -->\n";
    const END: &str = "<!-- end of key catalogue -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/README.md");
    let text = std::fs::read_to_string(&path).expect("config/README.md");
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        panic!("config/README.md lacks the key catalogue markers");
    };
    let current = &text[start + START.len()..end];
    let wanted = catalogue().markdown_table();
    if current != wanted {
        if std::env::var_os("UPDATE_CONFIG_README").is_some() {
            let updated = format!("{}{START}{wanted}{}", &text[..start], &text[end..]);
            std::fs::write(&path, updated).expect("write config/README.md");
        } else {
            panic!(
                "config/README.md's key table is out of date with src/config/sockudo_keys.tsv; run \
                 UPDATE_CONFIG_README=1 cargo test --lib config::catalogue_tests"
            );
        }
    }
}

/// Stand-ins for Sockudo 5.0.1's shipped files (same key sets, example values) load, TOML and JSON,
/// with backends pointed at local drivers through the environment.
#[test]
fn each_sockudo_shipped_key_set_loads() {
    for file in 1..=8u8 {
        let fixture = catalogue().sockudo_file_fixture(file);
        let (name, text) = if file == 8 {
            ("sockudo.toml", toml::to_string(&fixture).expect("TOML"))
        } else {
            ("sockudo.json", fixture.to_string())
        };
        let files: HashMap<PathBuf, String> = [(PathBuf::from(name), text)].into();
        let read = |p: &Path| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        };
        let env = env_of(&[("ADAPTER_DRIVER", "local".into()), ("PORT", "7001".into())]);
        let loaded = load_with(&["--config".into(), name.into()], &env, &read)
            .unwrap_or_else(|e| panic!("file {file}: {e}"));
        assert_eq!(loaded.config.app_manager.driver, "memory", "file {file}");
        assert_eq!(loaded.config.port, 7001);
        let warnings = loaded
            .notes
            .iter()
            .filter(|n| n.contains("Sockudo setting(s)"))
            .count();
        // At most one warning lists every ignored key (none when the file uses only honoured keys).
        assert_eq!(
            warnings,
            usize::from(!loaded.keys.ignored.is_empty()),
            "file {file}: {:?}",
            loaded.notes
        );
        assert!(!loaded.keys.honoured.is_empty(), "file {file}");
    }
}

/// Every variable Sockudo 5.0.1 reads by an exact name (the list in the reference's configuration
/// chapter), from its core, driver, default-app, logging, TLS, CORS, webhook and WebSocket groups.
const SOCKUDO_VARIABLES: &[&str] = &[
    "ACTIVITY_TIMEOUT",
    "ADAPTER_DRIVER",
    "APP_MANAGER_DRIVER",
    "APP_MANAGER_REGISTER_INLINE_APPS",
    "CACHE_CLEANUP_INTERVAL",
    "CACHE_DRIVER",
    "CACHE_MAX_CAPACITY",
    "CACHE_TTL_SECONDS",
    "CORS_CREDENTIALS",
    "CORS_HEADERS",
    "CORS_METHODS",
    "CORS_ORIGINS",
    "DATABASE_CONNECTION_POOL_SIZE",
    "DEBUG",
    "DEBUG_MODE",
    "ENVIRONMENT",
    "HEALTH_CHECK_TIMEOUT_MS",
    "HOST",
    "INSTANCE_PROCESS_ID",
    "LOG_COLORS_ENABLED",
    "LOG_INCLUDE_TARGET",
    "LOG_OUTPUT_FORMAT",
    "METRICS_DRIVER",
    "NATS_PASSWORD",
    "NATS_PREFIX",
    "NATS_REQUEST_TIMEOUT_MS",
    "NATS_SERVERS",
    "NATS_TOKEN",
    "NATS_USERNAME",
    "PORT",
    "QUEUE_DRIVER",
    "RATE_LIMITER_API_MAX_REQUESTS",
    "RATE_LIMITER_API_TRUST_HOPS",
    "RATE_LIMITER_API_WINDOW_SECONDS",
    "RATE_LIMITER_DRIVER",
    "RATE_LIMITER_ENABLED",
    "RATE_LIMITER_REDIS_PREFIX",
    "RATE_LIMITER_WS_MAX_REQUESTS",
    "RATE_LIMITER_WS_TRUST_HOPS",
    "RATE_LIMITER_WS_WINDOW_SECONDS",
    "REDIS_CLUSTER_NODES",
    "REDIS_URL",
    "RUST_LOG",
    "SHUTDOWN_GRACE_PERIOD",
    "SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS",
    "SOCKUDO_DEFAULT_APP_ANNOTATIONS_ENABLED",
    "SOCKUDO_DEFAULT_APP_ENABLED",
    "SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES",
    "SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION",
    "SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS",
    "SOCKUDO_DEFAULT_APP_ID",
    "SOCKUDO_DEFAULT_APP_KEY",
    "SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND",
    "SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH",
    "SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND",
    "SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS",
    "SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE",
    "SOCKUDO_DEFAULT_APP_MAX_EVENT_CHANNELS_AT_ONCE",
    "SOCKUDO_DEFAULT_APP_MAX_EVENT_NAME_LENGTH",
    "SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB",
    "SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL",
    "SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB",
    "SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND",
    "SOCKUDO_DEFAULT_APP_SECRET",
    "SOCKUDO_ENABLE_CLIENT_MESSAGES",
    "SOCKUDO_LOG_DEBUG",
    "SOCKUDO_LOG_PROD",
    "SOCKUDO_MAX_CONNECTIONS",
    "SOCKUDO_SERVER_ROLE",
    "SOCKUDO_SKIP_INLINE_APPS",
    "SSL_CERT_PATH",
    "SSL_ENABLED",
    "SSL_HTTP_PORT",
    "SSL_KEY_PATH",
    "SSL_REDIRECT_HTTP",
    "TAG_FILTERING_ENABLED",
    "UNIX_SOCKET_ENABLED",
    "UNIX_SOCKET_PATH",
    "UNIX_SOCKET_PERMISSION_MODE",
    "USER_AUTHENTICATION_TIMEOUT",
    "WEBHOOK_BATCHING_DURATION",
    "WEBHOOK_BATCHING_ENABLED",
    "WEBHOOK_BATCHING_SIZE",
    "WEBSOCKET_AUTO_PING",
    "WEBSOCKET_COMPRESSION",
    "WEBSOCKET_DISCONNECT_ON_BUFFER_FULL",
    "WEBSOCKET_IDLE_TIMEOUT",
    "WEBSOCKET_MAX_BACKPRESSURE",
    "WEBSOCKET_MAX_BYTES",
    "WEBSOCKET_MAX_FRAME_SIZE",
    "WEBSOCKET_MAX_MESSAGES",
    "WEBSOCKET_MAX_MESSAGE_SIZE",
    "WEBSOCKET_MAX_PAYLOAD_KB",
    "WEBSOCKET_PING_INTERVAL",
    "WEBSOCKET_WRITE_BUFFER_SIZE",
];

/// Sockudo's variables follow the key rule: each sets a catalogue key (honoured: applied, ignored:
/// reported in the startup warning) or is one of the few without a key, honoured in `env.rs`.
/// A variable known to neither would be silently dropped.
#[test]
fn every_sockudo_variable_is_applied_or_reported() {
    let env_only: Vec<&str> = super::env::ENV_ONLY.iter().map(|(name, _)| *name).collect();
    let unknown: Vec<&&str> = SOCKUDO_VARIABLES
        .iter()
        .filter(|var| catalogue().key_of_env(var).is_none() && !env_only.contains(var))
        .collect();
    assert!(
        unknown.is_empty(),
        "Sockudo variables neither in sockudo_keys.tsv's env column nor in env::ENV_ONLY: {unknown:?}"
    );
    for var in [
        "CACHE_CLEANUP_INTERVAL",
        "CACHE_MAX_CAPACITY",
        "SOCKUDO_DEFAULT_APP_ANNOTATIONS_ENABLED",
    ] {
        let get = env_of(&[(var, "1".into())]);
        assert_eq!(Env::new(&get).ignored_sockudo_vars(), vec![var.to_string()]);
    }
}
