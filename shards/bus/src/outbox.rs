//! The bounded FIFO of messages waiting to be published. While the broker is unreachable it holds up to a
//! bound (messages and bytes); past it the oldest message is dropped and counted, so memory stays bounded
//! and the newest state wins.

use std::collections::VecDeque;

use bytes::Bytes;

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    pub topic: String,
    pub payload: Bytes,
}

impl Outgoing {
    fn size(&self) -> usize {
        self.topic.len() + self.payload.len()
    }
}

/// Bounds of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most messages held (default 10,000).
    pub max_messages: usize,
    /// Most bytes of topics and payloads held (default 16 MiB).
    pub max_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        Self {
            max_messages: 10_000,
            max_bytes: 16 << 20,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Outbox {
    queue: VecDeque<Outgoing>,
    bytes: usize,
    limits: OutboxLimits,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Self {
        Self {
            queue: VecDeque::new(),
            bytes: 0,
            limits,
        }
    }

    /// Appends `message`; returns how many of the oldest messages were dropped to make room.
    pub fn push(&mut self, message: Outgoing) -> u64 {
        self.bytes += message.size();
        self.queue.push_back(message);
        self.enforce_limits()
    }

    /// Takes up to `max` messages from the front, in order.
    pub fn take(&mut self, max: usize) -> Vec<Outgoing> {
        let n = max.min(self.queue.len());
        let batch: Vec<Outgoing> = self.queue.drain(..n).collect();
        self.bytes -= batch.iter().map(Outgoing::size).sum::<usize>();
        batch
    }

    /// Puts back a batch whose publishing failed, ahead of everything queued since, keeping its order;
    /// returns how many of the oldest messages were dropped to stay within the bounds.
    pub fn requeue_front(&mut self, batch: Vec<Outgoing>) -> u64 {
        for message in batch.into_iter().rev() {
            self.bytes += message.size();
            self.queue.push_front(message);
        }
        self.enforce_limits()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn enforce_limits(&mut self) -> u64 {
        let mut dropped = 0;
        while self.queue.len() > self.limits.max_messages
            || (self.bytes > self.limits.max_bytes && self.queue.len() > 1)
        {
            let Some(oldest) = self.queue.pop_front() else {
                break;
            };
            self.bytes -= oldest.size();
            dropped += 1;
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &'static [u8]) -> Outgoing {
        Outgoing {
            topic: topic.to_string(),
            payload: Bytes::from_static(payload),
        }
    }

    fn limits(max_messages: usize, max_bytes: usize) -> OutboxLimits {
        OutboxLimits {
            max_messages,
            max_bytes,
        }
    }

    #[test]
    fn keeps_order_and_takes_in_batches() {
        let mut outbox = Outbox::new(OutboxLimits::default());
        for _ in 0..5 {
            assert_eq!(outbox.push(msg("t", b"01234")), 0);
        }
        outbox.push(msg("last", b"x"));
        assert_eq!(outbox.take(4).len(), 4);
        let rest = outbox.take(100);
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[1].topic, "last");
        assert!(outbox.is_empty());
        assert_eq!(outbox.bytes, 0);
    }

    #[test]
    fn drops_oldest_past_the_message_bound() {
        let mut outbox = Outbox::new(limits(3, usize::MAX));
        let topics = ["a", "b", "c", "d", "e"];
        let dropped: u64 = topics.iter().map(|t| outbox.push(msg(t, b"p"))).sum();
        assert_eq!(dropped, 2);
        let left: Vec<String> = outbox.take(10).into_iter().map(|m| m.topic).collect();
        assert_eq!(left, ["c", "d", "e"]);
    }

    #[test]
    fn drops_oldest_past_the_byte_bound_but_keeps_one_oversized_message() {
        let mut outbox = Outbox::new(limits(100, 10));
        assert_eq!(outbox.push(msg("a", b"1234")), 0); // 5 bytes
        assert_eq!(outbox.push(msg("b", b"1234")), 0); // 10 bytes
        assert_eq!(outbox.push(msg("c", b"1234")), 1); // 15 -> drop "a"
        assert_eq!(outbox.push(msg("big", b"0123456789abcdef")), 2);
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.take(1)[0].topic, "big");
    }

    #[test]
    fn requeue_puts_a_failed_batch_back_in_front_in_order() {
        let mut outbox = Outbox::new(limits(4, usize::MAX));
        for t in ["a", "b", "c"] {
            outbox.push(msg(t, b"p"));
        }
        let batch = outbox.take(2);
        outbox.push(msg("d", b"p"));
        outbox.push(msg("e", b"p"));
        // a, b go back in front of c, d, e: five messages, bound four, "a" is dropped.
        assert_eq!(outbox.requeue_front(batch), 1);
        let left: Vec<String> = outbox.take(10).into_iter().map(|m| m.topic).collect();
        assert_eq!(left, ["b", "c", "d", "e"]);
    }
}
