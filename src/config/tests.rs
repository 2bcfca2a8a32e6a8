//! End-to-end tests of [`load_with`]: layering, file discovery, apps, and the shipped example files.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::*;

/// An in-memory file system and environment.
#[derive(Default)]
struct World {
    files: HashMap<PathBuf, String>,
    env: HashMap<String, String>,
}

impl World {
    fn file(mut self, path: &str, text: &str) -> Self {
        self.files.insert(PathBuf::from(path), text.to_string());
        self
    }

    fn env(mut self, key: &str, value: &str) -> Self {
        self.env.insert(key.to_string(), value.to_string());
        self
    }

    fn load(&self, args: &[&str]) -> Result<Loaded, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let env = |k: &str| self.env.get(k).cloned();
        let read = |p: &Path| -> io::Result<String> {
            self.files
                .get(p)
                .cloned()
                .ok_or_else(|| io::ErrorKind::NotFound.into())
        };
        load_with(&args, &env, &read)
    }
}

const FILE: &str = r#"{
  "host": "10.0.0.1", "port": 7000, "shards": 2, "activity_timeout": 60,
  "app_manager": {"array": {"apps": [
    {"id": "1", "key": "k1", "secret": "s1", "max_connections": "100", "enabled": "true"}
  ]}}
}"#;

#[test]
fn precedence_is_defaults_then_file_then_cli_then_env() {
    let world = World::default().file("config/config.json", FILE);

    let file_only = world.load(&["sockudo"]).expect("loads").config;
    assert_eq!(
        (file_only.host.as_str(), file_only.port, file_only.shards),
        ("10.0.0.1", 7000, 2)
    );
    assert_eq!(file_only.activity_timeout, 60);
    assert_eq!(file_only.user_authentication_timeout, 3600, "default kept");

    let cli = world
        .load(&["sockudo", "--port", "7001", "--host", "127.0.0.1"])
        .expect("loads")
        .config;
    assert_eq!(
        (cli.host.as_str(), cli.port, cli.shards),
        ("127.0.0.1", 7001, 2)
    );

    let world = world.env("PORT", "7002").env("ACTIVITY_TIMEOUT", "30");
    let env = world
        .load(&["sockudo", "--port", "7001", "--host", "127.0.0.1"])
        .expect("loads")
        .config;
    assert_eq!(
        (env.host.as_str(), env.port, env.activity_timeout),
        ("127.0.0.1", 7002, 30)
    );
}

#[test]
fn no_file_no_apps_gives_the_development_app_and_a_loud_note() {
    let loaded = World::default().load(&[]).expect("loads");
    assert_eq!(loaded.source, ConfigSource::NoFile);
    assert_eq!(
        loaded.config.app_manager.array.apps,
        vec![AppConfig::dev_app()]
    );
    assert_eq!(loaded.notes.len(), 1, "{:?}", loaded.notes);
    assert!(
        loaded.notes[0]
            .starts_with("WARNING: no app configured: using development app app-id/app-key"),
        "{:?}",
        loaded.notes
    );
    assert_eq!(loaded.config.port, 6001);
}

#[test]
fn no_development_app_for_non_memory_app_managers() {
    let loaded = World::default()
        .env("APP_MANAGER_DRIVER", "mysql")
        .load(&[])
        .expect("loads");
    assert!(loaded.config.app_manager.array.apps.is_empty());
    assert!(loaded.notes.is_empty(), "{:?}", loaded.notes);
}

#[test]
fn string_numbers_in_file_apps_are_accepted() {
    let loaded = World::default()
        .file("config/config.json", FILE)
        .load(&[])
        .expect("loads");
    let apps = &loaded.config.app_manager.array.apps;
    assert_eq!(apps.len(), 1, "the file's app, no development app");
    assert_eq!(apps[0].max_connections, Some(100));
    assert!(apps[0].enabled);
    assert!(loaded.notes.is_empty(), "{:?}", loaded.notes);
}

