//! Environment variables: the last layer, overriding file and CLI. Names are Sockudo's, and the key
//! catalogue records which setting each one sets: variables of honoured settings are applied here (a
//! unit test checks every one the catalogue lists), variables of ignored Sockudo features are reported.
//!
//! An empty (or all-whitespace) variable counts as unset. A bad value is an error naming the variable.

use std::str::FromStr;

use super::app::AppConfig;
use super::catalogue::catalogue;
use super::error::ConfigError;
use super::model::{Config, LogFormat};
use super::values::{parse_bool, parse_list, parse_port, parse_uint};

/// Variable naming the config file (overrides `--config`, like every variable overrides its flag).
pub const CONFIG_FILE: &str = "CONFIG_FILE";

/// Prefix of the variables describing the default app.
const APP: &str = "SOCKUDO_DEFAULT_APP_";

/// Sockudo's variables that set no configuration key (so the key catalogue cannot list them), each
/// honoured here with Sockudo's meaning (`RUST_LOG` and `SOCKUDO_LOG_*` in `logging.rs`). A unit test
/// checks that each of Sockudo's variables is in the catalogue or in this list.
#[cfg(test)]
pub const ENV_ONLY: &[(&str, &str)] = &[
    (CONFIG_FILE, "the config file (instead of --config)"),
    ("RUST_LOG", "log filter; always wins"),
    (
        "SOCKUDO_LOG_DEBUG",
        "log filter when debug is on and RUST_LOG is unset",
    ),
    (
        "SOCKUDO_LOG_PROD",
        "log filter when debug is off and RUST_LOG is unset",
    ),
    (
        SKIP_INLINE_APPS,
        "true: drop the config file's inline apps (app_manager.array.apps)",
    ),
    (
        REGISTER_INLINE_APPS,
        "false: drop the config file's inline apps, like SOCKUDO_SKIP_INLINE_APPS=true",
    ),
];

const SKIP_INLINE_APPS: &str = "SOCKUDO_SKIP_INLINE_APPS";
const REGISTER_INLINE_APPS: &str = "APP_MANAGER_REGISTER_INLINE_APPS";

