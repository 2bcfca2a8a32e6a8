//! App slots: a small number per app id, stable for the life of the process, that shards use to key per-app
//! state (channel indexes, metrics, webhook settings) instead of a position fixed at start.
//!
//! The table is process-wide and behind a mutex, but only an app cache miss touches it, never a message. A
//! slot is never given to another id. Each slot also carries the state every shard's copy of the app shares
//! (connection count, REST rate windows), so a copy rebuilt after a refresh keeps counting where the last one
//! stopped.

use super::RateWindow;
use crate::config::AppConfig;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What every shard's copy of one app shares.
#[derive(Debug)]
pub struct SlotShared {
    /// The slot.
    pub slot: u32,
    /// The app id the slot belongs to.
    pub id: Box<str>,
    /// Open connections across all shards.
    pub connections: Arc<AtomicU64>,
    /// REST events in the current second, across all shards.
    pub backend_events: Arc<RateWindow>,
    /// REST reads in the current second, across all shards.
    pub read_requests: Arc<RateWindow>,
    /// The latest record any shard found for this app (`None`: gone), so that a shard that must decide
    /// something for an app it never looked up (the owner shard of a channel: webhooks, subscription counts)
    /// knows it too. Locked only when a shard rebuilds its copy, never per message.
    latest: Mutex<Option<Arc<AppConfig>>>,
    /// Bumped whenever `latest` changes; a shard's copy built from an older version is rebuilt.
    version: AtomicU64,
    /// Open connections of this app on the other nodes of the cluster (their last announcements, summed).
    pub remote_connections: Arc<AtomicU64>,
    /// Each other node's last announced count; touched only when a node announces or goes away.
    remote_by_node: Mutex<HashMap<u64, u64>>,
    /// This node's count as last announced to the others.
    pub announced: AtomicU64,
}

impl SlotShared {
    /// Records `cfg` (or `None`: the app is gone) as the app's latest record; returns the new version.
    pub fn publish(&self, cfg: Option<&AppConfig>) -> u64 {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let unchanged = match (&*latest, cfg) {
            (Some(old), Some(new)) => **old == *new,
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            *latest = cfg.map(|c| Arc::new(c.clone()));
            self.version.fetch_add(1, Ordering::Relaxed);
        }
        self.version.load(Ordering::Relaxed)
    }

    /// The latest record and its version.
    pub fn latest(&self) -> (Option<Arc<AppConfig>>, u64) {
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        (latest.clone(), self.version.load(Ordering::Relaxed))
    }

    /// Node `node` has `count` connections of this app (`0` also when it is gone).
    pub fn set_remote_connections(&self, node: u64, count: u64) {
        let mut by_node = self
            .remote_by_node
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if count == 0 {
            by_node.remove(&node);
        } else {
            by_node.insert(node, count);
        }
        self.remote_connections
            .store(by_node.values().sum(), Ordering::Relaxed);
    }

    /// The current version (one relaxed load).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Relaxed)
    }
}

/// The process-wide slot table.
#[derive(Debug, Default)]
pub struct AppSlots {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    by_id: HashMap<Box<str>, Arc<SlotShared>>,
    in_order: Vec<Arc<SlotShared>>,
}

impl AppSlots {
    /// The slot of app `id`, assigned now if the id was never seen.
    pub fn intern(&self, id: &str) -> Arc<SlotShared> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(shared) = table.by_id.get(id) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(SlotShared {
            slot: table.in_order.len() as u32,
            id: id.into(),
            connections: Arc::default(),
            backend_events: Arc::default(),
            read_requests: Arc::default(),
            latest: Mutex::new(None),
            version: AtomicU64::new(0),
            remote_connections: Arc::default(),
            remote_by_node: Mutex::new(HashMap::new()),
            announced: AtomicU64::new(0),
        });
        table.by_id.insert(id.into(), Arc::clone(&shared));
        table.in_order.push(Arc::clone(&shared));
        shared
    }

    /// The shared state of `slot`, if it was assigned.
    pub fn get(&self, slot: u32) -> Option<Arc<SlotShared>> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_order
            .get(slot as usize)
            .cloned()
    }

    /// Every slot assigned so far, in slot order (for the metrics exporter).
    pub fn all(&self) -> Vec<Arc<SlotShared>> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .in_order
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_stable_and_never_reused() {
        let slots = AppSlots::default();
        let a = slots.intern("a");
        let b = slots.intern("b");
        assert_eq!((a.slot, b.slot), (0, 1));
        assert_eq!(slots.intern("a").slot, 0);
        assert!(
            Arc::ptr_eq(&a, &slots.intern("a")),
            "shared state is the same"
        );
        assert_eq!(slots.intern("c").slot, 2);
        let ids: Vec<_> = slots.all().iter().map(|s| s.id.to_string()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(slots.get(1).map(|s| s.id.to_string()).as_deref(), Some("b"));
        assert!(slots.get(3).is_none());
    }

    #[test]
    fn publishing_bumps_the_version_only_on_change() {
        let slots = AppSlots::default();
        let a = slots.intern("a");
        let cfg = AppConfig {
            id: "a".into(),
            ..AppConfig::default()
        };
        assert_eq!(a.publish(Some(&cfg)), 1);
        assert_eq!(a.publish(Some(&cfg)), 1, "same record");
        assert_eq!(a.publish(None), 2);
        assert!(a.latest().0.is_none());
    }
}
