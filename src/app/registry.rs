//! One shard's apps: found by key, by id and by slot, with the freshness rules of the cache.
//!
//! Shard-local (`RefCell`), touched only by the shard's thread. With the memory driver every app is inserted at
//! start and never expires. With a database driver entries are filled by [`super::lookup`] and carry a
//! deadline; an expired entry is looked up again on its next use, and still served when the database cannot
//! answer, so that a database outage never takes a cached app away.

use super::{App, AppLimits, AppPolicy, AppSlots};
use sockudo_io_shard::{IoSender, Lookup};
use sockudo_webhooks::WebhookDefaults;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// A cache entry.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    /// The app; served as fresh until `fresh_until` (`None`: forever).
    Found {
        app: Rc<App>,
        fresh_until: Option<Instant>,
    },
    /// No such app, until then.
    Missing { until: Instant },
}

/// What the cache says about a lookup.
#[derive(Debug)]
pub(crate) enum Hit {
    /// Fresh answer (`None`: known not to exist).
    Fresh(Option<Rc<App>>),
    /// An answer past its TTL: serve it, refresh it.
    Stale(Rc<App>),
    /// Nothing cached.
    Miss,
}

/// The apps of one shard.
#[derive(Debug)]
pub struct AppRegistry {
    pub(crate) slots: Arc<AppSlots>,
    pub(crate) defaults: AppLimits,
    /// What webhooks use for the fields they leave out (`webhooks.retry`, `webhooks.request_timeout_ms`).
    pub(crate) webhook_defaults: WebhookDefaults,
    pub(crate) policy: AppPolicy,
    pub(crate) io: Option<IoSender>,
    by_key: RefCell<HashMap<String, Cached>>,
    by_id: RefCell<HashMap<String, Cached>>,
    by_slot: RefCell<HashMap<u32, Rc<App>>>,
    /// Lookups waiting for the I/O shard, with the callers waiting for each.
    pub(crate) pending:
        RefCell<HashMap<Lookup, Vec<tokio::sync::oneshot::Sender<super::lookup::Outcome>>>>,
    /// After a failed database lookup, uncached lookups fail at once until then (no query per connect while
    /// the database is down).
    pub(crate) down_until: Cell<Option<Instant>>,
}

impl AppRegistry {
    pub(crate) fn new(
        slots: Arc<AppSlots>,
        defaults: AppLimits,
        webhook_defaults: WebhookDefaults,
        policy: AppPolicy,
        io: Option<IoSender>,
    ) -> AppRegistry {
        AppRegistry {
            slots,
            defaults,
            webhook_defaults,
            policy,
            io,
            by_key: RefCell::default(),
            by_id: RefCell::default(),
            by_slot: RefCell::default(),
            pending: RefCell::default(),
            down_until: Cell::new(None),
        }
    }

    /// True with a database driver.
    pub fn is_database(&self) -> bool {
        matches!(self.policy, AppPolicy::Database { .. })
    }

    /// Caches `app` under its key, id and slot, fresh until `fresh_until` (`None`: forever).
    pub(crate) fn insert(&self, app: Rc<App>, fresh_until: Option<Instant>) {
        let entry = Cached::Found {
            app: app.clone(),
            fresh_until,
        };
        self.by_key
            .borrow_mut()
            .insert(app.key.clone(), entry.clone());
        self.by_id.borrow_mut().insert(app.id.clone(), entry);
        self.by_slot.borrow_mut().insert(app.index, app);
    }

    /// An app removed from the configuration (reload): no longer found by id or key. Its slot entry stays for
    /// the connections still open with it.
    pub(crate) fn forget(&self, id: &str, key: &str) {
        self.by_id.borrow_mut().remove(id);
        self.by_key.borrow_mut().remove(key);
    }

