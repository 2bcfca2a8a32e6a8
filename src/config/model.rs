//! The configuration types and their defaults.
//!
//! The same types are the file schema: every struct is `#[serde(default, deny_unknown_fields)]`, so a
//! file only needs the keys it changes and a misspelt key is an error instead of being silently ignored.
//! Key names follow Sockudo's `config.json` / `config.toml` so existing files carry over.

use serde::{Deserialize, Serialize};

use super::app::AppConfig;

/// The whole server configuration after defaults, file, CLI and environment have been merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the WebSocket/HTTP listener binds. Env `HOST`, CLI `--host`.
    pub host: String,
    /// Listener port; every shard binds it with `SO_REUSEPORT`, so it cannot be 0. Env `PORT`, CLI `--port`/`-p`.
    pub port: u16,
    /// Number of shards (threads, one per core). 0 = one per online CPU. Env `SHARDS`, CLI `--shards`.
    pub shards: usize,
    /// Verbose logging. Env `DEBUG`, CLI `--debug`.
    pub debug: bool,
    /// Seconds of client silence before the server pings (Pusher `activity_timeout`). Env `ACTIVITY_TIMEOUT`.
    pub activity_timeout: u64,
    /// Seconds to wait for a pong after a server ping before closing with 4201. Env `PONG_TIMEOUT`.
    pub pong_timeout: u64,
    /// Seconds a connection of an app with user authentication has to sign in. Env `USER_AUTHENTICATION_TIMEOUT`.
    pub user_authentication_timeout: u64,
    /// Seconds given to open connections to close on shutdown. Env `SHUTDOWN_GRACE_PERIOD`.
    pub shutdown_grace_period: u64,
    /// Largest inbound WebSocket message, in KiB. Env `WEBSOCKET_MAX_PAYLOAD_KB`.
    pub websocket_max_payload_kb: usize,
    /// Per-connection outbound buffering.
    pub websocket: WebsocketConfig,
    /// REST API limits.
    pub http_api: HttpApiConfig,
    /// Event limits used when an app leaves its own limit unset.
    pub event_limits: EventLimits,
    /// Channel limits used when an app leaves its own limit unset.
    pub channel_limits: ChannelLimits,
    /// Presence limits used when an app leaves its own limit unset.
    pub presence: PresenceConfig,
    /// Log output shape.
    pub logging: LoggingConfig,
    /// Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Cross-node fan-out.
    pub adapter: AdapterConfig,
    /// Where apps come from.
    pub app_manager: AppManagerConfig,
    /// Connection settings of the database app managers.
    pub database: DatabaseConfig,
    /// Webhook delivery.
    pub webhooks: WebhooksConfig,
    /// glommio executor tuning.
    pub runtime: RuntimeConfig,
    /// Serve on a Unix domain socket instead of the TCP port (Sockudo's `unix_socket`).
    pub unix_socket: UnixSocketConfig,
    /// Delta compression for clients that opt in (sockudo-js).
    pub delta_compression: DeltaCompressionConfig,
    /// Routing by publish `tags` and subscription filters.
    pub tag_filtering: TagFilteringConfig,
    /// Where webhook requests wait for delivery (Sockudo's `queue`; see docs/backends.md).
    pub queue: QueueConfig,
    /// Where cache channels' last events are kept (Sockudo's `cache`).
    pub cache: CacheConfig,
    /// Where the per-app REST rate limits are counted (Sockudo's `rate_limiter`).
    pub rate_limiter: RateLimiterConfig,
    /// TLS on the main port (Sockudo's `ssl`).
    pub ssl: SslConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: "0.0.0.0".into(),
            port: 6001,
            shards: 0,
            debug: false,
            activity_timeout: 120,
            pong_timeout: 30,
            user_authentication_timeout: 3600,
            shutdown_grace_period: 10,
            websocket_max_payload_kb: 64,
            websocket: WebsocketConfig::default(),
            http_api: HttpApiConfig::default(),
            event_limits: EventLimits::default(),
            channel_limits: ChannelLimits::default(),
            presence: PresenceConfig::default(),
            logging: LoggingConfig::default(),
            metrics: MetricsConfig::default(),
            adapter: AdapterConfig::default(),
            app_manager: AppManagerConfig::default(),
            database: DatabaseConfig::default(),
            webhooks: WebhooksConfig::default(),
            runtime: RuntimeConfig::default(),
            unix_socket: UnixSocketConfig::default(),
            delta_compression: DeltaCompressionConfig::default(),
            tag_filtering: TagFilteringConfig::default(),
            queue: QueueConfig::default(),
            cache: CacheConfig::default(),
            rate_limiter: RateLimiterConfig::default(),
            ssl: SslConfig::default(),
        }
    }
}

