//! Counters for the Prometheus endpoint, kept per shard and summed only when scraped.
//!
//! Every shard owns one [`ShardMetrics`]. Only that shard's thread writes it, so a counter update is a relaxed
//! load and a relaxed store ([`Counter::add`]): no lock-prefixed read-modify-write, no cache line shared by two
//! writers. The exporter thread ([`exporter`]) reads all shards' counters at scrape time and adds them up.
//! Gauges that describe shard-local structures (queued frames, cross-shard backlog) are refreshed by the shard's
//! sweeper once a second.

pub mod exporter;
mod families;
pub mod usage;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A counter (or gauge) with a single writer thread and any number of readers.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Must only be called from the owning shard's thread: two concurrent writers would lose updates.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Overwrites the value (gauges).
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// The current value, from any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Bytes per cache line, with the adjacent-line prefetcher in mind.
const LINE: usize = 128;

/// Counters filling one cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Line([Counter; LINE / 8]);

/// A fixed number of counters in cache-line-aligned storage, so that no line holds another shard's counters (or
/// anything else a different thread writes).
#[derive(Debug)]
pub struct Counters {
    lines: Box<[Line]>,
    len: usize,
}

impl Counters {
    /// `len` zeroed counters.
    pub fn new(len: usize) -> Self {
        let per_line = LINE / 8;
        Counters {
            lines: (0..len.div_ceil(per_line))
                .map(|_| Line::default())
                .collect(),
            len,
        }
    }

    /// Counter `i`, if there is one.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Counter> {
        if i < self.len {
            Some(&self.lines[i / (LINE / 8)].0[i % (LINE / 8)])
        } else {
            None
        }
    }

    /// Every counter, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Counter> + '_ {
        self.lines.iter().flat_map(|l| l.0.iter()).take(self.len)
    }

    /// Number of counters.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Index<usize> for Counters {
    type Output = Counter;

    fn index(&self, i: usize) -> &Counter {
        self.get(i).expect("counter index out of range")
    }
}

/// Upper bounds of the HTTP latency histogram buckets, in milliseconds (`+Inf` is implied).
pub const LATENCY_BUCKETS_MS: [f64; 11] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0,
];

/// A fixed-bucket latency histogram with a single writer (one cache line of its own).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is above the highest bound.
    buckets: [Counter; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of observations, in nanoseconds.
    sum_nanos: Counter,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let slot = LATENCY_BUCKETS_MS
            .iter()
            .position(|&bound| ms <= bound)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[slot].inc();
        self.sum_nanos
            .add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
}

/// A histogram summed over shards, with cumulative buckets as Prometheus wants them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts for each bound of [`LATENCY_BUCKETS_MS`].
    pub cumulative: [u64; LATENCY_BUCKETS_MS.len()],
    /// Observations in all.
    pub count: u64,
    /// Sum of observations, in seconds.
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// Sums `parts` (the same histogram on every shard).
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a Histogram>) -> Self {
        let mut raw = [0u64; LATENCY_BUCKETS_MS.len() + 1];
        let mut nanos = 0u128;
        for h in parts {
            for (total, b) in raw.iter_mut().zip(&h.buckets) {
                *total += b.get();
            }
            nanos += u128::from(h.sum_nanos.get());
        }
        let mut snapshot = HistogramSnapshot {
            sum_seconds: nanos as f64 / 1e9,
            ..Default::default()
        };
        let mut running = 0;
        for (i, n) in raw.iter().enumerate() {
            running += n;
            if let Some(c) = snapshot.cumulative.get_mut(i) {
                *c = running;
            }
        }
        snapshot.count = running;
        snapshot
    }
}

/// The REST routes, as a small fixed label set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /apps/{id}/events`
    Events,
    /// `POST /apps/{id}/batch_events`
    BatchEvents,
    /// `GET /apps/{id}/channels`
    Channels,
    /// `GET /apps/{id}/channels/{name}`
    Channel,
    /// `GET /apps/{id}/channels/{name}/users`
    Users,
    /// `POST /apps/{id}/users/{user}/terminate_connections`
    Terminate,
    /// `/up`, `/up/{id}`
    Health,
    /// Anything else, including unparsable requests.
    Other,
}

