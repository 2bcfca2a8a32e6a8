//! The bounded local buffer (sans-IO) that holds messages on their way to the backend: while the backend is
//! down it fills up, and beyond its capacity the oldest message is dropped (and counted by the caller).

use std::collections::VecDeque;

/// A FIFO of at most `capacity` items.
#[derive(Debug)]
pub struct LocalBuffer<T> {
    items: VecDeque<T>,
    capacity: usize,
}

impl<T> LocalBuffer<T> {
    /// A buffer of at most `capacity` (at least 1) items.
    pub fn new(capacity: usize) -> LocalBuffer<T> {
        LocalBuffer {
            items: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends `item`; returns how many old items were dropped to make room (0 or 1).
    pub fn push(&mut self, item: T) -> usize {
        let mut dropped = 0;
        while self.items.len() >= self.capacity {
            self.items.pop_front();
            dropped += 1;
        }
        self.items.push_back(item);
        dropped
    }

    /// Takes up to `max` items from the front.
    pub fn take(&mut self, max: usize) -> Vec<T> {
        let n = max.min(self.items.len());
        self.items.drain(..n).collect()
    }

    /// Puts `items` (taken earlier, in order) back at the front, where they came from. They are older than
    /// everything queued since, so when they do not all fit the oldest of them are dropped. Returns how many.
    pub fn put_back(&mut self, items: Vec<T>) -> usize {
        let room = self.capacity.saturating_sub(self.items.len());
        let skip = items.len().saturating_sub(room);
        for item in items.into_iter().skip(skip).rev() {
            self.items.push_front(item);
        }
        skip
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_dropped_beyond_capacity() {
        let mut b = LocalBuffer::new(3);
        assert_eq!(b.push(1), 0);
        assert_eq!(b.push(2), 0);
        assert_eq!(b.push(3), 0);
        assert_eq!(b.push(4), 1);
        assert_eq!(b.take(10), vec![2, 3, 4]);
        assert!(b.is_empty());
    }

    #[test]
    fn put_back_keeps_order_and_the_cap() {
        let mut b = LocalBuffer::new(4);
        for i in 1..=4 {
            b.push(i);
        }
        let taken = b.take(3);
        assert_eq!(taken, vec![1, 2, 3]);
        b.push(5);
        b.push(6);
        // Room for one of the three taken back: the two oldest are dropped.
        assert_eq!(b.put_back(taken), 2);
        assert_eq!(b.take(10), vec![3, 4, 5, 6]);
        b.push(7);
        assert_eq!(b.put_back(vec![1, 2]), 0);
        assert_eq!(b.take(10), vec![1, 2, 7]);
    }
}