/// Outbound buffering per connection (what happens to a slow consumer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebsocketConfig {
    /// Messages queued for one connection before it counts as full. Env `WEBSOCKET_MAX_MESSAGES`.
    pub max_messages: usize,
    /// Optional byte cap on that queue (None = only `max_messages` applies). Env `WEBSOCKET_MAX_BYTES`.
    /// Unlike Sockudo, this does not change the inbound payload limit.
    pub max_bytes: Option<usize>,
    /// Close a connection whose queue is full (true) or drop the message (false).
    /// Env `WEBSOCKET_DISCONNECT_ON_BUFFER_FULL`.
    pub disconnect_on_buffer_full: bool,
    /// Channels one connection may be subscribed to at once. Env `WEBSOCKET_MAX_SUBSCRIPTIONS`.
    pub max_subscriptions: usize,
}

impl Default for WebsocketConfig {
    fn default() -> Self {
        WebsocketConfig {
            max_messages: 1000,
            max_bytes: None,
            disconnect_on_buffer_full: true,
            max_subscriptions: 1000,
        }
    }
}

/// REST API request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpApiConfig {
    /// Largest request body, in MiB. Env `HTTP_API_REQUEST_LIMIT_IN_MB`.
    pub request_limit_in_mb: usize,
    /// Largest request head (request line + headers), in bytes.
    pub max_header_bytes: usize,
    /// Seconds a client has to send a whole request head, from its first byte (or from the connection's
    /// start). Env `HTTP_API_HEADER_TIMEOUT`.
    pub header_timeout: u64,
    /// Seconds a client has to send a request body, once its head has arrived. Env `HTTP_API_BODY_TIMEOUT`.
    pub body_timeout: u64,
    /// Seconds an idle keep-alive connection is kept waiting for its next request; also bounds writing a
    /// response to a client that does not read it. Env `HTTP_API_KEEP_ALIVE_TIMEOUT`.
    pub keep_alive_timeout: u64,
}

impl Default for HttpApiConfig {
    fn default() -> Self {
        HttpApiConfig {
            request_limit_in_mb: 10,
            max_header_bytes: 16384,
            header_timeout: 10,
            body_timeout: 30,
            keep_alive_timeout: 30,
        }
    }
}

/// Event limits applied when an app does not set its own (Pusher's documented values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventLimits {
    /// Channels one published event may name.
    pub max_channels_at_once: u64,
    /// Characters in an event name.
    pub max_name_length: u64,
    /// KiB of event data.
    pub max_payload_in_kb: u64,
    /// Events in one batch publish.
    pub max_batch_size: u64,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_channels_at_once: 100,
            max_name_length: 200,
            max_payload_in_kb: 10,
            max_batch_size: 10,
        }
    }
}

/// Channel limits applied when an app does not set its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelLimits {
    /// Characters in a channel name (Pusher documents 164).
    pub max_name_length: u64,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl: u64,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        ChannelLimits {
            max_name_length: 164,
            cache_ttl: 1800,
        }
    }
}

/// Presence limits applied when an app does not set its own (Pusher's documented values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Members in one presence channel.
    pub max_members_per_channel: u64,
    /// KiB of one member's `user_info`.
    pub max_member_size_in_kb: u64,
    /// Characters in a `user_id`.
    pub max_user_id_length: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            max_members_per_channel: 100,
            max_member_size_in_kb: 1,
            max_user_id_length: 128,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Logging output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// Env `LOG_OUTPUT_FORMAT` = `human` | `json`.
    pub output_format: LogFormat,
    /// ANSI colours in human output. Env `LOG_COLORS_ENABLED`.
    pub colors_enabled: bool,
    /// Print the module target in each line. Env `LOG_INCLUDE_TARGET`.
    pub include_target: bool,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            output_format: LogFormat::Human,
            colors_enabled: true,
            include_target: true,
        }
    }
}

/// Prometheus metrics endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`. Env `METRICS_ENABLED`.
    pub enabled: bool,
    /// Bind address. Env `METRICS_HOST`.
    pub host: String,
    /// Bind port. Env `METRICS_PORT`.
    pub port: u16,
    /// Prefix of every metric name. Env `METRICS_PROMETHEUS_PREFIX`; Sockudo's `metrics.prometheus.prefix`
    /// is accepted in files too.
    pub prometheus_prefix: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            host: "0.0.0.0".into(),
            port: 9601,
            prometheus_prefix: "sockudo_".into(),
        }
    }
}

