//! Healing remote state after messages between nodes were lost.
//!
//! Other nodes' presence members, subscription counts, online users and occupied channels are kept from their
//! announcements. When announcements may have been lost (this node's bus came back after an outage, or a
//! sequence gap showed messages from a node missing), this node asks every node for its state again
//! (`Hello`, answered with syncs and re-announcements). What they re-announce replaces what we knew; what
//! nobody re-announced within [`SWEEP_AFTER`] is exactly what the lost messages would have removed (a member
//! who left, a count that fell to zero), so it is removed then, with the usual member events and webhooks.

use super::Shard;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long the other nodes have to re-announce their state after a resync began.
pub const SWEEP_AFTER: Duration = Duration::from_secs(3);

/// Announcements that arrived up to this long before the resync began (on another path of this node, e.g.
/// through another shard) still count as re-announced.
const REORDER_SLACK: Duration = Duration::from_secs(1);

/// The kinds of remote state a shard keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Remote {
    /// A node's members of a presence channel (key: channel).
    Presence,
    /// A node's subscriptions of a channel (key: channel).
    Count,
    /// A user signed in on a node (key: user id).
    Online,
    /// A node's subscribers of a channel, for occupancy webhooks (key: channel).
    Occupancy,
}

/// When each piece of remote state this shard holds was last announced.
#[derive(Debug, Default)]
pub struct Freshness {
    heard: HashMap<(Remote, u32, Box<str>, u64), Instant>,
}

impl Freshness {
    /// `node` announced state of this kind under `key` (`held`: it has some; false: it has none any more).
    pub fn heard(
        &mut self,
        kind: Remote,
        app: u32,
        key: &str,
        node: u64,
        held: bool,
        now: Instant,
    ) {
        if held {
            self.heard.insert((kind, app, key.into(), node), now);
        } else {
            self.heard.remove(&(kind, app, Box::from(key), node));
        }
    }

    /// `node` is gone: its state was dropped already.
    pub fn forget_node(&mut self, node: u64) {
        self.heard.retain(|(_, _, _, n), _| *n != node);
    }

    /// Removes and returns the state not re-announced since a resync that began at `began`.
    pub fn take_stale(&mut self, began: Instant) -> Vec<(Remote, u32, Box<str>, u64)> {
        let cutoff = began.checked_sub(REORDER_SLACK).unwrap_or(began);
        let stale: Vec<_> = self
            .heard
            .iter()
            .filter(|(_, &at)| at < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &stale {
            self.heard.remove(key);
        }
        stale
    }
}

impl Shard {
    /// Records a remote announcement (see [`Freshness::heard`]).
    pub fn heard_remote(&self, kind: Remote, app: u32, key: &str, node: u64, held: bool) {
        if let Some(link) = &self.cluster {
            link.freshness
                .borrow_mut()
                .heard(kind, app, key, node, held, Instant::now());
        }
    }

    /// Every node is asked for its state again: after [`SWEEP_AFTER`], removes what none re-announced.
    pub fn begin_resync(self: &Rc<Self>) {
        let began = Instant::now();
        let shard = self.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(SWEEP_AFTER).await;
            shard.sweep_stale(began);
        })
        .detach();
    }

    fn sweep_stale(&self, began: Instant) {
        let Some(link) = &self.cluster else { return };
        let stale = link.freshness.borrow_mut().take_stale(began);
        if !stale.is_empty() {
            tracing::info!(
                entries = stale.len(),
                "cluster resync: removing remote state no node re-announced"
            );
        }
        for (kind, app, key, node) in stale {
            match kind {
                Remote::Presence => self.apply_remote_presence(app, &key, node, Vec::new(), None),
                Remote::Count => self
                    .subscription_counts
                    .borrow_mut()
                    .set_remote(app, &key, node, 0),
                Remote::Online => self.apply_remote_online(app, &key, node, false),
                Remote::Occupancy => {
                    self.apply_occupancy(app, &key, super::Place::Node(node), false)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_not_re_announced_after_a_resync_is_stale() {
        let mut f = Freshness::default();
        let t0 = Instant::now();
        f.heard(Remote::Presence, 0, "presence-a", 7, true, t0);
        f.heard(Remote::Presence, 0, "presence-b", 7, true, t0);
        f.heard(Remote::Count, 0, "c", 7, true, t0);
        f.heard(Remote::Online, 0, "u", 8, true, t0);
        f.heard(Remote::Count, 0, "gone", 8, true, t0);
        f.heard(Remote::Count, 0, "gone", 8, false, t0);
        let began = t0 + Duration::from_secs(10);
        // Re-announced after the resync began (or just before it, within the slack): fresh.
        f.heard(
            Remote::Presence,
            0,
            "presence-a",
            7,
            true,
            began + Duration::from_millis(5),
        );
        f.heard(
            Remote::Online,
            0,
            "u",
            8,
            true,
            began - Duration::from_millis(500),
        );
        let mut stale = f.take_stale(began);
        stale.sort_by(|a, b| a.2.cmp(&b.2));
        assert_eq!(
            stale,
            vec![
                (Remote::Count, 0, "c".into(), 7),
                (Remote::Presence, 0, "presence-b".into(), 7),
            ]
        );
        assert!(f.take_stale(began).is_empty(), "taken once");
        f.forget_node(7);
        assert_eq!(f.heard.len(), 1);
    }
}
