//! App slots: a small number per app id, stable for the life of the process, that shards use to key per-app
//! state (channel indexes, metrics, webhook settings) instead of a position fixed at start.
//!
//! The table is process-wide and behind a mutex, but only an app cache miss touches it, never a message. A
//! slot is never given to another id. Each slot also carries the state every shard's copy of the app shares
//! (connection count, REST rate windows), so a copy rebuilt after a refresh keeps counting where the last one
//! stopped.

use super::RateWindow;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
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
        });
        table.by_id.insert(id.into(), Arc::clone(&shared));
        table.in_order.push(Arc::clone(&shared));
        shared
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
    }
}
