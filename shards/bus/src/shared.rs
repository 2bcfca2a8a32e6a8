//! State shared by the [`crate::Bus`] handles and the transport tasks: the outbox, the wanted subscriptions
//! and the changes to them not yet sent, the stats, and the signals between them. The lock is only held for
//! a few queue operations, never across an await.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Notify};
use tracing::warn;

use crate::backoff::LogLimiter;
use crate::outbox::{Outbox, OutboxLimits, Outgoing};
use crate::stats::BusStats;
use crate::BusEvent;

/// A change to the subscriptions, in the order the caller asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubChange {
    Subscribe(String),
    Unsubscribe(String),
}

#[derive(Debug)]
struct State {
    outbox: Outbox,
    topics: HashSet<String>,
    changes: VecDeque<SubChange>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Woken when the outbox gains messages.
    pub outbox_ready: Notify,
    /// Woken when `changes` gains an entry.
    pub subs_changed: Notify,
    closing: watch::Sender<bool>,
    pub stats: Arc<BusStats>,
    events: mpsc::Sender<BusEvent>,
    drop_log: LogLimiter,
}

impl Shared {
    pub fn new(limits: OutboxLimits, events: mpsc::Sender<BusEvent>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                outbox: Outbox::new(limits),
                topics: HashSet::new(),
                changes: VecDeque::new(),
            }),
            outbox_ready: Notify::new(),
            subs_changed: Notify::new(),
            closing: watch::channel(false).0,
            stats: Arc::default(),
            events,
            drop_log: LogLimiter::new(Duration::from_secs(10)),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the queues half-updated in a way that matters more
        // than stopping the bus would, so a poisoned lock is used as is.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn publish(&self, topic: &str, payload: Bytes) {
        let (dropped, queued) = {
            let mut state = self.state();
            let dropped = state.outbox.push(Outgoing {
                topic: topic.to_string(),
                payload,
            });
            (dropped, state.outbox.len())
        };
        BusStats::set(&self.stats.queued, queued as u64);
        if dropped > 0 {
            self.count_outbound_drops(dropped);
        }
        self.outbox_ready.notify_one();
    }

    pub fn count_outbound_drops(&self, dropped: u64) {
        BusStats::add(&self.stats.dropped_outbound, dropped);
        if self.drop_log.allow() {
            warn!(
                dropped,
                total = self
                    .stats
                    .dropped_outbound
                    .load(std::sync::atomic::Ordering::Relaxed),
                "bus outbox full (broker down or too slow): oldest messages dropped"
            );
        }
    }

    /// Takes up to `max` messages to publish.
    pub fn take_outgoing(&self, max: usize) -> Vec<Outgoing> {
        let mut state = self.state();
        let batch = state.outbox.take(max);
        BusStats::set(&self.stats.queued, state.outbox.len() as u64);
        batch
    }

    /// Puts back a batch that could not be published, ahead of newer messages.
    pub fn requeue_outgoing(&self, batch: Vec<Outgoing>) {
        let (dropped, queued) = {
            let mut state = self.state();
            let dropped = state.outbox.requeue_front(batch);
            (dropped, state.outbox.len())
        };
        BusStats::set(&self.stats.queued, queued as u64);
        if dropped > 0 {
            self.count_outbound_drops(dropped);
        }
    }

    pub fn subscribe(&self, topic: &str) {
        let mut state = self.state();
        if state.topics.insert(topic.to_string()) {
            state
                .changes
                .push_back(SubChange::Subscribe(topic.to_string()));
            drop(state);
            self.subs_changed.notify_one();
        }
    }

    pub fn unsubscribe(&self, topic: &str) {
        let mut state = self.state();
        if state.topics.remove(topic) {
            state
                .changes
                .push_back(SubChange::Unsubscribe(topic.to_string()));
            drop(state);
            self.subs_changed.notify_one();
        }
    }

    /// Whether `topic` is subscribed now.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn is_wanted(&self, topic: &str) -> bool {
        self.state().topics.contains(topic)
    }

    /// The changes since the last call, in order.
    pub fn take_changes(&self) -> Vec<SubChange> {
        self.state().changes.drain(..).collect()
    }

    /// Every wanted topic, for a new session; pending changes are folded into it and cleared.
    pub fn take_all_topics(&self) -> Vec<String> {
        let mut state = self.state();
        state.changes.clear();
        state.topics.iter().cloned().collect()
    }

    /// Hands an inbound message to the consumer without waiting: when the events channel is full it is
    /// dropped and counted, so the broker connection keeps being read.
    pub fn deliver(&self, topic: String, payload: Bytes) {
        match self.events.try_send(BusEvent::Message { topic, payload }) {
            Ok(()) => BusStats::add(&self.stats.received, 1),
            Err(_) => {
                BusStats::add(&self.stats.dropped_inbound, 1);
                if self.drop_log.allow() {
                    warn!(
                        total = self
                            .stats
                            .dropped_inbound
                            .load(std::sync::atomic::Ordering::Relaxed),
                        "bus events channel full or closed: inbound messages dropped"
                    );
                }
            }
        }
    }

    /// Reports `Up` or `Down` and sets the gauge. Waits for room in the events channel (state changes are
    /// rare and must not be lost) unless the bus is closing.
    pub async fn report(&self, event: BusEvent) {
        let up = matches!(event, BusEvent::Up);
        BusStats::set(&self.stats.up, up as u64);
        let mut closing = self.closing.subscribe();
        tokio::select! {
            _ = self.events.send(event) => {}
            _ = closing.wait_for(|c| *c) => {}
        }
    }

    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Resolves once [`Shared::close`] was called.
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|c| *c).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(capacity: usize) -> (Arc<Shared>, mpsc::Receiver<BusEvent>) {
        let (tx, rx) = mpsc::channel(capacity);
        (Shared::new(OutboxLimits::default(), tx), rx)
    }

    #[test]
    fn subscribe_is_idempotent_and_changes_keep_order() {
        let (shared, _rx) = shared(1);
        shared.subscribe("a");
        shared.subscribe("a");
        shared.subscribe("b");
        shared.unsubscribe("a");
        shared.unsubscribe("zz");
        assert_eq!(
            shared.take_changes(),
            [
                SubChange::Subscribe("a".into()),
                SubChange::Subscribe("b".into()),
                SubChange::Unsubscribe("a".into())
            ]
        );
        shared.subscribe("c");
        let mut all = shared.take_all_topics();
        all.sort();
        assert_eq!(all, ["b", "c"]);
        assert!(shared.take_changes().is_empty());
    }

    #[test]
    fn a_full_events_channel_drops_and_counts() {
        let (shared, mut rx) = shared(1);
        shared.deliver("t".into(), Bytes::from_static(b"1"));
        shared.deliver("t".into(), Bytes::from_static(b"2"));
        assert_eq!(
            shared
                .stats
                .received
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(
            shared
                .stats
                .dropped_inbound
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        match rx.try_recv() {
            Ok(BusEvent::Message { payload, .. }) => assert_eq!(&payload[..], b"1"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn publish_counts_the_queue_and_drops() {
        let (tx, _rx) = mpsc::channel(1);
        let shared = Shared::new(
            OutboxLimits {
                max_messages: 2,
                max_bytes: usize::MAX,
            },
            tx,
        );
        for _ in 0..3 {
            shared.publish("t", Bytes::from_static(b"p"));
        }
        assert_eq!(
            shared
                .stats
                .queued
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert_eq!(
            shared
                .stats
                .dropped_outbound
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(shared.take_outgoing(10).len(), 2);
        assert_eq!(
            shared
                .stats
                .queued
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}