#[test]
fn env_default_app_is_added_or_replaces_the_same_id() {
    let world = World::default()
        .file("config/config.json", FILE)
        .env("SOCKUDO_DEFAULT_APP_ID", "2")
        .env("SOCKUDO_DEFAULT_APP_KEY", "k2")
        .env("SOCKUDO_DEFAULT_APP_SECRET", "s2");
    let apps = world
        .load(&[])
        .expect("loads")
        .config
        .app_manager
        .array
        .apps;
    let ids: Vec<_> = apps
        .iter()
        .map(|a| (a.id.as_str(), a.key.as_str()))
        .collect();
    assert_eq!(ids, vec![("1", "k1"), ("2", "k2")]);

    let world = world.env("SOCKUDO_DEFAULT_APP_ID", "1");
    let loaded = world.load(&[]).expect("loads");
    let apps = &loaded.config.app_manager.array.apps;
    assert_eq!(apps.len(), 1);
    assert_eq!(
        (apps[0].key.as_str(), apps[0].max_connections),
        ("k2", None),
        "replaced wholesale"
    );
    assert_eq!(
        loaded.notes,
        vec!["app \"1\" configured from SOCKUDO_DEFAULT_APP_* environment variables".to_string()]
    );
}

#[test]
fn inline_apps_are_skipped_as_sockudo_skips_them() {
    for (var, value) in [
        ("SOCKUDO_SKIP_INLINE_APPS", "true"),
        ("APP_MANAGER_REGISTER_INLINE_APPS", "false"),
    ] {
        let world = World::default()
            .file("config/config.json", FILE)
            .env("APP_MANAGER_DRIVER", "mysql")
            .env(var, value)
            .env("SOCKUDO_DEFAULT_APP_ID", "2")
            .env("SOCKUDO_DEFAULT_APP_KEY", "k2")
            .env("SOCKUDO_DEFAULT_APP_SECRET", "s2");
        let loaded = world.load(&[]).expect("loads");
        let ids: Vec<_> = loaded
            .config
            .app_manager
            .array
            .apps
            .iter()
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(ids, vec!["2"], "{var}={value}: the file's app is dropped");
        assert!(
            loaded.notes[0].starts_with("1 inline app(s) of the config file skipped"),
            "{:?}",
            loaded.notes
        );
    }
    let kept = World::default()
        .file("config/config.json", FILE)
        .env("SOCKUDO_SKIP_INLINE_APPS", "false")
        .env("APP_MANAGER_REGISTER_INLINE_APPS", "true")
        .load(&[])
        .expect("loads");
    assert_eq!(kept.config.app_manager.array.apps.len(), 1);
    let err = World::default()
        .file("config/config.json", FILE)
        .env("SOCKUDO_SKIP_INLINE_APPS", "perhaps")
        .load(&[])
        .unwrap_err();
    assert!(
        err.to_string().starts_with("SOCKUDO_SKIP_INLINE_APPS: "),
        "{err}"
    );
}

#[test]
fn partial_default_app_is_an_error() {
    let err = World::default()
        .env("SOCKUDO_DEFAULT_APP_KEY", "k")
        .load(&[])
        .unwrap_err();
    assert!(
        matches!(err, ConfigError::PartialDefaultApp { ref missing } if missing == &vec!["SOCKUDO_DEFAULT_APP_ID", "SOCKUDO_DEFAULT_APP_SECRET"]),
        "{err:?}"
    );
}

#[test]
fn explicit_file_from_cli_or_env_and_toml_is_preferred_by_default() {
    let world = World::default()
        .file("config/config.toml", "port = 7100\n")
        .file("config/config.json", r#"{"port": 7200}"#)
        .file("/etc/a.toml", "port = 7300\n")
        .file("/etc/b.json", r#"{"port": 7400}"#);
    let loaded = world.load(&[]).expect("loads");
    assert_eq!(
        (loaded.config.port, loaded.source.path()),
        (7100, Some(Path::new("config/config.toml")))
    );
    let loaded = world.load(&["-c", "/etc/a.toml"]).expect("loads");
    assert_eq!(
        (loaded.config.port, loaded.source.to_string().as_str()),
        (7300, "/etc/a.toml")
    );
    let world = world.env("CONFIG_FILE", "/etc/b.json");
    let loaded = world.load(&["-c", "/etc/a.toml"]).expect("loads");
    assert_eq!(
        loaded.config.port, 7400,
        "CONFIG_FILE overrides --config like every variable overrides its flag"
    );
}

#[test]
fn missing_explicit_file_and_bad_extension_are_errors() {
    let world = World::default().file("config/config.toml", "port = 7100\n");
    let err = world.load(&["--config", "nope.toml"]).unwrap_err();
    assert_eq!(err.to_string(), "config file nope.toml does not exist");
    let err = world
        .env("CONFIG_FILE", "sockudo.yaml")
        .load(&[])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config file sockudo.yaml: unsupported format (the name must end in .json or .toml)"
    );
}

#[test]
fn unknown_key_in_an_app_names_file_and_path() {
    let text = r#"{"app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s", "max_conection": 1}]}}}"#;
    let err = World::default()
        .file("config/config.json", text)
        .load(&[])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config/config.json: unknown key \"app_manager.array.apps[0].max_conection\" \
         (did you mean \"app_manager.array.apps[0].max_connections\"?)"
    );
    let toml = "[app_manager]\ndriver = \"memory\"\nspeed = 3\n";
    let err = World::default()
        .file("config/config.toml", toml)
        .load(&[])
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("config/config.toml: unknown key \"app_manager.speed\" (did you mean"),
        "{err}"
    );
}