impl Route {
    /// Every route, in label order.
    pub const ALL: [Route; 8] = [
        Route::Events,
        Route::BatchEvents,
        Route::Channels,
        Route::Channel,
        Route::Users,
        Route::Terminate,
        Route::Health,
        Route::Other,
    ];

    /// The route of a request path (query excluded).
    pub fn of(path: &str) -> Route {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match segments.as_slice() {
            ["up"] | ["up", _] => Route::Health,
            ["apps", _, "events"] => Route::Events,
            ["apps", _, "batch_events"] => Route::BatchEvents,
            ["apps", _, "channels"] => Route::Channels,
            ["apps", _, "channels", _] => Route::Channel,
            ["apps", _, "channels", _, "users"] => Route::Users,
            ["apps", _, "users", _, "terminate_connections"] => Route::Terminate,
            _ => Route::Other,
        }
    }

    /// The `route` label value.
    pub fn name(self) -> &'static str {
        match self {
            Route::Events => "events",
            Route::BatchEvents => "batch_events",
            Route::Channels => "channels",
            Route::Channel => "channel",
            Route::Users => "users",
            Route::Terminate => "terminate",
            Route::Health => "health",
            Route::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// HTTP statuses counted under their own label; anything else is `status="other"`.
pub const STATUSES: [u16; 19] = [
    200, 201, 202, 204, 400, 401, 403, 404, 405, 408, 411, 413, 426, 429, 431, 500, 501, 503, 505,
];

/// Close and `pusher:error` codes counted under their own label; `None` is a `pusher:error` with a null code,
/// anything else is `code="other"`.
pub const ERROR_CODES: [u16; 24] = [
    1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 4000, 4001, 4003, 4004, 4005, 4006, 4007, 4008,
    4009, 4100, 4200, 4201, 4202, 4300, 4301, 4302,
];

/// Slot of `status` in [`STATUSES`], or the "other" slot after them.
fn status_slot(status: u16) -> usize {
    STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len())
}

/// Slot of an error code: [`ERROR_CODES`], then "none" (null code), then "other".
fn error_slot(code: Option<u16>) -> usize {
    match code {
        None => ERROR_CODES.len(),
        Some(c) => ERROR_CODES
            .iter()
            .position(|&k| k == c)
            .unwrap_or(ERROR_CODES.len() + 1),
    }
}

/// The counters of one shard. Written only by that shard's thread. Aligned, like its arrays, so that no cache
/// line is shared with another shard's counters.
#[derive(Debug)]
#[repr(align(128))]
pub struct ShardMetrics {
    /// Connections accepted past the handshake, per app slot.
    pub connections_opened: SlotCounters,
    /// Connections gone, per app slot.
    pub connections_closed: SlotCounters,
    /// WebSocket messages (frames after reassembly) received.
    pub ws_messages_received: Counter,
    /// Bytes read from WebSocket sockets.
    pub ws_bytes_received: Counter,
    /// WebSocket frames fully written to sockets.
    pub ws_messages_sent: Counter,
    /// Bytes written to WebSocket sockets.
    pub ws_bytes_sent: Counter,
    /// Channel joins.
    pub subscriptions: Counter,
    /// Channel leaves, including those of closing connections.
    pub unsubscriptions: Counter,
    /// `client-*` events received.
    pub client_events: Counter,
    /// Connections closed with 4100 for a full queue.
    pub slow_consumer_disconnections: Counter,
    /// `pusher:error`s and close frames sent, by [`error_slot`].
    errors: Counters,
    /// HTTP responses by route and status slot.
    http_calls: Counters,
    /// HTTP latency by route.
    http_latency: Vec<Histogram>,
    /// Bytes of HTTP requests (head and body).
    pub http_bytes_received: Counter,
    /// Bytes of HTTP responses.
    pub http_bytes_sent: Counter,
    /// Frames waiting in this shard's connection queues (refreshed once a second).
    pub queued_frames: Counter,
    /// Cross-shard messages waiting towards each shard (refreshed once a second).
    pub peer_backlog: Counters,
    /// Cluster messages lost because the queue to the I/O shard was full.
    pub cluster_dropped_outbound: Counter,
    /// Event messages received from other nodes.
    pub cluster_events_received: Counter,
    /// Cluster-wide REST reads answered without every node (a node did not answer within
    /// `adapter.requests_timeout`).
    pub cluster_requests_incomplete: Counter,
    /// Events of this node the bus did not bring back in time (delivered here directly).
    pub cluster_echo_timeouts: Counter,
}

/// Counters by app slot that grow as slots appear: chunks of 64, 128, 256... counters, each allocated the
/// first time one of its slots is counted. Written by one shard, read by the exporter, without a lock.
#[derive(Debug, Default)]
pub struct SlotCounters {
    chunks: [std::sync::OnceLock<Counters>; SLOT_CHUNKS],
}

/// Chunks of [`SlotCounters`]: 64 * 2^31 slots in all.
const SLOT_CHUNKS: usize = 32;

impl SlotCounters {
    /// (chunk, offset in chunk, chunk length) of `slot`.
    fn place(slot: u32) -> (usize, usize, usize) {
        let n = slot as u64 / 64 + 1;
        let chunk = 63 - n.leading_zeros() as usize;
        let first = 64 * ((1u64 << chunk) - 1);
        (chunk, (slot as u64 - first) as usize, 64usize << chunk)
    }