/// Cross-node fan-out (Sockudo's `adapter` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterConfig {
    /// `local` (single node), `redis`, `redis-cluster` or `nats`. Env `ADAPTER_DRIVER`.
    pub driver: String,
    /// How long a cluster-wide REST read waits for the other nodes, in ms. Env `ADAPTER_REQUESTS_TIMEOUT`.
    pub requests_timeout: u64,
    /// Redis pub/sub (`driver = "redis"`).
    pub redis: AdapterRedisConfig,
    /// Redis Cluster (`driver = "redis-cluster"`).
    pub cluster: AdapterRedisClusterConfig,
    /// NATS (`driver = "nats"`).
    pub nats: AdapterNatsConfig,
    /// Node liveness.
    pub cluster_health: ClusterHealthConfig,
}

impl Default for AdapterConfig {
    fn default() -> Self {
        AdapterConfig {
            driver: "local".into(),
            requests_timeout: 5000,
            redis: AdapterRedisConfig::default(),
            cluster: AdapterRedisClusterConfig::default(),
            nats: AdapterNatsConfig::default(),
            cluster_health: ClusterHealthConfig::default(),
        }
    }
}

impl AdapterConfig {
    /// How long a cluster-wide read waits: the driver's own timeout when its section sets one (Sockudo's
    /// `adapter.redis.requests_timeout`, `adapter.cluster.request_timeout_ms`, `adapter.nats.request_timeout_ms`),
    /// else `adapter.requests_timeout`.
    pub fn effective_requests_timeout_ms(&self) -> u64 {
        let own = match self.driver.as_str() {
            "redis" => self.redis.requests_timeout,
            "redis-cluster" | "redis_cluster" | "cluster" => self.cluster.request_timeout_ms,
            "nats" => self.nats.request_timeout_ms,
            _ => None,
        };
        own.unwrap_or(self.requests_timeout)
    }
}

/// `adapter.redis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterRedisConfig {
    /// Prefix of every bus channel. Env `REDIS_PREFIX`.
    pub prefix: String,
    /// Redis URL (`redis://[user:password@]host:port/db`). Env `REDIS_URL`; when empty, built from
    /// `DATABASE_REDIS_HOST/PORT/PASSWORD/DB`.
    pub url: String,
    /// Sockudo's per-adapter request timeout (ms); used when `adapter.requests_timeout` is not set.
    pub requests_timeout: Option<u64>,
    /// Accepted for Sockudo files (`cluster_mode = true` means the `redis-cluster` driver).
    pub cluster_mode: bool,
    /// Sockudo's publish connection options; `url` is used when `adapter.redis.url` is empty.
    pub redis_pub_options: RedisUrlOption,
    /// Sockudo's subscribe connection options (the same server as `redis_pub_options`).
    pub redis_sub_options: RedisUrlOption,
}

impl Default for AdapterRedisConfig {
    fn default() -> Self {
        AdapterRedisConfig {
            prefix: "sockudo_adapter:".into(),
            url: String::new(),
            requests_timeout: None,
            cluster_mode: false,
            redis_pub_options: RedisUrlOption::default(),
            redis_sub_options: RedisUrlOption::default(),
        }
    }
}

/// `{ "url": .. }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisUrlOption {
    /// A Redis URL.
    pub url: String,
}

/// `adapter.cluster` (Redis Cluster).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterRedisClusterConfig {
    /// Seed nodes (`host:port` or `redis://host:port`). Env `REDIS_CLUSTER_NODES` (comma-separated).
    pub nodes: Vec<String>,
    /// Prefix of every bus channel.
    pub prefix: String,
    /// Request timeout in ms (Sockudo's name); used when `adapter.requests_timeout` is not set.
    pub request_timeout_ms: Option<u64>,
    /// Accepted for Sockudo files.
    pub use_connection_manager: bool,
}

impl Default for AdapterRedisClusterConfig {
    fn default() -> Self {
        AdapterRedisClusterConfig {
            nodes: Vec::new(),
            prefix: "sockudo_adapter:".into(),
            request_timeout_ms: None,
            use_connection_manager: true,
        }
    }
}

/// `adapter.nats`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdapterNatsConfig {
    /// Server URLs. Env `NATS_SERVERS` (comma-separated).
    pub servers: Vec<String>,
    /// Subject prefix. Env `NATS_PREFIX`.
    pub prefix: String,
    /// Env `NATS_USERNAME`.
    pub username: Option<String>,
    /// Env `NATS_PASSWORD`.
    pub password: Option<String>,
    /// Env `NATS_TOKEN`.
    pub token: Option<String>,
    /// Request timeout in ms (Sockudo's name); used when `adapter.requests_timeout` is not set.
    pub request_timeout_ms: Option<u64>,
    /// Connect timeout in ms.
    pub connection_timeout_ms: u64,
    /// Accepted for Sockudo files: this server always drops its own messages.
    pub no_echo: bool,
    /// Accepted for Sockudo files: nodes are discovered by their heartbeats.
    pub nodes_number: Option<u64>,
}