/// Read access to the environment with the parsing rules above.
pub struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    /// Wraps a lookup function (`|k| std::env::var(k).ok()` in production, a map in tests).
    pub fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env { get }
    }

    /// The variable's value, `None` if unset or empty.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    fn parsed<T>(
        &self,
        name: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        self.var(name)
            .map(|v| parse(&v).map_err(|m| ConfigError::env(name, m)))
            .transpose()
    }

    fn string(&self, name: &str, slot: &mut String) {
        if let Some(v) = self.var(name) {
            *slot = v.trim().to_string();
        }
    }

    fn opt_string(&self, name: &str, slot: &mut Option<String>) {
        if let Some(v) = self.var(name) {
            *slot = Some(v.trim().to_string());
        }
    }

    fn flag(&self, name: &str, slot: &mut bool) -> Result<(), ConfigError> {
        if let Some(v) = self.parsed(name, parse_bool)? {
            *slot = v;
        }
        Ok(())
    }

    fn uint<T: FromStr>(&self, name: &str, slot: &mut T) -> Result<(), ConfigError> {
        if let Some(v) = self.parsed(name, parse_uint::<T>)? {
            *slot = v;
        }
        Ok(())
    }

    fn port(&self, name: &str, slot: &mut u16) -> Result<(), ConfigError> {
        if let Some(v) = self.parsed(name, parse_port)? {
            *slot = v;
        }
        Ok(())
    }

    /// `QUEUE_*`, `REDIS_CLUSTER_QUEUE_PREFIX` and `SQS_*`: the webhook queue.
    fn queue(&self, q: &mut crate::config::model::QueueConfig) -> Result<(), ConfigError> {
        self.string("QUEUE_DRIVER", &mut q.driver);
        self.uint("QUEUE_BUFFER_SIZE", &mut q.buffer_size)?;
        self.uint("QUEUE_MAX_IN_FLIGHT", &mut q.max_in_flight)?;
        self.string("REDIS_CLUSTER_QUEUE_PREFIX", &mut q.redis_cluster.prefix);
        self.string("SQS_REGION", &mut q.sqs.region);
        self.string("SQS_QUEUE_URL", &mut q.sqs.queue_url);
        self.string("SQS_QUEUE_NAME", &mut q.sqs.queue_name);
        self.opt_string("SQS_ENDPOINT_URL", &mut q.sqs.endpoint_url);
        self.uint("SQS_VISIBILITY_TIMEOUT", &mut q.sqs.visibility_timeout)?;
        self.uint("SQS_WAIT_TIME_SECONDS", &mut q.sqs.wait_time_seconds)?;
        self.uint("SQS_MAX_MESSAGES", &mut q.sqs.max_messages)
    }

    /// `DATABASE_REDIS_*`: Sockudo's shared Redis connection (used by the webhook queue).
    fn database_redis(
        &self,
        r: &mut crate::config::model::RedisDatabaseConfig,
    ) -> Result<(), ConfigError> {
        self.string("DATABASE_REDIS_HOST", &mut r.host);
        self.port("DATABASE_REDIS_PORT", &mut r.port)?;
        self.opt_string("DATABASE_REDIS_USERNAME", &mut r.username);
        self.opt_string("DATABASE_REDIS_PASSWORD", &mut r.password);
        self.uint("DATABASE_REDIS_DB", &mut r.db)?;
        if let Some(nodes) = self.var("DATABASE_REDIS_CLUSTER_NODES") {
            r.cluster_nodes = parse_list(&nodes);
        }
        Ok(())
    }

    /// Applies every server-level variable to `config`.
    pub fn apply(&self, c: &mut Config) -> Result<(), ConfigError> {
        self.string("HOST", &mut c.host);
        self.port("PORT", &mut c.port)?;
        self.uint("SHARDS", &mut c.shards)?;
        self.flag("DEBUG_MODE", &mut c.debug)?;
        self.flag("DEBUG", &mut c.debug)?;
        self.uint("ACTIVITY_TIMEOUT", &mut c.activity_timeout)?;
        self.uint("PONG_TIMEOUT", &mut c.pong_timeout)?;
        self.uint(
            "USER_AUTHENTICATION_TIMEOUT",
            &mut c.user_authentication_timeout,
        )?;
        self.uint("SHUTDOWN_GRACE_PERIOD", &mut c.shutdown_grace_period)?;
        self.uint("WEBSOCKET_MAX_PAYLOAD_KB", &mut c.websocket_max_payload_kb)?;

        self.uint("WEBSOCKET_MAX_MESSAGES", &mut c.websocket.max_messages)?;
        if let Some(v) = self.parsed("WEBSOCKET_MAX_BYTES", parse_uint::<usize>)? {
            c.websocket.max_bytes = Some(v);
        }
        self.flag(
            "WEBSOCKET_DISCONNECT_ON_BUFFER_FULL",
            &mut c.websocket.disconnect_on_buffer_full,
        )?;
        self.uint(
            "WEBSOCKET_MAX_SUBSCRIPTIONS",
            &mut c.websocket.max_subscriptions,
        )?;
        self.uint(
            "HTTP_API_REQUEST_LIMIT_IN_MB",
            &mut c.http_api.request_limit_in_mb,
        )?;
        self.uint("HTTP_API_HEADER_TIMEOUT", &mut c.http_api.header_timeout)?;
        self.uint("HTTP_API_BODY_TIMEOUT", &mut c.http_api.body_timeout)?;
        self.uint(
            "HTTP_API_KEEP_ALIVE_TIMEOUT",
            &mut c.http_api.keep_alive_timeout,
        )?;

        if let Some(format) = self.parsed("LOG_OUTPUT_FORMAT", parse_log_format)? {
            c.logging.output_format = format;
        }
        self.flag("LOG_COLORS_ENABLED", &mut c.logging.colors_enabled)?;
        self.flag("LOG_INCLUDE_TARGET", &mut c.logging.include_target)?;

        self.parsed("METRICS_DRIVER", |v| {
            match v.trim().to_ascii_lowercase().as_str() {
                "prometheus" => Ok(()),
                _ => Err(format!("\"{v}\": only \"prometheus\" is supported")),
            }
        })?;
        self.flag("METRICS_ENABLED", &mut c.metrics.enabled)?;
        self.string("METRICS_HOST", &mut c.metrics.host);
        self.port("METRICS_PORT", &mut c.metrics.port)?;
        self.string(
            "METRICS_PROMETHEUS_PREFIX",
            &mut c.metrics.prometheus_prefix,
        );

        self.string("ADAPTER_DRIVER", &mut c.adapter.driver);
        self.queue(&mut c.queue)?;
        self.database_redis(&mut c.database.redis)?;
        self.string("CACHE_DRIVER", &mut c.cache.driver);
        self.string("RATE_LIMITER_DRIVER", &mut c.rate_limiter.driver);
        self.string(
            "RATE_LIMITER_REDIS_PREFIX",
            &mut c.rate_limiter.redis.prefix,
        );
        self.uint("ADAPTER_REQUESTS_TIMEOUT", &mut c.adapter.requests_timeout)?;
        self.string("REDIS_URL", &mut c.adapter.redis.url);
        self.string("REDIS_PREFIX", &mut c.adapter.redis.prefix);
        if let Some(nodes) = self.var("REDIS_CLUSTER_NODES") {
            c.adapter.cluster.nodes = parse_list(&nodes);
        }
        if let Some(servers) = self.var("NATS_SERVERS") {
            c.adapter.nats.servers = parse_list(&servers);
        }
        self.string("NATS_PREFIX", &mut c.adapter.nats.prefix);
        self.uint(
            "NATS_CONNECTION_TIMEOUT_MS",
            &mut c.adapter.nats.connection_timeout_ms,
        )?;
        self.flag("NATS_NO_ECHO", &mut c.adapter.nats.no_echo)?;
        for (name, slot) in [
            ("NATS_NODES_NUMBER", &mut c.adapter.nats.nodes_number),
            (
                "NATS_REQUEST_TIMEOUT_MS",
                &mut c.adapter.nats.request_timeout_ms,
            ),
        ] {
            if let Some(v) = self.parsed(name, parse_uint::<u64>)? {
                *slot = Some(v);
            }
        }
        for (name, slot) in [
            ("NATS_USERNAME", &mut c.adapter.nats.username),
            ("NATS_PASSWORD", &mut c.adapter.nats.password),
            ("NATS_TOKEN", &mut c.adapter.nats.token),
        ] {
            if let Some(v) = self.var(name) {
                *slot = Some(v);
            }
        }
        self.uint(
            "CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS",
            &mut c.adapter.cluster_health.heartbeat_interval_ms,
        )?;
        self.uint(
            "CLUSTER_HEALTH_NODE_TIMEOUT_MS",
            &mut c.adapter.cluster_health.node_timeout_ms,
        )?;
        self.string("APP_MANAGER_DRIVER", &mut c.app_manager.driver);
        self.flag(
            "APP_MANAGER_CACHE_ENABLED",
            &mut c.app_manager.cache.enabled,
        )?;
        self.uint("CACHE_TTL_SECONDS", &mut c.app_manager.cache.ttl)?;
        self.uint("APP_MANAGER_CACHE_TTL", &mut c.app_manager.cache.ttl)?;
        self.uint(
            "DATABASE_CONNECTION_POOL_SIZE",
            &mut c.database.postgres.connection_pool_size,
        )?;
        self.uint(
            "DATABASE_CONNECTION_POOL_SIZE",
            &mut c.database.mysql.connection_pool_size,
        )?;
        for (prefix, db) in [
            ("DATABASE_MYSQL", &mut c.database.mysql),
            ("DATABASE_POSTGRES", &mut c.database.postgres),
        ] {
            self.string(&format!("{prefix}_HOST"), &mut db.host);
            self.port(&format!("{prefix}_PORT"), &mut db.port)?;
            self.string(&format!("{prefix}_USER"), &mut db.username);
            self.string(&format!("{prefix}_USERNAME"), &mut db.username);
            self.string(&format!("{prefix}_PASSWORD"), &mut db.password);
            self.string(&format!("{prefix}_DATABASE"), &mut db.database);
            self.string(&format!("{prefix}_TABLE_NAME"), &mut db.table_name);
            self.uint(
                &format!("{prefix}_CONNECTION_POOL_SIZE"),
                &mut db.connection_pool_size,
            )?;
        }
        let dynamo = &mut c.database.dynamodb;
        self.string("DATABASE_DYNAMODB_REGION", &mut dynamo.region);
        self.string("DATABASE_DYNAMODB_TABLE_NAME", &mut dynamo.table_name);
        self.opt_string("DATABASE_DYNAMODB_ENDPOINT_URL", &mut dynamo.endpoint_url);
        self.opt_string("DATABASE_DYNAMODB_ENDPOINT", &mut dynamo.endpoint_url);
        self.opt_string(
            "DATABASE_DYNAMODB_AWS_ACCESS_KEY_ID",
            &mut dynamo.aws_access_key_id,
        );
        self.opt_string(
            "DATABASE_DYNAMODB_AWS_SECRET_ACCESS_KEY",
            &mut dynamo.aws_secret_access_key,
        );

        self.flag("WEBHOOK_BATCHING_ENABLED", &mut c.webhooks.batching.enabled)?;
        self.uint(
            "WEBHOOK_BATCHING_DURATION",
            &mut c.webhooks.batching.duration,
        )?;
        self.uint("WEBHOOK_BATCHING_SIZE", &mut c.webhooks.batching.size)?;

        self.uint("SOCKUDO_IO_MEMORY_KB", &mut c.runtime.io_memory_kb)?;
        self.uint("SOCKUDO_PREEMPT_TIMER_MS", &mut c.runtime.preempt_timer_ms)?;
        self.uint(
            "SOCKUDO_SPIN_BEFORE_PARK_US",
            &mut c.runtime.spin_before_park_us,
        )?;
        self.uint("SOCKUDO_RING_DEPTH", &mut c.runtime.ring_depth)?;

        self.flag("SSL_ENABLED", &mut c.ssl.enabled)?;
        self.string("SSL_CERT_PATH", &mut c.ssl.cert_path);
        self.string("SSL_KEY_PATH", &mut c.ssl.key_path);
        self.flag("SSL_REDIRECT_HTTP", &mut c.ssl.redirect_http)?;
        self.uint("SSL_HTTP_PORT", &mut c.ssl.http_port)?;
        self.flag("UNIX_SOCKET_ENABLED", &mut c.unix_socket.enabled)?;
        self.string("UNIX_SOCKET_PATH", &mut c.unix_socket.path);
        self.string(
            "UNIX_SOCKET_PERMISSION_MODE",
            &mut c.unix_socket.permission_mode,
        );
        self.flag("TAG_FILTERING_ENABLED", &mut c.tag_filtering.enabled)?;
        Ok(())
    }

    /// Sockudo's variables for features this server does not have (per the catalogue) that are set.
    pub fn ignored_sockudo_vars(&self) -> Vec<String> {
        catalogue()
            .keys()
            .iter()
            .filter(|key| !key.status.is_applied())
            .flat_map(|key| key.env.iter())
            .filter(|var| self.var(var).is_some())
            .cloned()
            .collect()
    }

    /// Whether the file's inline apps are dropped, as Sockudo does: `SOCKUDO_SKIP_INLINE_APPS` true, or
    /// `APP_MANAGER_REGISTER_INLINE_APPS` false.
    pub fn skip_inline_apps(&self) -> Result<bool, ConfigError> {
        let skip = self.parsed(SKIP_INLINE_APPS, parse_bool)?.unwrap_or(false);
        let register = self
            .parsed(REGISTER_INLINE_APPS, parse_bool)?
            .unwrap_or(true);
        Ok(skip || !register)
    }

    /// The app described by `SOCKUDO_DEFAULT_APP_*`, if `_ID`, `_KEY` and `_SECRET` are all set.
    /// Some but not all of the three is an error; other `_*` variables without them are ignored.
    pub fn default_app(&self) -> Result<Option<AppConfig>, ConfigError> {
        let name = |suffix: &str| format!("{APP}{suffix}");
        let required = [
            ("SOCKUDO_DEFAULT_APP_ID", self.var(&name("ID"))),
            ("SOCKUDO_DEFAULT_APP_KEY", self.var(&name("KEY"))),
            ("SOCKUDO_DEFAULT_APP_SECRET", self.var(&name("SECRET"))),
        ];
        let missing: Vec<&'static str> = required
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(n, _)| *n)
            .collect();
        if missing.len() == 3 {
            return Ok(None);
        }
        if !missing.is_empty() {
            return Err(ConfigError::PartialDefaultApp { missing });
        }
        let [id, key, secret] = required.map(|(_, v)| v.unwrap_or_default().trim().to_string());
        let mut app = AppConfig {
            id,
            key,
            secret,
            ..AppConfig::default()
        };
        let flag = |suffix: &str| self.parsed(&name(suffix), parse_bool);
        let uint = |suffix: &str| self.parsed(&name(suffix), parse_uint::<u64>);
        if let Some(v) = flag("ENABLED")? {
            app.enabled = v;
        }
        // Sockudo's older name is the fallback.
        let client_messages = match flag("ENABLE_CLIENT_MESSAGES")? {
            Some(v) => Some(v),
            None => self.parsed("SOCKUDO_ENABLE_CLIENT_MESSAGES", parse_bool)?,
        };
        if let Some(v) = client_messages {
            app.enable_client_messages = v;
        }
        app.enable_user_authentication = flag("ENABLE_USER_AUTHENTICATION")?;
        app.enable_watchlist_events = flag("ENABLE_WATCHLIST_EVENTS")?;
        app.max_connections = uint("MAX_CONNECTIONS")?;
        app.max_client_events_per_second = uint("MAX_CLIENT_EVENTS_PER_SECOND")?;
        app.max_backend_events_per_second = uint("MAX_BACKEND_EVENTS_PER_SECOND")?;
        app.max_read_requests_per_second = uint("MAX_READ_REQUESTS_PER_SECOND")?;
        app.max_presence_members_per_channel = uint("MAX_PRESENCE_MEMBERS_PER_CHANNEL")?;
        app.max_presence_member_size_in_kb = uint("MAX_PRESENCE_MEMBER_SIZE_IN_KB")?;
        app.max_channel_name_length = uint("MAX_CHANNEL_NAME_LENGTH")?;
        app.max_event_channels_at_once = uint("MAX_EVENT_CHANNELS_AT_ONCE")?;
        app.max_event_name_length = uint("MAX_EVENT_NAME_LENGTH")?;
        app.max_event_payload_in_kb = uint("MAX_EVENT_PAYLOAD_IN_KB")?;
        app.max_event_batch_size = uint("MAX_EVENT_BATCH_SIZE")?;
        app.allowed_origins = self.var(&name("ALLOWED_ORIGINS")).map(|v| parse_list(&v));
        Ok(Some(app))
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "human" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!(
            "\"{text}\" is not a valid log format (use human or json)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn applied(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let get = with(vars);
        let mut config = Config::default();
        Env::new(&get).apply(&mut config)?;
        Ok(config)
    }

    #[test]
    fn server_variables() {
        let c = applied(&[
            ("HOST", "127.0.0.1"),
            ("PORT", "7000"),
            ("SHARDS", "4"),
            ("DEBUG", "YES"),
            ("ACTIVITY_TIMEOUT", "60"),
            ("PONG_TIMEOUT", "15"),
            ("USER_AUTHENTICATION_TIMEOUT", "30"),
            ("SHUTDOWN_GRACE_PERIOD", "2"),
            ("WEBSOCKET_MAX_PAYLOAD_KB", "128"),
            ("HTTP_API_REQUEST_LIMIT_IN_MB", "5"),
            ("HTTP_API_HEADER_TIMEOUT", "3"),
            ("HTTP_API_BODY_TIMEOUT", "4"),
            ("HTTP_API_KEEP_ALIVE_TIMEOUT", "6"),
            ("WEBSOCKET_MAX_SUBSCRIPTIONS", "50"),
        ])
        .expect("valid");
        assert_eq!(
            (c.host.as_str(), c.port, c.shards, c.debug),
            ("127.0.0.1", 7000, 4, true)
        );
        assert_eq!((c.activity_timeout, c.pong_timeout), (60, 15));
        assert_eq!(
            (c.user_authentication_timeout, c.shutdown_grace_period),
            (30, 2)
        );
        assert_eq!(c.websocket_max_payload_kb, 128);
        assert_eq!(c.http_api.request_limit_in_mb, 5);
        assert_eq!(
            (
                c.http_api.header_timeout,
                c.http_api.body_timeout,
                c.http_api.keep_alive_timeout
            ),
            (3, 4, 6)
        );
        assert_eq!(c.websocket.max_subscriptions, 50);
    }

    #[test]
    fn app_manager_cache_and_databases() {
        let c = applied(&[
            ("APP_MANAGER_DRIVER", "pgsql"),
            ("APP_MANAGER_CACHE_ENABLED", "false"),
            ("APP_MANAGER_CACHE_TTL", "7"),
            ("DATABASE_CONNECTION_POOL_SIZE", "3"),
            ("DATABASE_POSTGRES_HOST", "db"),
            ("DATABASE_POSTGRES_PORT", "6543"),
            ("DATABASE_POSTGRES_USERNAME", "u"),
            ("DATABASE_POSTGRES_PASSWORD", "p"),
            ("DATABASE_POSTGRES_DATABASE", "d"),
            ("DATABASE_POSTGRES_TABLE_NAME", "apps"),
            ("DATABASE_MYSQL_USER", "m"),
            ("DATABASE_MYSQL_CONNECTION_POOL_SIZE", "5"),
            ("DATABASE_DYNAMODB_REGION", "eu-west-1"),
            ("DATABASE_DYNAMODB_TABLE_NAME", "t"),
            ("DATABASE_DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:8000"),
        ])
        .expect("valid");
        assert_eq!(c.app_manager.driver, "pgsql");
        assert!(!c.app_manager.cache.enabled);
        assert_eq!(c.app_manager.cache.ttl, 7);
        let pg = &c.database.postgres;
        assert_eq!(
            (
                pg.host.as_str(),
                pg.port,
                pg.username.as_str(),
                pg.password.as_str()
            ),
            ("db", 6543, "u", "p")
        );
        assert_eq!(
            (
                pg.database.as_str(),
                pg.table_name.as_str(),
                pg.connection_pool_size
            ),
            ("d", "apps", 3)
        );
        assert_eq!(
            (
                c.database.mysql.username.as_str(),
                c.database.mysql.connection_pool_size
            ),
            ("m", 5)
        );
        let dynamo = &c.database.dynamodb;
        assert_eq!(
            (dynamo.region.as_str(), dynamo.table_name.as_str()),
            ("eu-west-1", "t")
        );
        assert_eq!(
            dynamo.endpoint_url.as_deref(),
            Some("http://127.0.0.1:8000")
        );
    }

    #[test]
    fn websocket_logging_metrics_drivers_webhooks_runtime() {
        let c = applied(&[
            ("WEBSOCKET_MAX_MESSAGES", "50"),
            ("WEBSOCKET_MAX_BYTES", "4194304"),
            ("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL", "false"),
            ("LOG_OUTPUT_FORMAT", "JSON"),
            ("LOG_COLORS_ENABLED", "0"),
            ("LOG_INCLUDE_TARGET", "no"),
            ("METRICS_ENABLED", "false"),
            ("METRICS_HOST", "127.0.0.1"),
            ("METRICS_PORT", "9700"),
            ("METRICS_PROMETHEUS_PREFIX", "ws_"),
            ("ADAPTER_DRIVER", "redis"),
            ("APP_MANAGER_DRIVER", "mysql"),
            ("WEBHOOK_BATCHING_ENABLED", "true"),
            ("WEBHOOK_BATCHING_DURATION", "200"),
            ("SOCKUDO_IO_MEMORY_KB", "512"),
            ("SOCKUDO_PREEMPT_TIMER_MS", "2"),
            ("SOCKUDO_SPIN_BEFORE_PARK_US", "10"),
            ("SOCKUDO_RING_DEPTH", "1024"),
        ])
        .expect("valid");
        assert_eq!(c.websocket.max_messages, 50);
        assert_eq!(c.websocket.max_bytes, Some(4_194_304));
        assert!(!c.websocket.disconnect_on_buffer_full);
        assert_eq!(c.logging.output_format, LogFormat::Json);
        assert!(!c.logging.colors_enabled && !c.logging.include_target);
        assert!(!c.metrics.enabled);
        assert_eq!(
            (c.metrics.host.as_str(), c.metrics.port),
            ("127.0.0.1", 9700)
        );
        assert_eq!(c.metrics.prometheus_prefix, "ws_");
        assert_eq!(
            (c.adapter.driver.as_str(), c.app_manager.driver.as_str()),
            ("redis", "mysql")
        );
        assert!(c.webhooks.batching.enabled);
        assert_eq!(c.webhooks.batching.duration, 200);
        assert_eq!(
            (
                c.runtime.io_memory_kb,
                c.runtime.preempt_timer_ms,
                c.runtime.spin_before_park_us
            ),
            (512, 2, 10)
        );
        assert_eq!(c.runtime.ring_depth, 1024);
    }

    #[test]
    fn empty_variables_count_as_unset() {
        let c = applied(&[("PORT", ""), ("HOST", "  "), ("DEBUG", "")]).expect("valid");
        assert_eq!((c.port, c.host.as_str(), c.debug), (6001, "0.0.0.0", false));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let msg = |vars: &[(&str, &str)]| applied(vars).unwrap_err().to_string();
        assert_eq!(msg(&[("PORT", "abc")]), "PORT: \"abc\" is not a valid port");
        assert_eq!(
            msg(&[("METRICS_PORT", "99999")]),
            "METRICS_PORT: \"99999\" is not a valid port"
        );
        assert!(msg(&[("DEBUG", "sure")]).starts_with("DEBUG: \"sure\" is not a valid boolean"));
        assert_eq!(
            msg(&[("WEBSOCKET_MAX_MESSAGES", "1e3")]),
            "WEBSOCKET_MAX_MESSAGES: \"1e3\" is not a valid non-negative integer"
        );
        assert_eq!(
            msg(&[("LOG_OUTPUT_FORMAT", "xml")]),
            "LOG_OUTPUT_FORMAT: \"xml\" is not a valid log format (use human or json)"
        );
    }

    #[test]
    fn sockudos_older_client_messages_variable_is_the_fallback() {
        let app = |vars: &[(&str, &str)]| {
            let mut all = vec![
                ("SOCKUDO_DEFAULT_APP_ID", "1"),
                ("SOCKUDO_DEFAULT_APP_KEY", "k"),
                ("SOCKUDO_DEFAULT_APP_SECRET", "s"),
            ];
            all.extend_from_slice(vars);
            let get = with(&all);
            let app = Env::new(&get).default_app().expect("valid").expect("app");
            app.enable_client_messages
        };
        assert!(!app(&[]));
        assert!(app(&[("SOCKUDO_ENABLE_CLIENT_MESSAGES", "true")]));
        assert!(!app(&[
            ("SOCKUDO_ENABLE_CLIENT_MESSAGES", "true"),
            ("SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "false"),
        ]));
    }

    #[test]
    fn default_app_from_all_variables() {
        let get = with(&[
            ("SOCKUDO_DEFAULT_APP_ID", "42"),
            ("SOCKUDO_DEFAULT_APP_KEY", "key42"),
            ("SOCKUDO_DEFAULT_APP_SECRET", "s3cret"),
            ("SOCKUDO_DEFAULT_APP_ENABLED", "false"),
            ("SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES", "true"),
            ("SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION", "1"),
            ("SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS", "no"),
            ("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "1000"),
            ("SOCKUDO_DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SECOND", "11"),
            ("SOCKUDO_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SECOND", "12"),
            ("SOCKUDO_DEFAULT_APP_MAX_READ_REQUESTS_PER_SECOND", "13"),
            ("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBERS_PER_CHANNEL", "14"),
            ("SOCKUDO_DEFAULT_APP_MAX_PRESENCE_MEMBER_SIZE_IN_KB", "15"),
            ("SOCKUDO_DEFAULT_APP_MAX_CHANNEL_NAME_LENGTH", "16"),
            ("SOCKUDO_DEFAULT_APP_MAX_EVENT_CHANNELS_AT_ONCE", "17"),
            ("SOCKUDO_DEFAULT_APP_MAX_EVENT_NAME_LENGTH", "18"),
            ("SOCKUDO_DEFAULT_APP_MAX_EVENT_PAYLOAD_IN_KB", "19"),
            ("SOCKUDO_DEFAULT_APP_MAX_EVENT_BATCH_SIZE", "20"),
            (
                "SOCKUDO_DEFAULT_APP_ALLOWED_ORIGINS",
                "https://a.com,*.b.com",
            ),
        ]);
        let app = Env::new(&get)
            .default_app()
            .expect("valid")
            .expect("present");
        assert_eq!(
            (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
            ("42", "key42", "s3cret")
        );
        assert!(!app.enabled && app.enable_client_messages);
        assert_eq!(app.enable_user_authentication, Some(true));
        assert_eq!(app.enable_watchlist_events, Some(false));
        assert_eq!(app.max_connections, Some(1000));
        let limits = [
            app.max_client_events_per_second,
            app.max_backend_events_per_second,
            app.max_read_requests_per_second,
            app.max_presence_members_per_channel,
            app.max_presence_member_size_in_kb,
            app.max_channel_name_length,
            app.max_event_channels_at_once,
            app.max_event_name_length,
            app.max_event_payload_in_kb,
            app.max_event_batch_size,
        ];
        assert_eq!(limits, [11, 12, 13, 14, 15, 16, 17, 18, 19, 20].map(Some));
        assert_eq!(
            app.allowed_origins,
            Some(vec!["https://a.com".to_string(), "*.b.com".to_string()])
        );
    }

    #[test]
    fn default_app_needs_id_key_and_secret_together() {
        let get = with(&[("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "5")]);
        assert!(Env::new(&get).default_app().expect("valid").is_none());

        let get = with(&[
            ("SOCKUDO_DEFAULT_APP_ID", "1"),
            ("SOCKUDO_DEFAULT_APP_SECRET", ""),
        ]);
        let err = Env::new(&get).default_app().unwrap_err();
        assert_eq!(
            err.to_string(),
            "SOCKUDO_DEFAULT_APP_ID, SOCKUDO_DEFAULT_APP_KEY and SOCKUDO_DEFAULT_APP_SECRET must be set together; \
             missing: SOCKUDO_DEFAULT_APP_KEY, SOCKUDO_DEFAULT_APP_SECRET"
        );

        let get = with(&[
            ("SOCKUDO_DEFAULT_APP_ID", "1"),
            ("SOCKUDO_DEFAULT_APP_KEY", "k"),
            ("SOCKUDO_DEFAULT_APP_SECRET", "s"),
            ("SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS", "many"),
        ]);
        let err = Env::new(&get).default_app().unwrap_err();
        assert_eq!(
            err.to_string(),
            "SOCKUDO_DEFAULT_APP_MAX_CONNECTIONS: \"many\" is not a valid non-negative integer"
        );
    }
}
