//! Applications: the memory app manager and the shard-side cache of the database app managers.
//!
//! Every shard holds its own registry of apps (the configured ones, or those a database driver returned), so
//! lookups on the per-message path touch only shard-local memory. A database lookup that misses the cache asks
//! the I/O shard ([`lookup`]) and never blocks the shard. The cross-shard values are the per-app connection
//! count and REST rate windows ([`slots`]), atomics touched on connect, disconnect and REST calls, never per
//! message.

pub mod lookup;
pub mod registry;
pub mod slots;
pub mod source;

pub use lookup::LookupError;
pub use registry::AppRegistry;
pub use slots::{AppSlots, SlotShared};

use crate::config::{AppConfig, Config};
use sockudo_webhooks::{AppWebhooks, EventKind, KindSet, WebhookDefaults};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Limits and switches of one app, with process defaults filled in where the app leaves them unset.
#[derive(Debug, Clone)]
pub struct AppLimits {
    /// 0 = unlimited.
    pub max_connections: u64,
    /// Client events (`client-*`) are accepted only when set.
    pub enable_client_messages: bool,
    /// Longest channel name accepted, in bytes.
    pub max_channel_name_length: usize,
    /// Longest event name accepted, in bytes.
    pub max_event_name_length: usize,
    /// Largest event `data`, in bytes.
    pub max_event_payload_bytes: usize,
    /// Most channels one `POST /events` may name.
    pub max_event_channels_at_once: usize,
    /// Most events one `POST /batch_events` may carry.
    pub max_event_batch_size: usize,
    /// Distinct users in one presence channel.
    pub max_presence_members: usize,
    /// Largest `user_info` of a presence member, in bytes of JSON text.
    pub max_presence_member_bytes: usize,
    /// Longest user id.
    pub max_user_id_length: usize,
    /// Client events one connection may send per window; 0 = unlimited.
    pub max_client_events_per_second: u64,
    /// The window those client events are counted in, in seconds (at least 1).
    pub client_event_window_secs: u32,
    /// Going over the client event limit closes the connection (4301) instead of only refusing the event.
    pub terminate_on_client_event_limit: bool,
    /// Connections must sign in or join a private/presence channel within the user authentication timeout.
    pub enable_user_authentication: bool,
    /// Origins allowed to open WebSockets; empty = any.
    pub allowed_origins: Vec<String>,
    /// Events the REST API accepts per second; 0 = unlimited.
    pub max_backend_events_per_second: u64,
    /// REST read requests per second; 0 = unlimited.
    pub max_read_requests_per_second: u64,
    /// Announce `pusher_internal:subscription_count` on non-presence channels.
    pub enable_subscription_count: bool,
    /// Send `pusher_internal:watchlist_events` for signed-in users' watchlists.
    pub enable_watchlist_events: bool,
}

/// One application as the server uses it.
#[derive(Debug)]
pub struct App {
    /// The app's slot ([`slots`]): stable for the life of the process and the same on every shard, so shards
    /// name an app by slot in their messages. Never sent to another node (they use the id).
    pub index: u32,
    /// The app id used in REST paths.
    pub id: String,
    /// The public key used in `/app/{key}` and `auth_key`.
    pub key: String,
    /// The signing secret.
    pub secret: String,
    /// A disabled app refuses connections (4003) and REST calls (403).
    pub enabled: bool,
    /// Effective limits.
    pub limits: AppLimits,
    /// Open connections across all shards; shared by every shard's copy of this app.
    connections: Arc<AtomicU64>,
    /// Open connections on the other nodes of the cluster (0 alone), counted against `max_connections` too.
    remote_connections: Arc<AtomicU64>,
    /// Events published through the REST API in the current second, across all shards.
    pub backend_events: Arc<RateWindow>,
    /// REST read requests in the current second, across all shards.
    pub read_requests: Arc<RateWindow>,
    /// The configuration record this app was built from, for features added later.
    pub config: AppConfig,
    /// Webhook event types some webhook of this app wants; worker shards build no event outside this set.
    pub webhooks: KindSet,
    /// `channel_delta_compression`, parsed (checked when the configuration was loaded).
    pub delta_rules: crate::delta::ChannelRules,
    /// The state shared by every shard's copy, and the version of its record this copy was built from.
    pub(crate) shared: Arc<SlotShared>,
    pub(crate) version: u64,
}