impl Default for AdapterNatsConfig {
    fn default() -> Self {
        AdapterNatsConfig {
            servers: vec!["nats://127.0.0.1:4222".into()],
            prefix: "sockudo_adapter:".into(),
            username: None,
            password: None,
            token: None,
            request_timeout_ms: None,
            connection_timeout_ms: 5000,
            no_echo: true,
            nodes_number: None,
        }
    }
}

/// `adapter.cluster_health`: how nodes know each other alive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterHealthConfig {
    /// Accepted for Sockudo files; liveness is always tracked in a cluster.
    pub enabled: bool,
    /// How often a node says it is alive, in ms. Env `CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS`.
    pub heartbeat_interval_ms: u64,
    /// A node silent this long (ms) is dead: its presence members are removed. Env
    /// `CLUSTER_HEALTH_NODE_TIMEOUT_MS`.
    pub node_timeout_ms: u64,
    /// Accepted for Sockudo files; dead nodes are checked at every heartbeat.
    pub cleanup_interval_ms: u64,
}

impl Default for ClusterHealthConfig {
    fn default() -> Self {
        ClusterHealthConfig {
            enabled: true,
            heartbeat_interval_ms: 2000,
            node_timeout_ms: 10_000,
            cleanup_interval_ms: 10_000,
        }
    }
}

/// Where apps come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppManagerConfig {
    /// `memory` (alias `array`) = the apps listed in `array.apps`; `mysql`, `postgresql` (alias `postgres`,
    /// `pgsql`) or `dynamodb` = apps read from that database (`database.*`). Env `APP_MANAGER_DRIVER`.
    pub driver: String,
    /// Apps of the `memory` driver.
    pub array: AppArrayConfig,
    /// Each shard's cache of database apps.
    pub cache: AppCacheConfig,
}

impl Default for AppManagerConfig {
    fn default() -> Self {
        AppManagerConfig {
            driver: "memory".into(),
            array: AppArrayConfig::default(),
            cache: AppCacheConfig::default(),
        }
    }
}

/// The cache of database apps (Sockudo's `app_manager.cache`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppCacheConfig {
    /// Keep found apps for `ttl` seconds; when false every lookup asks the database (concurrent lookups
    /// still share one query). Env `APP_MANAGER_CACHE_ENABLED`.
    pub enabled: bool,
    /// Seconds an app is served from the cache before it is read again: how long a change made in the
    /// database takes to apply. Env `APP_MANAGER_CACHE_TTL` (or Sockudo's `CACHE_TTL_SECONDS`).
    pub ttl: u64,
}

impl Default for AppCacheConfig {
    fn default() -> Self {
        AppCacheConfig {
            enabled: true,
            ttl: 300,
        }
    }
}

/// Connection settings of the database app managers (Sockudo's `database` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Env `DATABASE_MYSQL_*`.
    #[serde(deserialize_with = "mysql_section")]
    pub mysql: SqlDatabaseConfig,
    /// Env `DATABASE_POSTGRES_*`.
    pub postgres: SqlDatabaseConfig,
    /// Env `DATABASE_DYNAMODB_*`.
    pub dynamodb: DynamoDbDatabaseConfig,
    /// Env `DATABASE_REDIS_*`: the Redis server of the webhook queue when `REDIS_URL` is not set.
    pub redis: RedisDatabaseConfig,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            mysql: SqlDatabaseConfig::mysql_default(),
            postgres: SqlDatabaseConfig::default(),
            dynamodb: DynamoDbDatabaseConfig::default(),
            redis: RedisDatabaseConfig::default(),
        }
    }
}

/// One SQL database (`database.mysql`, `database.postgres`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlDatabaseConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub database: String,
    /// The apps table (Sockudo's schema); created when missing.
    pub table_name: String,
    /// Connections kept open at most.
    pub connection_pool_size: u32,
    /// Accepted for Sockudo files; the pool opens connections on demand up to `connection_pool_size`.
    pub pool_min: Option<u32>,
    /// Accepted for Sockudo files; when set, caps `connection_pool_size`.
    pub pool_max: Option<u32>,
}

impl SqlDatabaseConfig {
    /// MySQL/MariaDB's defaults (the `Default` is PostgreSQL's).
    pub fn mysql_default() -> SqlDatabaseConfig {
        SqlDatabaseConfig {
            port: 3306,
            username: "root".into(),
            ..SqlDatabaseConfig::default()
        }
    }
}