    /// The counter of `slot`, if its chunk exists.
    pub fn get(&self, slot: u32) -> Option<&Counter> {
        let (chunk, offset, _) = Self::place(slot);
        self.chunks.get(chunk)?.get()?.get(offset)
    }

    /// The counter of `slot`, allocating its chunk on first use.
    pub fn grow_to(&self, slot: u32) -> &Counter {
        let (chunk, offset, len) = Self::place(slot);
        let counters = self.chunks[chunk.min(SLOT_CHUNKS - 1)].get_or_init(|| Counters::new(len));
        &counters[offset]
    }
}

fn counters(n: usize) -> Counters {
    Counters::new(n)
}

impl ShardMetrics {
    /// Counters for `nr_shards` shards (per-app counters grow as apps appear).
    pub fn new(nr_shards: usize) -> Self {
        ShardMetrics {
            connections_opened: SlotCounters::default(),
            connections_closed: SlotCounters::default(),
            ws_messages_received: Counter::default(),
            ws_bytes_received: Counter::default(),
            ws_messages_sent: Counter::default(),
            ws_bytes_sent: Counter::default(),
            subscriptions: Counter::default(),
            unsubscriptions: Counter::default(),
            client_events: Counter::default(),
            slow_consumer_disconnections: Counter::default(),
            errors: counters(ERROR_CODES.len() + 2),
            http_calls: counters(Route::ALL.len() * (STATUSES.len() + 1)),
            http_latency: (0..Route::ALL.len())
                .map(|_| Histogram::default())
                .collect(),
            http_bytes_received: Counter::default(),
            http_bytes_sent: Counter::default(),
            queued_frames: Counter::default(),
            peer_backlog: counters(nr_shards),
            cluster_dropped_outbound: Counter::default(),
            cluster_events_received: Counter::default(),
            cluster_requests_incomplete: Counter::default(),
            cluster_echo_timeouts: Counter::default(),
        }
    }

    /// A connection of app `app` (its slot, [`crate::app::App::index`]) passed the handshake.
    #[inline]
    pub fn connection_opened(&self, app: u32) {
        self.connections_opened.grow_to(app).inc();
    }

    /// A connection of app `app` is gone.
    #[inline]
    pub fn connection_closed(&self, app: u32) {
        self.connections_closed.grow_to(app).inc();
    }

    /// Counts `event` when it is a client event.
    #[inline]
    pub fn client_event(&self, event: &str) {
        if event.starts_with("client-") {
            self.client_events.inc();
        }
    }