#[test]
fn sockudo_sections_are_ignored_with_one_warning() {
    let text = r#"{"port": 6002, "cache": {"driver": "memory"}, "ssl": {"passphrase": ""},
                  "app_manager": {"driver": "memory", "cache": {"enabled": false, "ttl": 300},
                                  "array": {"apps": [{"id": "a", "key": "k", "secret": "s"}]}}}"#;
    let loaded = World::default()
        .file("config/config.json", text)
        .env("RATE_LIMITER_ENABLED", "false")
        .load(&[])
        .expect("loads");
    assert_eq!(loaded.config.port, 6002);
    assert!(!loaded.config.app_manager.cache.enabled);
    assert_eq!(
        loaded.notes,
        vec![
            "WARNING: 2 Sockudo setting(s) of features this server does not have were ignored \
             (see config/README.md): keys ssl.passphrase; environment RATE_LIMITER_ENABLED"
        ]
    );
}

#[test]
fn validation_runs_after_all_layers() {
    let err = World::default().env("PORT", "0").load(&[]).unwrap_err();
    assert!(err.to_string().starts_with("port: must not be 0"), "{err}");
    let text = r#"{"app_manager": {"array": {"apps": [
        {"id": "a", "key": "k", "secret": "s"}, {"id": "b", "key": "k", "secret": "t"}]}}}"#;
    let err = World::default()
        .file("config/config.json", text)
        .load(&[])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "app_manager.array.apps[1].key: duplicate app key \"k\" (also apps[0])"
    );
}

#[test]
fn cli_errors_come_before_reading_files() {
    let err = World::default().load(&["--help"]).unwrap_err();
    assert!(matches!(err, ConfigError::Help(_)));
    let err = World::default()
        .load(&["sockudo", "--verbose"])
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown flag \"--verbose\" (see --help)");
}

/// The example files shipped in `config/` must load, agree with each other and with `Config::default()`.
#[test]
fn shipped_example_files_load_and_match_the_defaults() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut loaded = Vec::new();
    for name in ["config.toml", "config.json"] {
        let path = dir.join(name);
        let args = vec!["--config".to_string(), path.display().to_string()];
        let result = load(&args, &|_| None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(result.source, ConfigSource::File(path));
        loaded.push(result);
    }
    let (toml, json) = (&loaded[0], &loaded[1]);

    let server_part = |c: &Config| {
        let mut c = c.clone();
        c.app_manager.array.apps.clear();
        c
    };
    let defaults = Config::default();
    assert_eq!(
        server_part(&toml.config),
        defaults,
        "config.toml shows the defaults"
    );
    assert_eq!(
        server_part(&json.config),
        defaults,
        "config.json shows the defaults"
    );

    // The TOML example leaves its app commented out, so the development app (and its warning) apply.
    assert_eq!(
        toml.config.app_manager.array.apps,
        vec![AppConfig::dev_app()]
    );
    assert!(toml
        .notes
        .iter()
        .any(|n| n.starts_with("WARNING: no app configured")));
    // The JSON example spells out every app field.
    let app = &json.config.app_manager.array.apps[0];
    assert_eq!((app.id.as_str(), app.key.as_str()), ("app-id", "app-key"));
    assert_eq!(app.max_connections, Some(10000));
    assert_eq!(app.allowed_origins, Some(vec!["*".to_string()]));
    assert!(json
        .notes
        .iter()
        .any(|n| n.contains("public development secret")));
}

