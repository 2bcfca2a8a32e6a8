//! `pusher_internal:subscription_count` (apps with `enable_subscription_count`): the owner shard of a channel sums
//! the subscription changes every shard reports and, at most every [`FLUSH_INTERVAL`], announces the new total
//! to the channel's subscribers — one event per change burst, not one per subscriber. The same totals feed the
//! `subscription_count` webhook of apps that want it.
//!
//! In a cluster the owner also tells the other nodes its node's total when it changed (coalesced the same
//! way) and keeps theirs; the announced total is the cluster's, and the webhook is sent by the channel's home
//! node only.

use super::Shard;
use crate::protocol::messages;
use crate::ws;
use sockudo_webhooks::{EventKind, WebhookEvent};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

/// How often changed counts are announced.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Totals of the channels this shard owns, and which changed since the last announcement.
#[derive(Debug, Default)]
pub struct SubscriptionCounts {
    totals: HashMap<(u32, Box<str>), i64>,
    /// Other nodes' totals, by channel then node.
    remote: HashMap<(u32, Box<str>), HashMap<u64, i64>>,
    dirty: HashSet<(u32, Box<str>)>,
    /// Channels whose total on this node changed since it was last told to the other nodes.
    local_dirty: HashSet<(u32, Box<str>)>,
}

/// A channel whose count changed.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Changed {
    /// App position.
    pub app: u32,
    /// The channel.
    pub channel: Box<str>,
    /// Subscriptions in the whole cluster.
    pub total: i64,
    /// This node's subscriptions, when they changed (to tell the other nodes).
    pub local: Option<i64>,
}

impl SubscriptionCounts {
    /// Applies a change of `delta` subscriptions.
    pub fn apply(&mut self, app: u32, channel: &str, delta: i64) {
        let key = (app, Box::<str>::from(channel));
        let total = self.totals.entry(key.clone()).or_insert(0);
        *total += delta;
        if *total <= 0 {
            self.totals.remove(&key);
        }
        self.local_dirty.insert(key.clone());
        self.dirty.insert(key);
    }

    /// Node `node` has `count` subscriptions of `channel`.
    pub fn set_remote(&mut self, app: u32, channel: &str, node: u64, count: i64) {
        let key = (app, Box::<str>::from(channel));
        let nodes = self.remote.entry(key.clone()).or_default();
        if count > 0 {
            nodes.insert(node, count);
        } else {
            nodes.remove(&node);
            if nodes.is_empty() {
                self.remote.remove(&key);
            }
        }
        self.dirty.insert(key);
    }

    /// Node `node` is gone: its subscriptions no longer count.
    pub fn drop_node(&mut self, node: u64) {
        let dirty = &mut self.dirty;
        self.remote.retain(|key, nodes| {
            if nodes.remove(&node).is_some() {
                dirty.insert(key.clone());
            }
            !nodes.is_empty()
        });
    }

    /// This node's totals, to tell a node that asked for our state.
    pub fn local_totals(&self) -> Vec<(u32, Box<str>, i64)> {
        self.totals
            .iter()
            .map(|((app, ch), n)| (*app, ch.clone(), *n))
            .collect()
    }

    /// Channels whose total changed, with the new total (0 when now empty).
    pub fn take_changed(&mut self) -> Vec<Changed> {
        let dirty = std::mem::take(&mut self.dirty);
        let local_dirty = std::mem::take(&mut self.local_dirty);
        dirty
            .into_iter()
            .map(|key| {
                let local = self.totals.get(&key).copied().unwrap_or(0);
                let remote: i64 = self.remote.get(&key).map(|n| n.values().sum()).unwrap_or(0);
                Changed {
                    local: local_dirty.contains(&key).then_some(local),
                    total: local + remote,
                    app: key.0,
                    channel: key.1,
                }
            })
            .collect()
    }
}

/// Announces changed totals until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(FLUSH_INTERVAL).await;
        if shard.id == 0 {
            shard.announce_connections(false);
        }
        let changed = shard.subscription_counts.borrow_mut().take_changed();
        for Changed {
            app,
            channel,
            total,
            local,
        } in changed
        {
            let Some(app_record) = shard.apps.by_index(app) else {
                continue;
            };
            if let Some(local) = local {
                shard.announce_count(app, &channel, local);
            }
            if app_record.wants_webhook(EventKind::SubscriptionCount)
                && shard.is_home(app, &channel)
            {
                let mut event = WebhookEvent::new(app, EventKind::SubscriptionCount, &channel);
                event.subscription_count = Some(total.max(0) as u64);
                shard.emit_webhook(event);
            }
            if total <= 0 || !app_record.limits.enable_subscription_count {
                continue;
            }
            let data = format!("{{\"subscription_count\":{total}}}");
            let text = messages::internal_event(
                "pusher_internal:subscription_count",
                Some(&channel),
                &data,
            );
            let frame = ws::encode_text(text.as_bytes());
            shard.publish_now(app, vec![(channel.to_string(), frame)], None, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_coalesced_into_one_total_per_channel() {
        let mut c = SubscriptionCounts::default();
        c.apply(0, "a", 1);
        c.apply(0, "a", 1);
        c.apply(0, "a", 1);
        c.apply(0, "b", 1);
        c.apply(0, "b", -1);
        let mut changed = c.take_changed();
        changed.sort();
        let totals: Vec<(&str, i64, Option<i64>)> = changed
            .iter()
            .map(|c| (&*c.channel, c.total, c.local))
            .collect();
        assert_eq!(totals, vec![("a", 3, Some(3)), ("b", 0, Some(0))]);
        assert!(c.take_changed().is_empty());
    }

    #[test]
    fn other_nodes_add_to_the_total_until_they_are_gone() {
        let mut c = SubscriptionCounts::default();
        c.apply(0, "a", 2);
        c.take_changed();
        c.set_remote(0, "a", 7, 5);
        let changed = c.take_changed();
        assert_eq!(
            (changed[0].total, changed[0].local),
            (7, None),
            "remote changes are not re-told"
        );
        c.drop_node(7);
        assert_eq!(c.take_changed()[0].total, 2);
        assert_eq!(c.local_totals(), vec![(0, "a".into(), 2)]);
    }
}