/// `database.mysql`: the keys given, over MySQL's defaults (a plain `#[serde(default)]` would fill the missing
/// ones with PostgreSQL's port and user).
fn mysql_section<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SqlDatabaseConfig, D::Error> {
    use serde::de::Error;
    let given = serde_json::Value::deserialize(d)?;
    let mut merged =
        serde_json::to_value(SqlDatabaseConfig::mysql_default()).map_err(D::Error::custom)?;
    if let (Some(base), serde_json::Value::Object(given)) = (merged.as_object_mut(), given) {
        for (k, v) in given {
            base.insert(k, v);
        }
    }
    SqlDatabaseConfig::deserialize(merged).map_err(D::Error::custom)
}

impl Default for SqlDatabaseConfig {
    fn default() -> Self {
        SqlDatabaseConfig {
            host: "localhost".into(),
            port: 5432,
            username: "postgres".into(),
            password: String::new(),
            database: "sockudo".into(),
            table_name: "applications".into(),
            connection_pool_size: 10,
            pool_min: None,
            pool_max: None,
        }
    }
}

/// DynamoDB (`database.dynamodb`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamoDbDatabaseConfig {
    pub region: String,
    /// The apps table; items keyed by `id`. Created when missing.
    pub table_name: String,
    /// Endpoint override (DynamoDB Local, moto); unset = AWS.
    pub endpoint_url: Option<String>,
    /// Static credentials; unset = the default AWS chain (`AWS_ACCESS_KEY_ID`, profile, role...).
    pub aws_access_key_id: Option<String>,
    pub aws_secret_access_key: Option<String>,
}

impl Default for DynamoDbDatabaseConfig {
    fn default() -> Self {
        DynamoDbDatabaseConfig {
            region: "us-east-1".into(),
            table_name: "sockudo-applications".into(),
            endpoint_url: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
        }
    }
}

/// True when `driver` names the memory app manager.
pub fn is_memory_driver(driver: &str) -> bool {
    matches!(driver, "memory" | "array")
}

/// The app manager drivers, as `app_manager.driver` spells them.
pub const APP_MANAGER_DRIVERS: &[&str] = &[
    "memory",
    "array",
    "mysql",
    "postgresql",
    "postgres",
    "pgsql",
    "dynamodb",
];

/// The inline app list (Sockudo's `app_manager.array`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppArrayConfig {
    /// The apps, in Sockudo's flat shape.
    pub apps: Vec<AppConfig>,
}

/// Webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Group webhook events that occur close together into one request.
    pub batching: WebhookBatchingConfig,
    /// How failed requests are retried, for every webhook that does not set its own `retry` fields.
    pub retry: WebhookRetryConfig,
    /// Timeout of one request, for every webhook that does not set its own.
    pub request_timeout_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            batching: WebhookBatchingConfig::default(),
            retry: WebhookRetryConfig::default(),
            request_timeout_ms: 10_000,
        }
    }
}

impl WebhooksConfig {
    /// What a webhook uses for the fields it leaves out.
    pub fn defaults(&self) -> sockudo_webhooks::WebhookDefaults {
        let ms = std::time::Duration::from_millis;
        sockudo_webhooks::WebhookDefaults {
            retry: sockudo_webhooks::RetryPolicy {
                enabled: self.retry.enabled,
                max_attempts: self.retry.max_attempts,
                max_elapsed: ms(self.retry.max_elapsed_time_ms),
                initial_backoff: ms(self.retry.initial_backoff_ms),
                max_backoff: ms(self.retry.max_backoff_ms),
            },
            request_timeout: ms(self.request_timeout_ms),
        }
    }
}

/// Server-wide webhook retry settings (Sockudo's `webhooks.retry`; a webhook's own `retry` fields win).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookRetryConfig {
    /// False: one attempt, never retried.
    pub enabled: bool,
    /// Total attempts, the first included; unset: limited by `max_elapsed_time_ms` only.
    pub max_attempts: Option<u32>,
    /// No attempt starts later than this after the first.
    pub max_elapsed_time_ms: u64,
    /// Wait before the first retry.
    pub initial_backoff_ms: u64,
    /// Longest wait between attempts.
    pub max_backoff_ms: u64,
}

impl Default for WebhookRetryConfig {
    fn default() -> Self {
        WebhookRetryConfig {
            enabled: true,
            max_attempts: None,
            max_elapsed_time_ms: 300_000,
            initial_backoff_ms: 1_000,
            max_backoff_ms: 60_000,
        }
    }
}