/// A file in the shape Sockudo ships (its sections, its spellings) loads with notes, not errors.
#[test]
fn a_sockudo_shaped_file_carries_over() {
    let text = r#"{
      "debug": false, "host": "127.0.0.1", "port": 6001, "mode": "production", "path_prefix": "/",
      "shutdown_grace_period": 10, "websocket_max_payload_kb": 64,
      "unix_socket": {"enabled": false},
      "adapter": {"driver": "local", "redis": {"prefix": "p:"}, "nats": {"servers": []},
                  "cluster_health": {"enabled": true}},
      "app_manager": {"driver": "memory", "cache": {"enabled": false, "ttl": 300},
        "array": {"apps": [{"id": "app-id", "key": "app-key", "secret": "prod-secret",
                            "max_connections": "10000", "enable_client_messages": true,
                            "enabled": true, "max_client_events_per_second": "1000",
                            "allowed_origins": ["*"]}]}},
      "cache": {"driver": "memory"}, "database": {"redis": {"port": 6379}}, "queue": {"driver": "memory"},
      "rate_limiter": {"enabled": false},
      "metrics": {"enabled": false, "driver": "prometheus", "host": "0.0.0.0", "port": 9601,
                  "prometheus": {"prefix": "sockudo_"}},
      "ssl": {"enabled": false}, "cors": {"origin": ["*"]},
      "channel_limits": {"max_name_length": 200, "cache_ttl": 3600},
      "event_limits": {"max_channels_at_once": 1000, "max_name_length": 2000,
                       "max_payload_in_kb": 1000, "max_batch_size": 100},
      "presence": {"max_members_per_channel": 100, "max_member_size_in_kb": 2},
      "http_api": {"request_limit_in_mb": 10, "accept_traffic": {"memory_threshold": 0.9}},
      "webhooks": {"batching": {"enabled": false, "duration": 50}},
      "instance": {"process_id": "x"}, "logging": {"colors_enabled": true, "include_target": true},
      "database_pooling": {"enabled": true}, "cleanup": {"async_enabled": true}
    }"#;
    let loaded = World::default()
        .file("/app/config/config.json", text)
        .load(&["--config", "/app/config/config.json"])
        .expect("loads");
    let c = &loaded.config;
    assert_eq!(
        (c.host.as_str(), c.channel_limits.max_name_length),
        ("127.0.0.1", 200)
    );
    assert_eq!(c.event_limits.max_payload_in_kb, 1000);
    assert_eq!(c.presence.max_member_size_in_kb, 2);
    assert!(!c.metrics.enabled);
    assert_eq!(
        c.app_manager.array.apps[0].max_client_events_per_second,
        Some(1000)
    );
    assert_eq!(c.cache.driver, "memory");
    let mut ignored = loaded.keys.ignored.clone();
    ignored.sort();
    assert_eq!(
        ignored,
        vec![
            "cleanup.async_enabled",
            "cors.origin",
            "database_pooling.enabled",
            "http_api.accept_traffic.memory_threshold",
            "instance.process_id",
            "mode",
            "path_prefix",
            "rate_limiter.enabled",
        ]
    );
    let warnings: Vec<&String> = loaded
        .notes
        .iter()
        .filter(|n| n.starts_with("WARNING: 8 Sockudo"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning lists them all: {:?}",
        loaded.notes
    );
    assert!(loaded
        .keys
        .honoured
        .contains(&"app_manager.array.apps[0].max_connections".to_string()));
    assert!(loaded
        .keys
        .honoured
        .contains(&"metrics.prometheus.prefix".to_string()));
}

#[test]
fn sockudo_metrics_prefix_spelling_works_in_toml() {
    let toml =
        "[metrics]\ndriver = \"prometheus\"\nport = 9700\n[metrics.prometheus]\nprefix = \"ws_\"\n";
    let loaded = World::default()
        .file("config/config.toml", toml)
        .load(&[])
        .expect("loads");
    assert_eq!(loaded.config.metrics.prometheus_prefix, "ws_");
    assert_eq!(loaded.config.metrics.port, 9700);
}

#[test]
fn variables_in_the_file_are_expanded_from_the_environment() {
    let text = r#"{"port": ${SOCKUDO_PORT:-7005}, "metrics": {"host": "${METRICS_BIND}"}}"#;
    let world = World::default().file("config/config.json", text);
    let err = world.load(&[]).unwrap_err();
    assert!(matches!(err, ConfigError::UnsetVariable { .. }), "{err}");
    let world = world.env("METRICS_BIND", "127.0.0.2");
    let config = world.load(&[]).expect("loads").config;
    assert_eq!(
        (config.port, config.metrics.host.as_str()),
        (7005, "127.0.0.2")
    );
    let config = world
        .env("SOCKUDO_PORT", "7006")
        .load(&[])
        .expect("loads")
        .config;
    assert_eq!(config.port, 7006);
}

