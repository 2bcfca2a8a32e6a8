//! Batching (sans-IO): with a window, events for the same key (app, webhook) that arrive within the window
//! after the first one go out together, at most [`MAX_EVENTS_PER_REQUEST`] per request; without a window every
//! event is its own request. Time is passed in, so tests are deterministic.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The most events one request carries by default (Sockudo's `webhooks.batching.size`).
pub const MAX_EVENTS_PER_REQUEST: usize = 100;

/// Sockudo's default batching window.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(50);

/// Open batches, by key.
#[derive(Debug)]
pub struct Batcher<K, T> {
    window: Option<Duration>,
    max: usize,
    open: HashMap<K, Open<T>>,
}

#[derive(Debug)]
struct Open<T> {
    due: Instant,
    items: Vec<T>,
}

impl<K: Hash + Eq + Clone, T> Batcher<K, T> {
    /// A batcher with `window` (`None`: no batching) and at most [`MAX_EVENTS_PER_REQUEST`] per batch.
    pub fn new(window: Option<Duration>) -> Batcher<K, T> {
        Batcher::with_max(window, MAX_EVENTS_PER_REQUEST)
    }

    /// As [`Batcher::new`] with another batch size (at least 1).
    pub fn with_max(window: Option<Duration>, max: usize) -> Batcher<K, T> {
        Batcher {
            window,
            max: max.max(1),
            open: HashMap::new(),
        }
    }

    /// Adds `item` under `key` at `now`. Returns a batch to send now: the single item without a window, or
    /// the key's batch once it holds the maximum.
    pub fn push(&mut self, key: K, item: T, now: Instant) -> Option<Vec<T>> {
        let Some(window) = self.window else {
            return Some(vec![item]);
        };
        let batch = self.open.entry(key.clone()).or_insert_with(|| Open {
            due: now + window,
            items: Vec::new(),
        });
        batch.items.push(item);
        if batch.items.len() >= self.max {
            return self.open.remove(&key).map(|b| b.items);
        }
        None
    }

    /// When the earliest open batch is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|b| b.due).min()
    }

    /// Removes and returns the batches due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<(K, Vec<T>)> {
        let due: Vec<K> = self
            .open
            .iter()
            .filter(|(_, b)| b.due <= now)
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.open.remove(&k).map(|b| (k, b.items)))
            .collect()
    }

    /// Removes and returns every open batch (shutdown).
    pub fn take_all(&mut self) -> Vec<(K, Vec<T>)> {
        self.open.drain().map(|(k, b)| (k, b.items)).collect()
    }

    /// Events waiting in open batches.
    pub fn pending_events(&self) -> usize {
        self.open.values().map(|b| b.items.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn without_a_window_each_event_is_a_request() {
        let t0 = Instant::now();
        let mut b: Batcher<u8, u32> = Batcher::new(None);
        assert_eq!(b.push(1, 10, t0), Some(vec![10]));
        assert_eq!(b.push(1, 11, t0), Some(vec![11]));
        assert_eq!(b.next_due(), None);
        assert!(b.take_all().is_empty());
    }

    #[test]
    fn events_within_the_window_go_together_per_key() {
        let t0 = Instant::now();
        let mut b: Batcher<&str, u32> = Batcher::new(Some(ms(50)));
        assert_eq!(b.push("a", 1, t0), None);
        assert_eq!(b.push("b", 2, t0 + ms(10)), None);
        assert_eq!(b.push("a", 3, t0 + ms(49)), None);
        assert_eq!(b.next_due(), Some(t0 + ms(50)));
        assert!(b.take_due(t0 + ms(49)).is_empty());
        assert_eq!(b.take_due(t0 + ms(50)), vec![("a", vec![1, 3])]);
        assert_eq!(b.next_due(), Some(t0 + ms(60)));
        // A new event for "a" opens a new window from its own arrival.
        assert_eq!(b.push("a", 4, t0 + ms(55)), None);
        assert_eq!(b.pending_events(), 2);
        let mut late = b.take_due(t0 + ms(200));
        late.sort();
        assert_eq!(late, vec![("a", vec![4]), ("b", vec![2])]);
        assert_eq!(b.next_due(), None);
    }

    #[test]
    fn a_full_batch_goes_at_once() {
        let t0 = Instant::now();
        let mut b: Batcher<u8, usize> = Batcher::new(Some(ms(50)));
        for i in 0..MAX_EVENTS_PER_REQUEST - 1 {
            assert_eq!(b.push(0, i, t0), None);
        }
        let full = b
            .push(0, 99, t0 + ms(1))
            .expect("100th event completes the batch");
        assert_eq!(full.len(), MAX_EVENTS_PER_REQUEST);
        assert_eq!(b.next_due(), None);
        assert_eq!(b.push(0, 100, t0 + ms(2)), None);
        assert_eq!(b.take_all(), vec![(0, vec![100])]);
    }

    #[test]
    fn custom_maximum() {
        let t0 = Instant::now();
        let mut b: Batcher<u8, u8> = Batcher::with_max(Some(ms(50)), 2);
        assert_eq!(b.push(0, 1, t0), None);
        assert_eq!(b.push(0, 2, t0), Some(vec![1, 2]));
    }
}