/// Webhook batching.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookBatchingConfig {
    /// Env `WEBHOOK_BATCHING_ENABLED`.
    pub enabled: bool,
    /// Milliseconds to collect events before sending. Env `WEBHOOK_BATCHING_DURATION`.
    pub duration: u64,
    /// The most events one batched request carries (at least 1). Env `WEBHOOK_BATCHING_SIZE`.
    pub size: usize,
}

impl Default for WebhookBatchingConfig {
    fn default() -> Self {
        WebhookBatchingConfig {
            enabled: false,
            duration: 50,
            size: 100,
        }
    }
}

/// glommio executor tuning (per shard).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// io_uring registered buffer memory per shard, KiB. Env `SOCKUDO_IO_MEMORY_KB`.
    pub io_memory_kb: usize,
    /// Task preemption timer, ms. Env `SOCKUDO_PREEMPT_TIMER_MS`.
    pub preempt_timer_ms: u64,
    /// Busy-poll time before an idle shard parks, µs (0 = park at once). Env `SOCKUDO_SPIN_BEFORE_PARK_US`.
    pub spin_before_park_us: u64,
    /// io_uring submission queue entries per shard. Deep enough that the kernel's table of pending polls (one
    /// per idle connection) stays short to search. Env `SOCKUDO_RING_DEPTH`.
    pub ring_depth: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            io_memory_kb: 256,
            preempt_timer_ms: 5,
            spin_before_park_us: 0,
            ring_depth: 4096,
        }
    }
}

/// A Unix domain socket listener for a reverse proxy on the same host. As in Sockudo, when enabled it replaces the
/// TCP listener (WebSocket and REST are served on the socket; the metrics port stays TCP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnixSocketConfig {
    /// Env `UNIX_SOCKET_ENABLED`.
    pub enabled: bool,
    /// Socket file; a stale one (nobody listening) is replaced at start, the file is removed at stop.
    /// Env `UNIX_SOCKET_PATH`.
    pub path: String,
    /// Octal file mode of the socket, e.g. `"660"` (owner and group may connect). Env `UNIX_SOCKET_PERMISSION_MODE`.
    pub permission_mode: String,
}

impl Default for UnixSocketConfig {
    fn default() -> Self {
        UnixSocketConfig {
            enabled: false,
            path: "/var/run/sockudo/sockudo.sock".into(),
            permission_mode: "660".into(),
        }
    }
}

impl UnixSocketConfig {
    /// `permission_mode` as a mode number, or why it is not one (octal digits, at most `777`).
    pub fn mode(&self) -> Result<u32, String> {
        let text = self.permission_mode.trim();
        let digits = text.strip_prefix("0o").unwrap_or(text);
        match u32::from_str_radix(digits, 8) {
            Ok(mode) if !digits.is_empty() && mode <= 0o777 => Ok(mode),
            _ => Err(format!(
                "\"{}\" is not an octal file mode such as \"660\"",
                self.permission_mode
            )),
        }
    }
}

/// TLS on the main port (Sockudo's `ssl`): WebSocket and REST are both served over TLS when enabled. The
/// certificate and key are re-read on SIGHUP. `ssl.passphrase` and `ssl.ca_path` are not supported (an encrypted
/// key is refused at start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SslConfig {
    /// Env `SSL_ENABLED`.
    pub enabled: bool,
    /// PEM certificate chain, leaf first. Env `SSL_CERT_PATH`.
    pub cert_path: String,
    /// PEM private key (PKCS#8, PKCS#1/RSA or SEC1/EC). Env `SSL_KEY_PATH`.
    pub key_path: String,
    /// Also listen on `http_port` (plain HTTP) and answer every request with a 301 to `https://`.
    /// Env `SSL_REDIRECT_HTTP`.
    pub redirect_http: bool,
    /// Port of the plain-HTTP redirect listener. Env `SSL_HTTP_PORT`.
    pub http_port: u16,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            enabled: false,
            cert_path: "/app/ssl/cert.pem".into(),
            key_path: "/app/ssl/key.pem".into(),
            redirect_http: false,
            http_port: 80,
        }
    }
}

/// Delta compression (Sockudo's `delta_compression`; see docs/delta-and-tags.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeltaCompressionConfig {
    /// Master switch; off = plain frames for everyone.
    pub enabled: bool,
    /// `fossil` or `xdelta3`: announced to clients and used unless a channel or subscription names another.
    pub algorithm: String,
    /// A full message after this many deltas of one conflation key.
    pub full_message_interval: u32,
    /// Envelopes shorter than this many bytes are sent plain.
    pub min_message_size: usize,
    /// A base older than this many seconds is not used.
    pub max_state_age_secs: u32,
    /// Channels one socket may receive deltas on.
    pub max_channel_states_per_socket: usize,
    /// Conflation keys kept per channel and shard.
    pub max_conflation_states_per_channel: usize,
    /// Dot path of the conflation key for channels whose rule names none.
    pub conflation_key_path: Option<String>,
    /// Accepted for Sockudo compatibility; has no effect on a single node.
    pub cluster_coordination: bool,
    /// Leave `algorithm` out of delta frames that use the announced algorithm.
    pub omit_delta_algorithm: bool,
}