impl App {
    /// True when some webhook of this app wants events of `kind`.
    pub fn wants_webhook(&self, kind: EventKind) -> bool {
        self.webhooks.contains(kind)
    }
}

/// The webhooks of `cfg`, as the I/O shard delivers them, with the server-wide `defaults` for the fields a
/// webhook leaves out. Definitions were checked when the configuration was loaded; one that still does not
/// parse here yields no webhook.
pub fn app_webhooks(cfg: &AppConfig, defaults: &WebhookDefaults) -> AppWebhooks {
    let webhooks = cfg
        .webhooks
        .as_deref()
        .map(|raw| sockudo_webhooks::parse_webhooks_with(raw, defaults))
        .and_then(Result::ok)
        .unwrap_or_default();
    AppWebhooks {
        app_id: cfg.id.clone(),
        key: cfg.key.clone(),
        secret: cfg.secret.clone(),
        webhooks,
    }
}

impl App {
    /// Reserves a connection slot; false when the app is at `max_connections`.
    pub fn try_acquire_connection(&self) -> bool {
        let max = self.limits.max_connections;
        let elsewhere = self.remote_connections.load(Ordering::Relaxed);
        let mut current = self.connections.load(Ordering::Relaxed);
        loop {
            if max != 0 && current.saturating_add(elsewhere) >= max {
                return false;
            }
            match self.connections.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }

    /// Gives back a slot taken by [`App::try_acquire_connection`].
    pub fn release_connection(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Open connections of this app on all shards.
    pub fn connection_count(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// A per-second counter shared by all shards, for the per-app REST rate limits. Touched once per REST request,
/// never per delivered message.
#[derive(Debug, Default)]
pub struct RateWindow {
    /// Unix second of the window in the high 32 bits, count in the low 32 bits.
    state: AtomicU64,
}

impl RateWindow {
    /// Takes `n` units from the window of `now_secs` unless that would pass `limit` (0 = unlimited).
    pub fn try_take(&self, now_secs: u64, n: u64, limit: u64) -> bool {
        if limit == 0 {
            return true;
        }
        let window = now_secs & 0xffff_ffff;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (w, count) = (current >> 32, current & 0xffff_ffff);
            let used = if w == window { count } else { 0 };
            if used + n > limit {
                return false;
            }
            let next = (window << 32) | (used + n).min(0xffff_ffff);
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(actual) => current = actual,
            }
        }
    }
}

/// Where a shard's apps come from and how long it keeps them.
#[derive(Debug, Clone, PartialEq)]
pub enum AppPolicy {
    /// The `memory` driver: the configured apps, never expiring; an unknown key or id is unknown at once.
    Memory,
    /// A database driver, asked through the I/O shard on a cache miss.
    Database {
        /// How long a found app is served before it is looked up again (`app_manager.cache.ttl`; 0 when the
        /// cache is disabled).
        ttl: std::time::Duration,
        /// How long an unknown key or id is remembered as unknown.
        negative_ttl: std::time::Duration,
    },
}

/// What every shard needs to build its own registry: the configured apps, their slots and the cache policy.
#[derive(Debug, Clone)]
pub struct AppSeed {
    apps: Vec<(AppConfig, Arc<SlotShared>)>,
    /// Apps of an earlier configuration gone from this one (reload): `(id, key, slot)`.
    removed: Vec<(String, String, u32)>,
    defaults: AppLimits,
    /// `webhooks.retry` / `webhooks.request_timeout_ms`: what webhooks use for the fields they leave out.
    webhook_defaults: WebhookDefaults,
    /// The process-wide slot table.
    pub slots: Arc<AppSlots>,
    /// Where apps come from.
    pub policy: AppPolicy,
}

/// Longest time an unknown key is remembered as unknown (shorter when the cache TTL is shorter).
const MAX_NEGATIVE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Shortest time an unknown key is remembered as unknown, also with the cache disabled or a TTL of 0: a flood
/// of connects with a bad key then costs at most one query per shard per second instead of one per connect.
const MIN_NEGATIVE_TTL: std::time::Duration = std::time::Duration::from_secs(1);

impl AppSeed {
    /// Prepares the apps of `config`; call once per process. With a database driver the inline apps are not
    /// used: every app comes from the database.
    pub fn new(config: &Config) -> Self {
        let defaults = AppLimits {
            max_connections: 0,
            enable_client_messages: false,
            max_channel_name_length: config.channel_limits.max_name_length as usize,
            max_event_name_length: config.event_limits.max_name_length as usize,
            max_event_payload_bytes: config.event_limits.max_payload_in_kb as usize * 1024,
            max_event_channels_at_once: config.event_limits.max_channels_at_once as usize,
            max_event_batch_size: config.event_limits.max_batch_size as usize,
            max_presence_members: config.presence.max_members_per_channel as usize,
            max_presence_member_bytes: config.presence.max_member_size_in_kb as usize * 1024,
            max_user_id_length: config.presence.max_user_id_length as usize,
            max_client_events_per_second: 10,
            client_event_window_secs: 1,
            terminate_on_client_event_limit: false,
            enable_user_authentication: false,
            allowed_origins: Vec::new(),
            max_backend_events_per_second: 0,
            max_read_requests_per_second: 0,
            enable_subscription_count: false,
            enable_watchlist_events: false,
        };
        let slots = Arc::new(AppSlots::default());
        let policy = if crate::config::is_memory_driver(&config.app_manager.driver) {
            AppPolicy::Memory
        } else {
            let cache = &config.app_manager.cache;
            let ttl = if cache.enabled {
                std::time::Duration::from_secs(cache.ttl)
            } else {
                std::time::Duration::ZERO
            };
            AppPolicy::Database {
                ttl,
                negative_ttl: ttl.clamp(MIN_NEGATIVE_TTL, MAX_NEGATIVE_TTL),
            }
        };
        let apps = match policy {
            AppPolicy::Memory => config
                .app_manager
                .array
                .apps
                .iter()
                .map(|a| (a.clone(), slots.intern(&a.id)))
                .collect(),
            AppPolicy::Database { .. } => Vec::new(),
        };
        AppSeed {
            apps,
            removed: Vec::new(),
            defaults,
            webhook_defaults: config.webhooks.defaults(),
            slots,
            policy,
        }
    }

    /// The seed for a reloaded `config` (memory driver): the same slot table, so an app that stays keeps its
    /// slot and shared counters (and its open connections their copy), a new app gets a new slot, and an app
    /// gone from the configuration can no longer be found.
    pub fn reloaded(&self, config: &Config) -> AppSeed {
        let mut next = AppSeed::new(config);
        next.slots = self.slots.clone();
        next.apps = next
            .apps
            .into_iter()
            .map(|(cfg, _)| {
                let shared = next.slots.intern(&cfg.id);
                shared.publish(Some(&cfg));
                (cfg, shared)
            })
            .collect();
        next.removed = self
            .apps
            .iter()
            .filter(|(old, _)| !next.apps.iter().any(|(cfg, _)| cfg.id == old.id))
            .map(|(old, shared)| (old.id.clone(), old.key.clone(), shared.slot))
            .collect();
        next
    }

    /// Ids of the configured apps.
    pub fn app_ids(&self) -> Vec<&str> {
        self.apps.iter().map(|(cfg, _)| cfg.id.as_str()).collect()
    }

    /// Each configured app's slot and webhooks, then each removed app's slot with `None`, for the I/O shard.
    pub fn slot_webhooks(&self) -> Vec<(u32, Option<AppWebhooks>)> {
        self.apps
            .iter()
            .map(|(cfg, shared)| (shared.slot, Some(app_webhooks(cfg, &self.webhook_defaults))))
            .chain(self.removed.iter().map(|(_, _, slot)| (*slot, None)))
            .collect()
    }

    /// The webhooks of the configured apps, in slot order (slot `i` at position `i`).
    pub fn webhooks(&self) -> Vec<AppWebhooks> {
        self.apps
            .iter()
            .map(|(cfg, _)| app_webhooks(cfg, &self.webhook_defaults))
            .collect()
    }

    /// Builds a shard-local registry; `io` answers cache misses of a database driver.
    pub fn registry(&self, io: Option<sockudo_io_shard::IoSender>) -> AppRegistry {
        let registry = AppRegistry::new(
            self.slots.clone(),
            self.defaults.clone(),
            self.webhook_defaults,
            self.policy.clone(),
            io,
        );
        self.fill(&registry);
        registry
    }

    /// Puts this seed's apps into `registry` (start-up, or a reload replacing the memory driver's apps).
    pub fn fill(&self, registry: &AppRegistry) {
        for (id, key, _) in &self.removed {
            registry.forget(id, key);
        }
        for (cfg, shared) in &self.apps {
            registry.insert(Rc::new(self.build(cfg, shared)), None);
        }
    }

    fn build(&self, cfg: &AppConfig, shared: &Arc<SlotShared>) -> App {
        App::build(cfg, shared, &self.defaults, &self.webhook_defaults)
    }
}

impl App {
    /// The server's view of app record `cfg`, sharing the per-app state of its slot.
    pub fn build(
        cfg: &AppConfig,
        shared: &Arc<SlotShared>,
        defaults: &AppLimits,
        webhook_defaults: &WebhookDefaults,
    ) -> App {
        App {
            index: shared.slot,
            id: cfg.id.clone(),
            key: cfg.key.clone(),
            secret: cfg.secret.clone(),
            enabled: cfg.enabled,
            limits: effective_limits(cfg, defaults),
            connections: shared.connections.clone(),
            remote_connections: shared.remote_connections.clone(),
            backend_events: shared.backend_events.clone(),
            read_requests: shared.read_requests.clone(),
            config: cfg.clone(),
            webhooks: app_webhooks(cfg, webhook_defaults).wanted(),
            delta_rules: cfg
                .channel_delta_compression
                .as_ref()
                .and_then(|m| crate::delta::ChannelRules::parse(m).ok())
                .unwrap_or_default(),
            shared: shared.clone(),
            version: shared.version(),
        }
    }
}

fn effective_limits(cfg: &AppConfig, defaults: &AppLimits) -> AppLimits {
    let or = |v: Option<u64>, d: usize| match v {
        Some(n) if n > 0 => n as usize,
        _ => d,
    };
    AppLimits {
        max_connections: cfg.max_connections.unwrap_or(0),
        enable_client_messages: cfg.enable_client_messages,
        max_channel_name_length: or(
            cfg.max_channel_name_length,
            defaults.max_channel_name_length,
        ),
        max_event_name_length: or(cfg.max_event_name_length, defaults.max_event_name_length),
        max_event_payload_bytes: cfg
            .max_event_payload_in_kb
            .filter(|kb| *kb > 0)
            .map(|kb| kb as usize * 1024)
            .unwrap_or(defaults.max_event_payload_bytes),
        max_event_channels_at_once: or(
            cfg.max_event_channels_at_once,
            defaults.max_event_channels_at_once,
        ),
        max_event_batch_size: or(cfg.max_event_batch_size, defaults.max_event_batch_size),
        max_presence_members: or(
            cfg.max_presence_members_per_channel,
            defaults.max_presence_members,
        ),
        max_presence_member_bytes: cfg
            .max_presence_member_size_in_kb
            .filter(|kb| *kb > 0)
            .map(|kb| kb as usize * 1024)
            .unwrap_or(defaults.max_presence_member_bytes),
        max_user_id_length: defaults.max_user_id_length,
        max_client_events_per_second: cfg
            .max_client_events_per_second
            .unwrap_or(defaults.max_client_events_per_second),
        client_event_window_secs: cfg
            .decay_seconds
            .map(|s| s.clamp(1, u64::from(u32::MAX)) as u32)
            .unwrap_or(defaults.client_event_window_secs),
        terminate_on_client_event_limit: cfg
            .terminate_on_limit
            .unwrap_or(defaults.terminate_on_client_event_limit),
        enable_user_authentication: cfg.enable_user_authentication.unwrap_or(false),
        allowed_origins: cfg.allowed_origins.clone().unwrap_or_default(),
        max_backend_events_per_second: cfg.max_backend_events_per_second.unwrap_or(0),
        max_read_requests_per_second: cfg.max_read_requests_per_second.unwrap_or(0),
        enable_subscription_count: cfg.enable_subscription_count.unwrap_or(false),
        enable_watchlist_events: cfg.enable_watchlist_events.unwrap_or(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_remembered_between_one_and_five_seconds() {
        use std::time::Duration;
        let negative = |enabled: bool, ttl: u64| {
            let mut config = Config::default();
            config.app_manager.driver = "postgresql".into();
            config.app_manager.cache.enabled = enabled;
            config.app_manager.cache.ttl = ttl;
            match AppSeed::new(&config).policy {
                AppPolicy::Database { ttl, negative_ttl } => (ttl, negative_ttl),
                AppPolicy::Memory => panic!("a database driver"),
            }
        };
        assert_eq!(
            negative(true, 300),
            (Duration::from_secs(300), Duration::from_secs(5))
        );
        assert_eq!(
            negative(true, 3),
            (Duration::from_secs(3), Duration::from_secs(3))
        );
        assert_eq!(
            negative(false, 300),
            (Duration::ZERO, Duration::from_secs(1)),
            "a flood of bad keys is bounded with the cache disabled too"
        );
        assert_eq!(negative(true, 0).1, Duration::from_secs(1));
    }

    #[test]
    fn rate_window_refuses_past_the_limit_and_resets_each_second() {
        let w = RateWindow::default();
        assert!(w.try_take(100, 3, 5));
        assert!(w.try_take(100, 2, 5));
        assert!(!w.try_take(100, 1, 5));
        assert!(w.try_take(101, 5, 10));
        assert!(!w.try_take(101, 6, 10));
        assert!(w.try_take(101, 5, 10));
        assert!(w.try_take(102, 1000, 0), "0 means unlimited");
    }

    #[test]
    fn webhooks_take_the_server_wide_retry_and_timeout_for_fields_they_leave_out() {
        let mut config = Config::default();
        config.webhooks.retry.max_attempts = Some(3);
        config.webhooks.retry.initial_backoff_ms = 250;
        config.webhooks.request_timeout_ms = 2_000;
        let mut app = AppConfig::dev_app();
        app.webhooks = Some(vec![
            serde_json::json!({"url": "http://127.0.0.1:1/a", "event_types": ["channel_occupied"]}),
            serde_json::json!({"url": "http://127.0.0.1:1/b", "event_types": ["channel_occupied"],
                               "retry": {"max_attempts": 9}, "request_timeout_ms": 500}),
        ]);
        config.app_manager.array.apps.push(app);
        let seed = AppSeed::new(&config);
        let hooks = &seed.webhooks()[0].webhooks;
        assert_eq!(hooks[0].retry.max_attempts, Some(3));
        assert_eq!(
            hooks[0].retry.initial_backoff,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(hooks[0].request_timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            hooks[1].retry.max_attempts,
            Some(9),
            "the webhook's own wins"
        );
        assert_eq!(
            hooks[1].retry.initial_backoff,
            std::time::Duration::from_millis(250)
        );
        assert_eq!(
            hooks[1].request_timeout,
            std::time::Duration::from_millis(500)
        );
    }
}