    /// A `pusher:error` (with this code, or null) or a close frame was sent.
    pub fn error_sent(&self, code: Option<u16>) {
        self.errors[error_slot(code)].inc();
    }

    /// One HTTP request was answered.
    pub fn http_call(
        &self,
        route: Route,
        status: u16,
        took: Duration,
        bytes_in: usize,
        bytes_out: usize,
    ) {
        let slot = route.index() * (STATUSES.len() + 1) + status_slot(status);
        self.http_calls[slot].inc();
        self.http_latency[route.index()].observe(took);
        self.http_bytes_received.add(bytes_in as u64);
        self.http_bytes_sent.add(bytes_out as u64);
    }

    /// Records the cross-shard backlog, as returned by [`crate::shard::mesh::Peers::backlog`].
    pub fn set_backlog(&self, backlog: &[usize]) {
        for (gauge, &n) in self.peer_backlog.iter().zip(backlog) {
            gauge.set(n as u64);
        }
    }
}

/// Every shard's counters, shared with the exporter.
#[derive(Debug)]
pub struct MetricsRegistry {
    /// One per shard, by shard id.
    pub shards: Vec<Arc<ShardMetrics>>,
    /// App ids by slot, for the `app_id` label.
    pub apps: Arc<crate::app::AppSlots>,
    /// Metric name prefix, e.g. `sockudo_`.
    pub prefix: String,
    /// When the process started serving.
    pub started: Instant,
    /// The I/O shard's counters (webhooks), once it runs.
    pub io: std::sync::OnceLock<Arc<sockudo_io_shard::IoStats>>,
}

impl MetricsRegistry {
    /// Counters for `nr_shards` shards serving the apps of `apps`.
    pub fn new(nr_shards: usize, apps: Arc<crate::app::AppSlots>, prefix: &str) -> Self {
        MetricsRegistry {
            shards: (0..nr_shards)
                .map(|_| Arc::new(ShardMetrics::new(nr_shards)))
                .collect(),
            apps,
            prefix: prefix.to_string(),
            started: Instant::now(),
            io: std::sync::OnceLock::new(),
        }
    }

    /// Exports the I/O shard's counters from now on.
    pub fn attach_io(&self, stats: Arc<sockudo_io_shard::IoStats>) {
        let _ = self.io.set(stats);
    }

    /// Shard `id`'s counters.
    pub fn shard(&self, id: usize) -> Arc<ShardMetrics> {
        self.shards[id].clone()
    }

    /// `f` summed over every shard.
    pub fn total(&self, f: impl Fn(&ShardMetrics) -> &Counter) -> u64 {
        self.shards.iter().map(|s| f(s).get()).sum()
    }

    /// Open connections over all shards.
    pub fn connected(&self) -> u64 {
        self.apps
            .all()
            .iter()
            .map(|a| {
                let (opened, closed) = self.app_connections(a.slot);
                opened.saturating_sub(closed)
            })
            .sum()
    }

    /// Connections of the app in `slot` opened and closed so far, over all shards.
    pub fn app_connections(&self, slot: u32) -> (u64, u64) {
        let sum = |f: fn(&ShardMetrics) -> &SlotCounters| -> u64 {
            self.shards
                .iter()
                .filter_map(|s| f(s).get(slot))
                .map(Counter::get)
                .sum()
        };
        (
            sum(|s| &s.connections_opened),
            sum(|s| &s.connections_closed),
        )
    }