    /// Remembers that no app matches `by` until `until`. An app cached under that key or id is dropped, and its
    /// slot entry too unless another entry still names it.
    pub(crate) fn insert_missing(&self, by: &Lookup, until: Instant) {
        let old = self
            .map(by)
            .borrow_mut()
            .insert(by.value().to_string(), Cached::Missing { until });
        if let Some(Cached::Found { app, .. }) = old {
            let other = match by {
                Lookup::Key(_) => self.by_id.borrow().get(&app.id).cloned(),
                Lookup::Id(_) => self.by_key.borrow().get(&app.key).cloned(),
            };
            let still_named =
                matches!(other, Some(Cached::Found { app: ref a, .. }) if a.index == app.index);
            if !still_named {
                self.by_slot.borrow_mut().remove(&app.index);
            }
        }
    }

    fn map(&self, by: &Lookup) -> &RefCell<HashMap<String, Cached>> {
        match by {
            Lookup::Key(_) => &self.by_key,
            Lookup::Id(_) => &self.by_id,
        }
    }

    /// What the cache holds for `by` at `now`.
    pub(crate) fn cached(&self, by: &Lookup, now: Instant) -> Hit {
        match self.map(by).borrow().get(by.value()) {
            None => Hit::Miss,
            Some(Cached::Missing { until }) if *until > now => Hit::Fresh(None),
            Some(Cached::Missing { .. }) => Hit::Miss,
            Some(Cached::Found { app, fresh_until }) => match fresh_until {
                Some(t) if *t <= now => Hit::Stale(app.clone()),
                _ => Hit::Fresh(Some(app.clone())),
            },
        }
    }

    /// The cached app with REST id `id` (fresh or not); use [`super::lookup::resolve`] first to fill the cache.
    pub fn by_id(&self, id: &str) -> Option<Rc<App>> {
        match self.by_id.borrow().get(id) {
            Some(Cached::Found { app, .. }) => Some(app.clone()),
            _ => None,
        }
    }

    /// The cached app with public key `key` (fresh or not).
    pub fn by_key(&self, key: &str) -> Option<Rc<App>> {
        match self.by_key.borrow().get(key) {
            Some(Cached::Found { app, .. }) => Some(app.clone()),
            _ => None,
        }
    }

    /// The latest copy of the app in slot `slot`. A shard that never looked the app up (the owner shard of a
    /// channel whose subscribers are elsewhere) or holds an older copy than another shard found builds it from
    /// the slot's latest record; otherwise this is one map lookup and one relaxed atomic load.
    pub fn by_index(&self, slot: u32) -> Option<Rc<App>> {
        let current = self.by_slot.borrow().get(&slot).cloned();
        if let Some(app) = &current {
            if app.version == app.shared.version() {
                return current;
            }
        }
        let shared = match current {
            Some(app) => app.shared.clone(),
            None => self.slots.get(slot)?,
        };
        let (latest, _) = shared.latest();
        match latest {
            Some(cfg) => {
                let app = Rc::new(App::build(
                    &cfg,
                    &shared,
                    &self.defaults,
                    &self.webhook_defaults,
                ));
                self.by_slot.borrow_mut().insert(slot, app.clone());
                Some(app)
            }
            None => {
                self.by_slot.borrow_mut().remove(&slot);
                None
            }
        }
    }

    /// Number of apps this shard knows now.
    pub fn len(&self) -> usize {
        self.by_slot.borrow().len()
    }

    /// True when this shard knows no app.
    pub fn is_empty(&self) -> bool {
        self.by_slot.borrow().is_empty()
    }

    /// Drops expired negative entries (called by the sweeper), so a flood of unknown keys does not grow the
    /// cache. Found apps stay (bounded by the apps the process has seen): an expired one is the fallback while
    /// the database is down.
    pub fn purge(&self, now: Instant) {
        for map in [&self.by_key, &self.by_id] {
            map.borrow_mut().retain(|_, entry| match entry {
                Cached::Missing { until } => *until > now,
                Cached::Found { .. } => true,
            });
        }
    }
}
