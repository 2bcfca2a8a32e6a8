//! Counters of the bus, read by the metrics exporter.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one [`crate::Bus`]. All are monotonic except the gauges `up` and `queued`.
#[derive(Debug, Default)]
pub struct BusStats {
    /// Messages handed to the broker (Redis: acknowledged by a pipelined `PUBLISH`/`SPUBLISH` reply; NATS:
    /// accepted by the client's connection).
    pub published: AtomicU64,
    /// Messages from the broker put on the events channel.
    pub received: AtomicU64,
    /// Outbound messages dropped: the oldest ones, when the outbox was over its bound (bus down or broker
    /// too slow), or a topic the broker cannot carry.
    pub dropped_outbound: AtomicU64,
    /// Inbound messages dropped because the events channel was full (or closed).
    pub dropped_inbound: AtomicU64,
    /// Sessions established after the first one (each reconnect after a loss).
    pub reconnects: AtomicU64,
    /// Failed attempts to (re)connect, resubscribe or publish.
    pub errors: AtomicU64,
    /// Gauge: 1 while connected to the broker, 0 otherwise.
    pub up: AtomicU64,
    /// Gauge: messages waiting in the outbox.
    pub queued: AtomicU64,
}

impl BusStats {
    /// Every message lost by this bus, in either direction.
    pub fn dropped(&self) -> u64 {
        self.dropped_outbound.load(Ordering::Relaxed) + self.dropped_inbound.load(Ordering::Relaxed)
    }

    /// Whether the bus is connected now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed) == 1
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }
}
