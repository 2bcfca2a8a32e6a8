//! Applications: the memory app manager.
//!
//! Every shard holds its own copy of the registry (built at start-up from the configuration, replaced whole on
//! reload), so lookups on the per-message path touch only shard-local memory. The one cross-shard value is the
//! per-app connection count, an atomic touched on connect and disconnect only, never per message.
//!
//! An app keeps its index for the life of the process: a reload matches apps by id, so an app that stays keeps
//! its index and counters (and its open connections, which hold the old `Rc<App>` until they close), a new app is
//! appended, and a removed app keeps its slot but can no longer be found by id or key.

use crate::config::{AppConfig, Config};
use sockudo_webhooks::{AppWebhooks, EventKind, KindSet};
use std::cell::RefCell;
use std::collections::HashMap;
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
    /// Client events one connection may send per second; 0 = unlimited.
    pub max_client_events_per_second: u64,
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
    /// Position in the registry; identical on every shard, so shards can name an app by index in messages.
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
}

impl App {
    /// True when some webhook of this app wants events of `kind`.
    pub fn wants_webhook(&self, kind: EventKind) -> bool {
        self.webhooks.contains(kind)
    }
}

/// The webhooks of `cfg`, as the I/O shard delivers them. Definitions were checked when the configuration was
/// loaded; one that still does not parse here yields no webhook.
pub fn app_webhooks(cfg: &AppConfig) -> AppWebhooks {
    let webhooks = cfg
        .webhooks
        .as_deref()
        .map(sockudo_webhooks::parse_webhooks)
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
        let mut current = self.connections.load(Ordering::Relaxed);
        loop {
            if max != 0 && current >= max {
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

/// The apps of one shard, found by id or by key; replaced whole by [`AppRegistry::replace`] on reload.
#[derive(Debug)]
pub struct AppRegistry {
    set: RefCell<AppSet>,
}

#[derive(Debug, Default)]
struct AppSet {
    apps: Vec<Rc<App>>,
    by_id: HashMap<String, usize>,
    by_key: HashMap<String, usize>,
}

/// The per-app state every shard's copy of an app shares.
#[derive(Debug, Clone, Default)]
struct SharedCounters {
    connections: Arc<AtomicU64>,
    backend_events: Arc<RateWindow>,
    read_requests: Arc<RateWindow>,
}

/// One app slot of an [`AppSeed`].
#[derive(Debug, Clone)]
struct SeedEntry {
    config: AppConfig,
    counters: SharedCounters,
    /// Gone from the configuration since start-up: the slot stays (indexes never move) but cannot be found.
    removed: bool,
}

/// What every shard needs to build its own registry: the configuration and the shared connection counters.
#[derive(Debug, Clone)]
pub struct AppSeed {
    apps: Vec<SeedEntry>,
    defaults: AppLimits,
}

impl AppSeed {
    /// Prepares the apps of `config`; call once per process.
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
            enable_user_authentication: false,
            allowed_origins: Vec::new(),
            max_backend_events_per_second: 0,
            max_read_requests_per_second: 0,
            enable_subscription_count: false,
            enable_watchlist_events: false,
        };
        let apps = config
            .app_manager
            .array
            .apps
            .iter()
            .map(|a| SeedEntry {
                config: a.clone(),
                counters: SharedCounters::default(),
                removed: false,
            })
            .collect();
        AppSeed { apps, defaults }
    }

    /// The seed for a reloaded `config`: apps matched by id keep their index and shared counters, new apps are
    /// appended, removed ones keep their slot, unfindable.
    pub fn reloaded(&self, config: &Config) -> AppSeed {
        let mut next = AppSeed::new(config);
        let mut apps: Vec<SeedEntry> = self
            .apps
            .iter()
            .map(|old| SeedEntry {
                removed: true,
                ..old.clone()
            })
            .collect();
        for entry in std::mem::take(&mut next.apps) {
            match apps.iter_mut().find(|old| old.config.id == entry.config.id) {
                Some(slot) => {
                    slot.config = entry.config;
                    slot.removed = false;
                }
                None => apps.push(entry),
            }
        }
        next.apps = apps;
        next
    }

    /// Every app slot's credentials and webhooks, by index, for the I/O shard.
    pub fn webhooks(&self) -> Vec<AppWebhooks> {
        self.apps.iter().map(|e| app_webhooks(&e.config)).collect()
    }

    /// Ids of the apps that can be found.
    pub fn app_ids(&self) -> Vec<&str> {
        self.apps
            .iter()
            .filter(|e| !e.removed)
            .map(|e| e.config.id.as_str())
            .collect()
    }

    /// Number of app slots (found or removed); app indexes are below it.
    pub fn slots(&self) -> usize {
        self.apps.len()
    }

    /// Builds a shard-local registry.
    pub fn registry(&self) -> AppRegistry {
        AppRegistry {
            set: RefCell::new(self.app_set()),
        }
    }

    fn app_set(&self) -> AppSet {
        let mut registry = AppSet {
            apps: Vec::with_capacity(self.apps.len()),
            by_id: HashMap::new(),
            by_key: HashMap::new(),
        };
        for (index, entry) in self.apps.iter().enumerate() {
            let (cfg, counter) = (&entry.config, &entry.counters);
            let limits = effective_limits(cfg, &self.defaults);
            let app = App {
                index: index as u32,
                id: cfg.id.clone(),
                key: cfg.key.clone(),
                secret: cfg.secret.clone(),
                enabled: cfg.enabled,
                limits,
                connections: counter.connections.clone(),
                backend_events: counter.backend_events.clone(),
                read_requests: counter.read_requests.clone(),
                config: cfg.clone(),
                webhooks: app_webhooks(cfg).wanted(),
                delta_rules: cfg
                    .channel_delta_compression
                    .as_ref()
                    .and_then(|m| crate::delta::ChannelRules::parse(m).ok())
                    .unwrap_or_default(),
            };
            if !entry.removed {
                registry.by_id.insert(app.id.clone(), index);
                registry.by_key.insert(app.key.clone(), index);
            }
            registry.apps.push(Rc::new(app));
        }
        registry
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
        enable_user_authentication: cfg.enable_user_authentication.unwrap_or(false),
        allowed_origins: cfg.allowed_origins.clone().unwrap_or_default(),
        max_backend_events_per_second: cfg.max_backend_events_per_second.unwrap_or(0),
        max_read_requests_per_second: cfg.max_read_requests_per_second.unwrap_or(0),
        enable_subscription_count: cfg.enable_subscription_count.unwrap_or(false),
        enable_watchlist_events: cfg.enable_watchlist_events.unwrap_or(false),
    }
}

impl AppRegistry {
    /// The app with REST id `id`.
    pub fn by_id(&self, id: &str) -> Option<Rc<App>> {
        let set = self.set.borrow();
        set.by_id.get(id).map(|&i| set.apps[i].clone())
    }

    /// The app with public key `key`.
    pub fn by_key(&self, key: &str) -> Option<Rc<App>> {
        let set = self.set.borrow();
        set.by_key.get(key).map(|&i| set.apps[i].clone())
    }

    /// The app at registry position `index` (the same on every shard), removed or not.
    pub fn by_index(&self, index: u32) -> Option<Rc<App>> {
        self.set.borrow().apps.get(index as usize).cloned()
    }

    /// Number of app slots; every app index is below it.
    pub fn len(&self) -> usize {
        self.set.borrow().apps.len()
    }

    /// True when no app is configured.
    pub fn is_empty(&self) -> bool {
        self.set.borrow().apps.is_empty()
    }

    /// Replaces this shard's apps with those of `seed` (a reload). Connections keep the `Rc<App>` they started
    /// with; new lookups see the new settings.
    pub fn replace(&self, seed: &AppSeed) {
        *self.set.borrow_mut() = seed.app_set();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn config_with(apps: &[(&str, &str, &str)]) -> Config {
        let mut config = Config::default();
        config.app_manager.array.apps = apps
            .iter()
            .map(|(id, key, secret)| AppConfig {
                id: (*id).into(),
                key: (*key).into(),
                secret: (*secret).into(),
                enabled: true,
                ..AppConfig::default()
            })
            .collect();
        config
    }

    #[test]
    fn reload_keeps_indexes_and_counters_appends_new_apps_and_hides_removed_ones() {
        let seed = AppSeed::new(&config_with(&[("1", "k1", "s1"), ("2", "k2", "s2")]));
        let registry = seed.registry();
        let two = registry.by_id("2").expect("app 2");
        assert!(two.try_acquire_connection());

        let next = seed.reloaded(&config_with(&[("2", "k2b", "s2b"), ("3", "k3", "s3")]));
        registry.replace(&next);
        assert!(registry.by_id("1").is_none(), "removed app cannot be found");
        assert!(registry.by_key("k1").is_none());
        assert_eq!(registry.by_index(0).expect("slot kept").id, "1");
        let two_now = registry.by_key("k2b").expect("new key of app 2");
        assert_eq!((two_now.index, two_now.secret.as_str()), (1, "s2b"));
        assert!(registry.by_key("k2").is_none(), "old key gone");
        assert_eq!(two_now.connection_count(), 1, "counters survive a reload");
        assert_eq!(registry.by_id("3").expect("new app").index, 2);
        assert_eq!(registry.len(), 3);
        assert_eq!(next.app_ids(), vec!["2", "3"]);

        // Bringing app 1 back finds its old slot.
        let again = next.reloaded(&config_with(&[("1", "k1", "s1")]));
        registry.replace(&again);
        assert_eq!(registry.by_id("1").expect("back").index, 0);
        assert!(registry.by_id("3").is_none());
    }

    #[test]
    fn reloaded_webhooks_follow_the_new_configuration_by_index() {
        let hook = |url: &str| {
            Some(vec![
                serde_json::json!({"url": url, "event_types": ["channel_occupied"]}),
            ])
        };
        let mut first = config_with(&[("1", "k1", "s1")]);
        first.app_manager.array.apps[0].webhooks = hook("http://127.0.0.1:1/a");
        let seed = AppSeed::new(&first);
        let mut second = config_with(&[("2", "k2", "s2"), ("1", "k1", "s1b")]);
        second.app_manager.array.apps[0].webhooks = hook("http://127.0.0.1:1/b");
        let next = seed.reloaded(&second);
        let registry = next.registry();
        assert!(!registry
            .by_id("1")
            .unwrap()
            .wants_webhook(EventKind::ChannelOccupied));
        assert!(registry
            .by_id("2")
            .unwrap()
            .wants_webhook(EventKind::ChannelOccupied));
        let webhooks = next.webhooks();
        assert_eq!(webhooks.len(), 2);
        assert_eq!(
            (webhooks[0].app_id.as_str(), webhooks[0].secret.as_str()),
            ("1", "s1b")
        );
        assert!(webhooks[0].webhooks.is_empty());
        assert_eq!(webhooks[1].app_id, "2");
        assert_eq!(webhooks[1].webhooks.len(), 1);
    }
}
