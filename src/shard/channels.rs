//! The channel index of one shard: which local connections joined each channel, and which other shards have
//! subscribers for it (so a publish makes exactly one hop per interested shard).

use crate::conn::Connection;
use std::collections::HashMap;
use std::rc::Rc;

/// Subscribers of one channel as seen from one shard.
#[derive(Debug, Default)]
pub struct ChannelEntry {
    /// Connections on this shard.
    pub local: Vec<Rc<Connection>>,
    /// Bit `s` set: shard `s` has at least one subscriber.
    pub remote: u64,
    /// Local presence subscribers (connection ids) whose `subscription_succeeded` snapshot has not been queued
    /// yet: they get nothing of the channel until it is, so the snapshot comes first. Almost always empty.
    pub pending: Vec<u64>,
}

impl ChannelEntry {
    fn is_unused(&self) -> bool {
        self.local.is_empty() && self.remote == 0
    }
}

/// Channels of every app on one shard, by app slot then channel name. An app's map is created with its first
/// channel and freed with its last.
#[derive(Debug, Default)]
pub struct ChannelIndex {
    apps: HashMap<u32, HashMap<Box<str>, ChannelEntry>>,
}

impl ChannelIndex {
    /// An empty index.
    pub fn new() -> Self {
        ChannelIndex::default()
    }

    /// Frees the map of `app` once it has no channel left.
    fn release(&mut self, app: u32) {
        if self.apps.get(&app).is_some_and(HashMap::is_empty) {
            self.apps.remove(&app);
        }
    }

    /// The entry of `channel`, if anyone anywhere subscribes to it.
    pub fn get(&self, app: u32, channel: &str) -> Option<&ChannelEntry> {
        self.apps.get(&app)?.get(channel)
    }

    /// Adds a local subscriber (held back from deliveries while `pending`, see [`ChannelEntry::pending`]); true
    /// when it is the first one on this shard.
    pub fn add_local(
        &mut self,
        app: u32,
        channel: &str,
        conn: Rc<Connection>,
        pending: bool,
    ) -> bool {
        let map = self.apps.entry(app).or_default();
        let entry = match map.get_mut(channel) {
            Some(e) => e,
            None => map.entry(channel.into()).or_default(),
        };
        if pending {
            entry.pending.push(conn.id);
        }
        entry.local.push(conn);
        entry.local.len() == 1
    }

    /// Lets deliveries reach a subscriber added as pending: its snapshot is queued.
    pub fn confirm(&mut self, app: u32, channel: &str, conn_id: u64) {
        if let Some(entry) = self.apps.get_mut(&app).and_then(|m| m.get_mut(channel)) {
            entry.pending.retain(|&id| id != conn_id);
        }
    }

    /// Removes a local subscriber; true when it was the last one on this shard.
    pub fn remove_local(&mut self, app: u32, channel: &str, conn_id: u64) -> bool {
        let Some(map) = self.apps.get_mut(&app) else {
            return false;
        };
        let Some(entry) = map.get_mut(channel) else {
            return false;
        };
        let Some(pos) = entry.local.iter().position(|c| c.id == conn_id) else {
            return false;
        };
        entry.local.swap_remove(pos);
        if !entry.pending.is_empty() {
            entry.pending.retain(|&id| id != conn_id);
        }
        let last = entry.local.is_empty();
        if entry.is_unused() {
            map.remove(channel);
            self.release(app);
        }
        last
    }

    /// Records whether shard `shard` has subscribers for `channel`.
    pub fn set_remote(&mut self, app: u32, channel: &str, shard: usize, interested: bool) {
        let bit = 1u64 << shard;
        if interested {
            let map = self.apps.entry(app).or_default();
            let entry = match map.get_mut(channel) {
                Some(e) => e,
                None => map.entry(channel.into()).or_default(),
            };
            entry.remote |= bit;
        } else if let Some(map) = self.apps.get_mut(&app) {
            if let Some(entry) = map.get_mut(channel) {
                entry.remote &= !bit;
                if entry.is_unused() {
                    map.remove(channel);
                    self.release(app);
                }
            }
        }
    }

    /// Channels of `app` with at least one local subscriber, with their local subscriber counts.
    pub fn local_channels(&self, app: u32) -> impl Iterator<Item = (&str, usize)> {
        self.apps
            .get(&app)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|(_, e)| !e.local.is_empty())
            .map(|(name, e)| (&**name, e.local.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interest_for_an_app_added_by_a_reload_elsewhere_is_kept() {
        let mut index = ChannelIndex::new();
        index.set_remote(2, "news", 1, true);
        assert_eq!(index.get(2, "news").map(|e| e.remote), Some(0b10));
        index.set_remote(2, "news", 1, false);
        assert!(index.get(2, "news").is_none());
        index.set_remote(7, "gone", 0, false);
        assert!(index.get(7, "gone").is_none(), "withdrawing needs no room");
    }
}
