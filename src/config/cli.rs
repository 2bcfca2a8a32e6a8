//! Command-line flags. There are no positional arguments, so a first argument that does not start
//! with `-` is taken to be the program name (callers may pass `std::env::args()` whole or without argv[0]).

use super::error::ConfigError;
use super::model::Config;
use super::values::{parse_port, parse_uint};

/// The text printed for `--help`.
pub const HELP: &str = "\
sockudo: Pusher-compatible (protocol v7) WebSocket server

Usage: sockudo [OPTIONS]

Options (each also settable by the environment variable named after it):
  -c, --config <PATH>   Config file (.toml or .json); env CONFIG_FILE.
                        Default: config/config.toml, then config/config.json, if present
      --host <ADDR>     Listen address (default 0.0.0.0); env HOST
  -p, --port <PORT>     Listen port (default 6001); env PORT
      --shards <N>      Shards / threads, 0 = one per CPU (default 0); env SHARDS
      --debug           Verbose logging; env DEBUG
      --check-config    Validate the configuration, print it (secrets masked) with the keys
                        honoured and ignored, and exit; exit status 2 when it is invalid
  -h, --help            Print this help
  -V, --version         Print the version

Environment variables (config key in brackets; see config/README.md):
  HOST [host]  PORT [port]  SHARDS [shards]  DEBUG / DEBUG_MODE [debug]
  ACTIVITY_TIMEOUT [activity_timeout]  PONG_TIMEOUT [pong_timeout]
  USER_AUTHENTICATION_TIMEOUT [user_authentication_timeout]
  SHUTDOWN_GRACE_PERIOD [shutdown_grace_period]  WEBSOCKET_MAX_PAYLOAD_KB [websocket_max_payload_kb]
  WEBSOCKET_MAX_MESSAGES [websocket.max_messages]  WEBSOCKET_MAX_BYTES [websocket.max_bytes]
  WEBSOCKET_DISCONNECT_ON_BUFFER_FULL [websocket.disconnect_on_buffer_full]
  WEBSOCKET_MAX_SUBSCRIPTIONS [websocket.max_subscriptions]
  HTTP_API_HEADER_TIMEOUT, HTTP_API_BODY_TIMEOUT, HTTP_API_KEEP_ALIVE_TIMEOUT [http_api.*_timeout, seconds]
  HTTP_API_REQUEST_LIMIT_IN_MB [http_api.request_limit_in_mb]
  LOG_OUTPUT_FORMAT [logging.output_format]  LOG_COLORS_ENABLED [logging.colors_enabled]
  LOG_INCLUDE_TARGET [logging.include_target]  RUST_LOG (log filter, e.g. info,sockudo=debug)
  SOCKUDO_LOG_DEBUG / SOCKUDO_LOG_PROD (log filter with debug on / off, when RUST_LOG is unset)
  SOCKUDO_SKIP_INLINE_APPS=true / APP_MANAGER_REGISTER_INLINE_APPS=false (drop the file's inline apps)
  METRICS_ENABLED [metrics.enabled]  METRICS_HOST [metrics.host]  METRICS_PORT [metrics.port]
  METRICS_PROMETHEUS_PREFIX [metrics.prometheus_prefix]  METRICS_DRIVER (prometheus only)
  ADAPTER_DRIVER [adapter.driver: local, redis, redis-cluster, nats]  APP_MANAGER_DRIVER [app_manager.driver]
  ADAPTER_REQUESTS_TIMEOUT [adapter.requests_timeout]  REDIS_URL [adapter.redis.url]
  REDIS_PREFIX [adapter.redis.prefix]  REDIS_CLUSTER_NODES [adapter.cluster.nodes]
  CACHE_DRIVER [cache.driver: memory, redis, redis-cluster, none]
  RATE_LIMITER_DRIVER [rate_limiter.driver: memory, redis, redis-cluster]
  RATE_LIMITER_REDIS_PREFIX [rate_limiter.redis.prefix]
  NATS_SERVERS [adapter.nats.servers]  NATS_PREFIX [adapter.nats.prefix]
  NATS_USERNAME, NATS_PASSWORD, NATS_TOKEN [adapter.nats.*]  NATS_CONNECTION_TIMEOUT_MS
  NATS_REQUEST_TIMEOUT_MS  NATS_NO_ECHO  NATS_NODES_NUMBER [adapter.nats.*]
  CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS, CLUSTER_HEALTH_NODE_TIMEOUT_MS [adapter.cluster_health.*]
  WEBHOOK_BATCHING_ENABLED [webhooks.batching.enabled]
  WEBHOOK_BATCHING_DURATION [webhooks.batching.duration]  WEBHOOK_BATCHING_SIZE [webhooks.batching.size]
  QUEUE_DRIVER [queue.driver: memory, redis, redis-cluster, sqs]  QUEUE_BUFFER_SIZE [queue.buffer_size]
  QUEUE_MAX_IN_FLIGHT [queue.max_in_flight]  REDIS_CLUSTER_QUEUE_PREFIX [queue.redis_cluster.prefix]
  SQS_REGION, SQS_QUEUE_URL, SQS_QUEUE_NAME, SQS_ENDPOINT_URL, SQS_VISIBILITY_TIMEOUT,
  SQS_WAIT_TIME_SECONDS, SQS_MAX_MESSAGES [queue.sqs.*]
  DATABASE_REDIS_HOST, _PORT, _USERNAME, _PASSWORD, _DB, _CLUSTER_NODES [database.redis.*; the queue's
  Redis when REDIS_URL is unset]
  SOCKUDO_IO_MEMORY_KB [runtime.io_memory_kb]  SOCKUDO_PREEMPT_TIMER_MS [runtime.preempt_timer_ms]
  SOCKUDO_SPIN_BEFORE_PARK_US [runtime.spin_before_park_us]  SOCKUDO_RING_DEPTH [runtime.ring_depth]
  TAG_FILTERING_ENABLED [tag_filtering.enabled]
  APP_MANAGER_CACHE_ENABLED [app_manager.cache.enabled]  APP_MANAGER_CACHE_TTL, CACHE_TTL_SECONDS [app_manager.cache.ttl]
  DATABASE_POSTGRES_*, DATABASE_MYSQL_* (HOST, PORT, USERNAME, USER, PASSWORD, DATABASE, TABLE_NAME,
  CONNECTION_POOL_SIZE) [database.postgres.*, database.mysql.*]
  DATABASE_CONNECTION_POOL_SIZE [database.*.connection_pool_size]
  DATABASE_DYNAMODB_REGION, DATABASE_DYNAMODB_TABLE_NAME, DATABASE_DYNAMODB_ENDPOINT_URL (or _ENDPOINT),
  DATABASE_DYNAMODB_AWS_ACCESS_KEY_ID, DATABASE_DYNAMODB_AWS_SECRET_ACCESS_KEY [database.dynamodb.*]
  UNIX_SOCKET_ENABLED [unix_socket.enabled]  UNIX_SOCKET_PATH [unix_socket.path]
  UNIX_SOCKET_PERMISSION_MODE [unix_socket.permission_mode]
  SSL_ENABLED [ssl.enabled]  SSL_CERT_PATH [ssl.cert_path]  SSL_KEY_PATH [ssl.key_path]
  SSL_REDIRECT_HTTP [ssl.redirect_http]  SSL_HTTP_PORT [ssl.http_port]
  SOCKUDO_DEFAULT_APP_{ID,KEY,SECRET,ENABLED,ENABLE_CLIENT_MESSAGES,MAX_CONNECTIONS,...}
                        one app for the memory driver (ID, KEY and SECRET together)
  NOTIFY_SOCKET, WATCHDOG_USEC  set by systemd (Type=notify, WatchdogSec=)

Precedence: defaults < config file < command line < environment variables.
Signals: SIGTERM/SIGINT drain then stop (a second one stops at once); SIGHUP reloads
apps, the log level and the TLS certificate and key from the same sources.
";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq)]
pub struct CliArgs {
    /// `--config` / `-c`.
    pub config: Option<String>,
    /// `--host`.
    pub host: Option<String>,
    /// `--port` / `-p`.
    pub port: Option<u16>,
    /// `--shards`.
    pub shards: Option<usize>,
    /// `--debug` (a bare switch).
    pub debug: bool,
    /// `--check-config`: validate, print the effective configuration and exit.
    pub check_config: bool,
}

impl CliArgs {
    /// Parses `args`. `--help` / `--version` return [`ConfigError::Help`] / [`ConfigError::Version`]
    /// wherever they appear. Values may be given as `--flag value` or `--flag=value`.
    pub fn parse(args: &[String]) -> Result<Self, ConfigError> {
        let args = match args.first() {
            Some(first) if !first.starts_with('-') => &args[1..],
            _ => args,
        };
        if args.iter().any(|a| a == "--help" || a == "-h") {
            return Err(ConfigError::Help(HELP.to_string()));
        }
        if args.iter().any(|a| a == "--version" || a == "-V") {
            return Err(ConfigError::Version);
        }
        let mut out = CliArgs::default();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || -> Result<String, ConfigError> {
                match inline.clone().or_else(|| rest.next().cloned()) {
                    Some(v) => Ok(v),
                    None => Err(ConfigError::Cli(format!("{flag}: a value is required"))),
                }
            };
            let bad = |message: String| ConfigError::Cli(format!("{flag}: {message}"));
            match flag {
                "--config" | "-c" => out.config = Some(value()?),
                "--host" => out.host = Some(value()?),
                "--port" | "-p" => out.port = Some(parse_port(&value()?).map_err(bad)?),
                "--shards" => out.shards = Some(parse_uint(&value()?).map_err(bad)?),
                "--debug" if inline.is_none() => out.debug = true,
                "--debug" => return Err(bad("takes no value".into())),
                "--check-config" if inline.is_none() => out.check_config = true,
                "--check-config" => return Err(bad("takes no value".into())),
                _ if flag.starts_with('-') => {
                    return Err(ConfigError::Cli(format!(
                        "unknown flag \"{flag}\" (see --help)"
                    )))
                }
                _ => {
                    return Err(ConfigError::Cli(format!(
                        "unexpected argument \"{arg}\" (see --help)"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Overwrites the settings given on the command line.
    pub fn apply(&self, config: &mut Config) {
        if let Some(host) = &self.host {
            config.host = host.clone();
        }
        if let Some(port) = self.port {
            config.port = port;
        }
        if let Some(shards) = self.shards {
            config.shards = shards;
        }
        if self.debug {
            config.debug = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<CliArgs, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        CliArgs::parse(&args)
    }

    #[test]
    fn all_flags_in_both_spellings() {
        let long = parse(&[
            "--config",
            "a.toml",
            "--host",
            "127.0.0.1",
            "--port",
            "7000",
            "--shards",
            "3",
            "--debug",
            "--check-config",
        ])
        .expect("parses");
        assert_eq!(
            long,
            CliArgs {
                config: Some("a.toml".into()),
                host: Some("127.0.0.1".into()),
                port: Some(7000),
                shards: Some(3),
                debug: true,
                check_config: true,
            }
        );
        let short = parse(&["sockudo", "-c", "b.json", "-p", "7001"]).expect("parses");
        assert_eq!(short.config.as_deref(), Some("b.json"));
        assert_eq!(short.port, Some(7001));
        assert!(!short.debug);
        let inline = parse(&["--port=7002", "--config=c.toml"]).expect("parses");
        assert_eq!(
            (inline.port, inline.config.as_deref()),
            (Some(7002), Some("c.toml"))
        );
    }

    #[test]
    fn help_and_version_win_over_everything_else() {
        match parse(&["sockudo", "--bogus", "-h"]) {
            Err(ConfigError::Help(text)) => assert!(text.contains("--config <PATH>")),
            other => panic!("expected help, got {other:?}"),
        }
        let err = parse(&["-V"]).unwrap_err();
        assert!(matches!(err, ConfigError::Version));
        assert_eq!(
            err.to_string(),
            format!("sockudo {}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn check_config_is_a_switch() {
        assert!(parse(&["--check-config"]).expect("parses").check_config);
        assert!(!parse(&[]).expect("parses").check_config);
    }

    #[test]
    fn help_names_every_environment_variable_the_loader_reads() {
        let env_source = include_str!("env.rs");
        let start = env_source.find("pub fn apply").expect("Env::apply");
        let end = env_source
            .find("pub fn default_app")
            .expect("Env::default_app");
        for line in env_source[start..end].lines() {
            for quoted in line.split('"').skip(1).step_by(2) {
                let is_var = quoted.len() > 2
                    && quoted
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit());
                if is_var {
                    assert!(HELP.contains(quoted), "--help does not mention {quoted}");
                }
            }
        }
    }

    #[test]
    fn mistakes_name_the_flag() {
        let msg = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert_eq!(
            msg(&["--prot", "1"]),
            "unknown flag \"--prot\" (see --help)"
        );
        assert_eq!(
            msg(&["--port", "abc"]),
            "--port: \"abc\" is not a valid port"
        );
        assert_eq!(msg(&["-p"]), "-p: a value is required");
        assert_eq!(
            msg(&["--shards", "-1"]),
            "--shards: \"-1\" is not a valid non-negative integer"
        );
        assert_eq!(msg(&["--debug=yes"]), "--debug: takes no value");
        assert_eq!(msg(&["--check-config=1"]), "--check-config: takes no value");
        assert_eq!(
            msg(&["--port", "1", "extra"]),
            "unexpected argument \"extra\" (see --help)"
        );
    }

    #[test]
    fn apply_overwrites_only_given_settings() {
        let mut config = Config::default();
        parse(&["--port", "7000", "--debug"])
            .expect("parses")
            .apply(&mut config);
        assert_eq!(config.port, 7000);
        assert!(config.debug);
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.shards, 0);
    }
}
