//! `pusher_internal:subscription_count` (apps with `enable_subscription_count`): the owner shard of a channel sums
//! the subscription changes every shard reports and, at most every [`FLUSH_INTERVAL`], announces the new total
//! to the channel's subscribers — one event per change burst, not one per subscriber. The same totals feed the
//! `subscription_count` webhook of apps that want it.

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
    dirty: HashSet<(u32, Box<str>)>,
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
        self.dirty.insert(key);
    }

    /// Channels whose total changed, with the new total (0 when now empty).
    pub fn take_changed(&mut self) -> Vec<(u32, Box<str>, i64)> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|(app, ch)| {
                let total = self.totals.get(&(app, ch.clone())).copied().unwrap_or(0);
                (app, ch, total)
            })
            .collect()
    }
}

/// Announces changed totals until the shard stops.
pub async fn run(shard: Rc<Shard>) {
    loop {
        glommio::timer::sleep(FLUSH_INTERVAL).await;
        let changed = shard.subscription_counts.borrow_mut().take_changed();
        for (app, channel, total) in changed {
            let Some(app_record) = shard.apps.by_index(app) else {
                continue;
            };
            if app_record.wants_webhook(EventKind::SubscriptionCount) {
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
        assert_eq!(changed, vec![(0, "a".into(), 3), (0, "b".into(), 0)]);
        assert!(c.take_changed().is_empty());
    }
}