impl Default for DeltaCompressionConfig {
    fn default() -> Self {
        DeltaCompressionConfig {
            enabled: true,
            algorithm: "fossil".into(),
            full_message_interval: 10,
            min_message_size: 100,
            max_state_age_secs: 300,
            max_channel_states_per_socket: 100,
            max_conflation_states_per_channel: 100,
            conflation_key_path: None,
            cluster_coordination: false,
            omit_delta_algorithm: false,
        }
    }
}

/// Tag filtering (Sockudo's `tag_filtering`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TagFilteringConfig {
    /// Route by subscription filters. Env `TAG_FILTERING_ENABLED`.
    pub enabled: bool,
    /// Keep `tags` in delivered messages (a channel rule's `enable_tags` wins).
    pub enable_tags: bool,
}

impl Default for TagFilteringConfig {
    fn default() -> Self {
        TagFilteringConfig {
            enabled: false,
            enable_tags: true,
        }
    }
}

/// Cache channels' last events (Sockudo's `cache`; see docs/backends.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// `memory` (this process), `redis`, `redis-cluster` (shared by every node) or `none` (nothing kept:
    /// every subscriber gets `pusher:cache_miss`). Env `CACHE_DRIVER`.
    pub driver: String,
    /// The Redis backend.
    pub redis: CacheRedisConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            driver: "memory".into(),
            redis: CacheRedisConfig::default(),
        }
    }
}

/// `cache.redis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheRedisConfig {
    /// Prefix of every cache key.
    pub prefix: String,
    /// Redis URL for the cache; empty: the adapter's (`REDIS_URL`).
    pub url_override: String,
    /// `true` means the `redis-cluster` driver (nodes from `adapter.cluster.nodes`).
    pub cluster_mode: bool,
}

impl Default for CacheRedisConfig {
    fn default() -> Self {
        CacheRedisConfig {
            prefix: "sockudo_cache:".into(),
            url_override: String::new(),
            cluster_mode: false,
        }
    }
}

/// The per-app REST rate limits (Sockudo's `rate_limiter`; see docs/backends.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimiterConfig {
    /// `memory` (per process) or `redis` / `redis-cluster` (one sliding window for the whole cluster).
    /// Env `RATE_LIMITER_DRIVER`.
    pub driver: String,
    /// The Redis backend.
    pub redis: RateLimiterRedisConfig,
}

impl Default for RateLimiterConfig {
    fn default() -> Self {
        RateLimiterConfig {
            driver: "memory".into(),
            redis: RateLimiterRedisConfig::default(),
        }
    }
}

/// `rate_limiter.redis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimiterRedisConfig {
    /// Prefix of every limiter key. Env `RATE_LIMITER_REDIS_PREFIX`.
    pub prefix: String,
    /// Redis URL for the limiter; empty: the adapter's (`REDIS_URL`).
    pub url_override: String,
    /// `true` means the `redis-cluster` driver (nodes from `adapter.cluster.nodes`).
    pub cluster_mode: bool,
}

impl Default for RateLimiterRedisConfig {
    fn default() -> Self {
        RateLimiterRedisConfig {
            prefix: "sockudo_rl:".into(),
            url_override: String::new(),
            cluster_mode: false,
        }
    }
}

/// Where webhook requests wait for delivery (Sockudo's `queue`; see docs/backends.md `## Queue`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// `memory` (this process; lost with it), `redis`, `redis-cluster` or `sqs` (durable, delivered at least
    /// once by any node). Env `QUEUE_DRIVER`.
    pub driver: String,
    /// Requests held locally while the backend is unreachable; beyond it the oldest are dropped and
    /// counted (`sockudo_queue_dropped_total`). Env `QUEUE_BUFFER_SIZE`.
    pub buffer_size: usize,
    /// Webhook requests one process works on at once (in flight or waiting for a retry); the rest stay
    /// in the backend for any node. Env `QUEUE_MAX_IN_FLIGHT`.
    pub max_in_flight: usize,
    /// The Redis Stream (`driver = "redis"`; the server is `adapter.redis.url` / `REDIS_URL`).
    pub redis: QueueRedisConfig,
    /// The Redis Stream on a Redis Cluster (`driver = "redis-cluster"`).
    pub redis_cluster: QueueRedisClusterConfig,
    /// The SQS queue (`driver = "sqs"`).
    pub sqs: QueueSqsConfig,
    /// Leases of the Redis drivers.
    pub reliability: QueueReliabilityConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            driver: "memory".into(),
            buffer_size: 10_000,
            max_in_flight: 256,
            redis: QueueRedisConfig::default(),
            redis_cluster: QueueRedisClusterConfig::default(),
            sqs: QueueSqsConfig::default(),
            reliability: QueueReliabilityConfig::default(),
        }
    }
}