#[test]
fn unix_socket_from_file_and_environment_with_a_checked_mode() {
    let text =
        r#"{"unix_socket": {"enabled": true, "path": "/run/s/a.sock", "permission_mode": "600"}}"#;
    let loaded = World::default()
        .file("config/config.json", text)
        .env("UNIX_SOCKET_PATH", "/run/s/b.sock")
        .load(&[])
        .expect("loads");
    let u = &loaded.config.unix_socket;
    assert!(u.enabled);
    assert_eq!(u.path, "/run/s/b.sock", "environment wins over the file");
    assert_eq!(u.mode(), Ok(0o600));
    let err = World::default()
        .env("UNIX_SOCKET_ENABLED", "true")
        .env("UNIX_SOCKET_PERMISSION_MODE", "999")
        .load(&[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("unix_socket.permission_mode"), "{err}");
    assert!(err.contains("\"999\" is not an octal file mode"), "{err}");
}

#[test]
fn ssl_section_and_environment_configure_tls() {
    let loaded = World::default()
        .file(
            "config/config.json",
            r#"{"ssl": {"enabled": true, "cert_path": "/c.pem", "key_path": "/k.pem",
                        "redirect_http": true, "http_port": 8080}}"#,
        )
        .load(&[])
        .expect("loads");
    let ssl = &loaded.config.ssl;
    assert!(ssl.enabled && ssl.redirect_http);
    assert_eq!(
        (ssl.cert_path.as_str(), ssl.key_path.as_str(), ssl.http_port),
        ("/c.pem", "/k.pem", 8080)
    );
    let loaded = World::default()
        .file("config/config.json", r#"{"ssl": {"enabled": false}}"#)
        .env("SSL_ENABLED", "true")
        .env("SSL_CERT_PATH", "/e/c.pem")
        .env("SSL_KEY_PATH", "/e/k.pem")
        .env("SSL_REDIRECT_HTTP", "1")
        .env("SSL_HTTP_PORT", "8081")
        .load(&[])
        .expect("loads");
    let ssl = &loaded.config.ssl;
    assert!(ssl.enabled && ssl.redirect_http);
    assert_eq!(
        (ssl.cert_path.as_str(), ssl.key_path.as_str(), ssl.http_port),
        ("/e/c.pem", "/e/k.pem", 8081)
    );
}

#[test]
fn tls_settings_that_cannot_work_are_refused() {
    let err = World::default()
        .file(
            "config/config.json",
            r#"{"ssl": {"enabled": true, "cert_path": " "}}"#,
        )
        .load(&[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssl.cert_path"), "{err}");
    let err = World::default()
        .file(
            "config/config.json",
            r#"{"port": 6001, "ssl": {"enabled": true, "redirect_http": true, "http_port": 6001}}"#,
        )
        .load(&[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssl.http_port"), "{err}");
    let err = World::default()
        .env("SSL_ENABLED", "true")
        .env("UNIX_SOCKET_ENABLED", "true")
        .load(&[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssl.enabled"), "{err}");
}

#[test]
fn delta_and_tag_sections_load_validate_and_take_the_env() {
    let text = r#"{"delta_compression": {"algorithm": "xdelta3", "full_message_interval": 5,
                                        "conflation_key_path": "asset", "omit_delta_algorithm": true},
                  "tag_filtering": {"enable_tags": false},
                  "app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s",
                      "channel_delta_compression": {"ticker:*": {"conflation_key": "symbol"}, "raw": "disabled"}}]}}}"#;
    let loaded = World::default()
        .file("config/config.json", text)
        .env("TAG_FILTERING_ENABLED", "yes")
        .load(&[])
        .expect("loads");
    let c = &loaded.config;
    assert!(loaded.notes.is_empty(), "{:?}", loaded.notes);
    assert_eq!(c.delta_compression.algorithm, "xdelta3");
    assert_eq!(c.delta_compression.full_message_interval, 5);
    assert_eq!(c.delta_compression.min_message_size, 100);
    assert!(c.tag_filtering.enabled);
    assert!(!c.tag_filtering.enable_tags);
    assert!(c.app_manager.array.apps[0]
        .channel_delta_compression
        .is_some());

    let bad = |text: &str| {
        World::default()
            .file("config/config.json", text)
            .load(&[])
            .unwrap_err()
            .to_string()
    };
    assert!(bad(r#"{"delta_compression": {"algorithm": "zstd"}}"#)
        .starts_with("delta_compression.algorithm: "));
    assert!(
        bad(r#"{"delta_compression": {"full_message_interval": 0}}"#)
            .starts_with("delta_compression.full_message_interval: ")
    );
    let app = r#"{"app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s",
                  "channel_delta_compression": {"x": "brotli"}}]}}}"#;
    assert!(bad(app).starts_with("app_manager.array.apps[0].channel_delta_compression: "));
}