    /// The whole `/metrics` page in Prometheus text format.
    pub fn render(&self) -> String {
        families::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_writer_counter_adds_and_sets() {
        let c = Counter::default();
        c.inc();
        c.add(41);
        assert_eq!(c.get(), 42);
        c.set(7);
        assert_eq!(c.get(), 7);
    }

    #[test]
    fn counter_arrays_index_across_cache_lines() {
        let c = Counters::new(40);
        assert_eq!(c.len(), 40);
        c[0].inc();
        c[17].add(2);
        c[39].add(3);
        assert!(c.get(40).is_none());
        let values: Vec<u64> = c.iter().map(Counter::get).collect();
        assert_eq!(values.len(), 40);
        assert_eq!((values[0], values[17], values[39]), (1, 2, 3));
        assert_eq!(values.iter().sum::<u64>(), 6);
        assert_eq!(std::mem::align_of::<ShardMetrics>(), 128);
        assert_eq!(std::mem::size_of::<Histogram>() % 128, 0);
        assert!(Counters::new(0).is_empty());
    }

    #[test]
    fn slot_counters_grow_by_chunks() {
        let c = SlotCounters::default();
        assert!(c.get(0).is_none());
        for slot in [0u32, 63, 64, 127, 128, 191, 192, 5000, 1 << 20] {
            c.grow_to(slot).inc();
            assert_eq!(c.get(slot).map(Counter::get), Some(1), "slot {slot}");
        }
        assert_eq!(SlotCounters::place(0), (0, 0, 64));
        assert_eq!(SlotCounters::place(64), (1, 0, 128));
        assert_eq!(SlotCounters::place(191), (1, 127, 128));
        assert_eq!(SlotCounters::place(192), (2, 0, 256));
    }

    #[test]
    fn totals_sum_every_shard() {
        let slots = Arc::new(crate::app::AppSlots::default());
        slots.intern("a");
        slots.intern("b");
        let r = MetricsRegistry::new(3, slots, "sockudo_");
        r.shards[0].ws_messages_sent.add(5);
        r.shards[2].ws_messages_sent.add(7);
        assert_eq!(r.total(|s| &s.ws_messages_sent), 12);
        r.shards[0].connection_opened(0);
        r.shards[1].connection_opened(1);
        r.shards[1].connection_opened(1);
        r.shards[2].connection_closed(1);
        r.shards[2].connection_opened(9); // a slot not (yet) in the table: not exported
        assert_eq!(r.connected(), 2);
        assert_eq!(r.app_connections(9), (1, 0));
    }

    #[test]
    fn histograms_sum_into_cumulative_buckets() {
        let a = Histogram::default();
        let b = Histogram::default();
        a.observe(Duration::from_micros(300)); // <= 0.5 ms
        a.observe(Duration::from_millis(3)); // <= 5 ms
        b.observe(Duration::from_millis(5)); // <= 5 ms (bounds are inclusive)
        b.observe(Duration::from_secs(2)); // above every bound
        let s = HistogramSnapshot::sum([&a, &b]);
        assert_eq!(s.count, 4);
        assert_eq!(s.cumulative, [1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3]);
        assert!((s.sum_seconds - 2.0083).abs() < 1e-9, "{}", s.sum_seconds);
    }

    #[test]
    fn routes_have_fixed_names() {
        assert_eq!(Route::of("/apps/1/events"), Route::Events);
        assert_eq!(Route::of("/apps/1/batch_events"), Route::BatchEvents);
        assert_eq!(Route::of("/apps/1/channels"), Route::Channels);
        assert_eq!(Route::of("/apps/1/channels/x"), Route::Channel);
        assert_eq!(Route::of("/apps/1/channels/x/users"), Route::Users);
        assert_eq!(
            Route::of("/apps/1/users/u/terminate_connections"),
            Route::Terminate
        );
        assert_eq!(Route::of("/up/1"), Route::Health);
        assert_eq!(Route::of("/favicon.ico"), Route::Other);
        for (i, r) in Route::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn http_calls_are_counted_by_route_and_status() {
        let m = ShardMetrics::new(1);
        m.http_call(Route::Events, 200, Duration::from_millis(1), 100, 50);
        m.http_call(Route::Events, 200, Duration::from_millis(1), 100, 50);
        m.http_call(Route::Events, 599, Duration::from_millis(1), 1, 1);
        let per_route = STATUSES.len() + 1;
        assert_eq!(m.http_calls[status_slot(200)].get(), 2);
        assert_eq!(
            m.http_calls[per_route - 1].get(),
            1,
            "unknown status is 'other'"
        );
        assert_eq!(m.http_bytes_received.get(), 201);
        assert_eq!(m.http_bytes_sent.get(), 101);
    }
}