/// `queue.redis`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueRedisConfig {
    /// Prefix of the Stream's key (`{prefix}webhooks`).
    pub prefix: String,
    /// `true` means the `redis-cluster` driver.
    pub cluster_mode: bool,
}

impl Default for QueueRedisConfig {
    fn default() -> Self {
        QueueRedisConfig {
            prefix: "sockudo_queue:".into(),
            cluster_mode: false,
        }
    }
}

/// `queue.redis_cluster`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueRedisClusterConfig {
    /// Seed nodes (`host:port` or `redis://host:port`); empty: `adapter.cluster.nodes` (`REDIS_CLUSTER_NODES`).
    pub nodes: Vec<String>,
    /// Prefix of the Stream's key. Env `REDIS_CLUSTER_QUEUE_PREFIX`.
    pub prefix: String,
}

impl Default for QueueRedisClusterConfig {
    fn default() -> Self {
        QueueRedisClusterConfig {
            nodes: Vec::new(),
            prefix: "sockudo_queue:".into(),
        }
    }
}

/// `queue.sqs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSqsConfig {
    /// AWS region. Env `SQS_REGION`.
    pub region: String,
    /// The queue's URL; empty: the queue `queue_name`, created when missing. Env `SQS_QUEUE_URL`.
    pub queue_url: String,
    /// Env `SQS_QUEUE_NAME`.
    pub queue_name: String,
    /// A non-AWS endpoint (moto, LocalStack, ElasticMQ). Env `SQS_ENDPOINT_URL`.
    pub endpoint_url: Option<String>,
    /// Seconds a received message stays invisible to others: the lease. Env `SQS_VISIBILITY_TIMEOUT`.
    pub visibility_timeout: u64,
    /// Long-poll wait of one receive, seconds (at most 20). Env `SQS_WAIT_TIME_SECONDS`.
    pub wait_time_seconds: u64,
    /// Messages per receive (1 to 10). Env `SQS_MAX_MESSAGES`.
    pub max_messages: u32,
}

impl Default for QueueSqsConfig {
    fn default() -> Self {
        QueueSqsConfig {
            region: "us-east-1".into(),
            queue_url: String::new(),
            queue_name: "sockudo-webhooks".into(),
            endpoint_url: None,
            visibility_timeout: 30,
            wait_time_seconds: 5,
            max_messages: 10,
        }
    }
}

/// `queue.reliability`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueReliabilityConfig {
    /// Redis: how long a taken request stays reserved for its process without a renewal; a process that
    /// died leaves its requests to the others after this long.
    pub lease_duration_ms: u64,
    /// How often the leases of the requests in hand are renewed (Redis and SQS).
    pub lease_renew_interval_ms: u64,
}

impl Default for QueueReliabilityConfig {
    fn default() -> Self {
        QueueReliabilityConfig {
            lease_duration_ms: 30_000,
            lease_renew_interval_ms: 10_000,
        }
    }
}

/// `database.redis` (Sockudo's shared Redis connection settings). Used by the webhook queue when neither
/// `adapter.redis.url` (`REDIS_URL`) nor `queue.redis_cluster.nodes` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisDatabaseConfig {
    /// Env `DATABASE_REDIS_HOST`.
    pub host: String,
    /// Env `DATABASE_REDIS_PORT`.
    pub port: u16,
    /// Env `DATABASE_REDIS_USERNAME`.
    pub username: Option<String>,
    /// Env `DATABASE_REDIS_PASSWORD`.
    pub password: Option<String>,
    /// Env `DATABASE_REDIS_DB`.
    pub db: u32,
    /// Redis Cluster seed nodes. Env `DATABASE_REDIS_CLUSTER_NODES` (comma-separated).
    pub cluster_nodes: Vec<String>,
}

impl Default for RedisDatabaseConfig {
    fn default() -> Self {
        RedisDatabaseConfig {
            host: "127.0.0.1".into(),
            port: 6379,
            username: None,
            password: None,
            db: 0,
            cluster_nodes: Vec::new(),
        }
    }
}
