//! Turns the summed shard counters into Prometheus metric families and text.

use super::{
    error_slot, status_slot, usage, HistogramSnapshot, MetricsRegistry, Route, ERROR_CODES,
    LATENCY_BUCKETS_MS, STATUSES,
};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

/// One family being built.
struct Family {
    name: String,
    help: &'static str,
    kind: MetricType,
    metrics: Vec<Metric>,
}

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

impl Family {
    fn new(prefix: &str, name: &str, help: &'static str, kind: MetricType) -> Self {
        Family {
            name: format!("{prefix}{name}"),
            help,
            kind,
            metrics: Vec::new(),
        }
    }

    fn value(mut self, pairs: &[(&str, &str)], v: f64) -> Self {
        let mut m = Metric::from_label(labels(pairs));
        match self.kind {
            MetricType::GAUGE => {
                let mut g = Gauge::default();
                g.set_value(v);
                m.set_gauge(g);
            }
            _ => {
                let mut c = Counter::default();
                c.set_value(v);
                m.set_counter(c);
            }
        }
        self.metrics.push(m);
        self
    }

    fn histogram(mut self, pairs: &[(&str, &str)], h: &HistogramSnapshot) -> Self {
        let mut proto = Histogram::default();
        proto.set_sample_count(h.count);
        proto.set_sample_sum(h.sum_seconds);
        proto.set_bucket(
            LATENCY_BUCKETS_MS
                .iter()
                .zip(h.cumulative)
                .map(|(ms, n)| {
                    let mut b = Bucket::default();
                    b.set_upper_bound(ms / 1000.0);
                    b.set_cumulative_count(n);
                    b
                })
                .collect(),
        );
        let mut m = Metric::from_label(labels(pairs));
        m.set_histogram(proto);
        self.metrics.push(m);
        self
    }

    fn build(self) -> Option<MetricFamily> {
        if self.metrics.is_empty() {
            return None;
        }
        let mut f = MetricFamily::default();
        f.set_name(self.name);
        f.set_help(self.help.to_string());
        f.set_field_type(self.kind);
        f.set_metric(self.metrics);
        Some(f)
    }
}

/// Every family, summed over shards.
pub fn gather(r: &MetricsRegistry) -> Vec<MetricFamily> {
    let p = r.prefix.as_str();
    let counter = |name, help| Family::new(p, name, help, MetricType::COUNTER);
    let gauge = |name, help| Family::new(p, name, help, MetricType::GAUGE);
    let total = |f: fn(&super::ShardMetrics) -> &super::Counter| r.total(f) as f64;

    let mut connected = gauge("connected", "WebSocket connections open now, by app.");
    let mut opened = counter(
        "new_connections_total",
        "WebSocket connections accepted (past the Pusher handshake), by app.",
    );
    let mut closed = counter(
        "new_disconnections_total",
        "WebSocket connections closed, by app.",
    );
    for app in r.apps.all() {
        let (o, c) = r.app_connections(app.slot);
        let l = [("app_id", &*app.id)];
        connected = connected.value(&l, o.saturating_sub(c) as f64);
        opened = opened.value(&l, o as f64);
        closed = closed.value(&l, c as f64);
    }

    let mut calls = counter(
        "http_calls_received_total",
        "HTTP requests answered on the main port, by route and status.",
    );
    let mut latency = Family::new(
        p,
        "http_request_duration_seconds",
        "Time from a complete HTTP request to its response written, by route.",
        MetricType::HISTOGRAM,
    );
    for route in Route::ALL {
        let status_labels = STATUSES
            .iter()
            .map(|s| s.to_string())
            .chain(std::iter::once("other".to_string()));
        for (slot, status) in status_labels.enumerate() {
            let idx = route.index() * (STATUSES.len() + 1) + slot;
            let n: u64 = r.shards.iter().map(|s| s.http_calls[idx].get()).sum();
            if n > 0 {
                calls = calls.value(&[("route", route.name()), ("status", &status)], n as f64);
            }
        }
        let h = HistogramSnapshot::sum(r.shards.iter().map(|s| &s.http_latency[route.index()]));
        latency = latency.histogram(&[("route", route.name())], &h);
    }
    debug_assert_eq!(status_slot(200), 0);

    let mut errors = counter(
        "errors_total",
        "pusher:error messages and close frames sent to clients, by code.",
    );
    let code_labels = ERROR_CODES
        .iter()
        .map(|c| (Some(*c), c.to_string()))
        .chain([(None, "none".to_string())]);
    for (code, label) in code_labels {
        let n: u64 = r
            .shards
            .iter()
            .map(|s| s.errors[error_slot(code)].get())
            .sum();
        if n > 0 {
            errors = errors.value(&[("code", &label)], n as f64);
        }
    }
    let other: u64 = r
        .shards
        .iter()
        .map(|s| s.errors[ERROR_CODES.len() + 1].get())
        .sum();
    if other > 0 {
        errors = errors.value(&[("code", "other")], other as f64);
    }

    let mut backlog = gauge(
        "shard_queue_depth",
        "Cross-shard messages waiting in a shard's outbox towards a peer (sampled once a second).",
    );
    let mut queued = gauge(
        "connection_queued_frames",
        "Frames waiting in the outbound queues of a shard's connections (sampled once a second).",
    );
    for (id, s) in r.shards.iter().enumerate() {
        let shard = id.to_string();
        for (peer, n) in s.peer_backlog.iter().enumerate() {
            if peer != id {
                backlog = backlog.value(
                    &[("shard", &shard), ("peer", &peer.to_string())],
                    n.get() as f64,
                );
            }
        }
        queued = queued.value(&[("shard", &shard)], s.queued_frames.get() as f64);
    }

    let io = |f: fn(&sockudo_io_shard::IoStats) -> &std::sync::atomic::AtomicU64| {
        r.io.get()
            .map(|s| f(s).load(std::sync::atomic::Ordering::Relaxed) as f64)
            .unwrap_or(0.0)
    };
    let bus = |f: fn(&sockudo_io_shard::cluster::ClusterStats) -> &std::sync::atomic::AtomicU64| {
        r.io.get()
            .map(|s| f(&s.cluster).load(std::sync::atomic::Ordering::Relaxed) as f64)
            .unwrap_or(0.0)
    };
    let queue = |f: fn(&sockudo_io_shard::QueueStats) -> &std::sync::atomic::AtomicU64| {
        r.io.get()
            .map(|s| f(&s.queue).load(std::sync::atomic::Ordering::Relaxed) as f64)
            .unwrap_or(0.0)
    };
    let state = |f: fn(&sockudo_io_shard::StateStats) -> f64| {
        r.io.get().map(|s| f(&s.state)).unwrap_or(0.0)
    };
    let process = usage::Usage::now(r);
    let families = [
        connected,
        opened,
        closed,
        counter("ws_messages_received_total", "WebSocket messages received.")
            .value(&[], total(|s| &s.ws_messages_received)),
        counter(
            "ws_messages_sent_total",
            "WebSocket frames written to clients (events, control messages, close frames).",
        )
        .value(&[], total(|s| &s.ws_messages_sent)),
        counter(
            "socket_received_bytes",
            "Bytes read from WebSocket connections.",
        )
        .value(&[], total(|s| &s.ws_bytes_received)),
        counter(
            "socket_transmitted_bytes",
            "Bytes written to WebSocket connections.",
        )
        .value(&[], total(|s| &s.ws_bytes_sent)),
        counter(
            "cluster_dropped_outbound_total",
            "Messages for other nodes lost because the queue to the I/O shard was full.",
        )
        .value(&[], total(|s| &s.cluster_dropped_outbound)),
        counter(
            "cluster_events_received_total",
            "Channel event messages received from other nodes.",
        )
        .value(&[], total(|s| &s.cluster_events_received)),
        counter(
            "cluster_requests_incomplete_total",
            "Cluster-wide REST reads answered without some node (no answer within adapter.requests_timeout).",
        )
        .value(&[], total(|s| &s.cluster_requests_incomplete)),
        counter(
            "cluster_echo_timeouts_total",
            "Events of this node the bus did not bring back within 2 s (then delivered here directly).",
        )
        .value(&[], total(|s| &s.cluster_echo_timeouts)),
        counter("channel_subscriptions_total", "Channel subscriptions.")
            .value(&[], total(|s| &s.subscriptions)),
        counter(
            "channel_unsubscriptions_total",
            "Channel unsubscriptions, including those of closing connections.",
        )
        .value(&[], total(|s| &s.unsubscriptions)),
        calls,
        latency,
        counter("http_received_bytes", "Bytes of HTTP requests received.")
            .value(&[], total(|s| &s.http_bytes_received)),
        counter("http_transmitted_bytes", "Bytes of HTTP responses sent.")
            .value(&[], total(|s| &s.http_bytes_sent)),
        counter("client_events_total", "Client events (client-*) received.")
            .value(&[], total(|s| &s.client_events)),
        errors,
        backlog,
        queued,
        counter(
            "slow_consumer_disconnections_total",
            "Connections closed with 4100 because their outbound queue was full.",
        )
        .value(&[], total(|s| &s.slow_consumer_disconnections)),
        counter(
            "webhooks_sent_total",
            "Webhook requests (HTTP or Lambda) that succeeded.",
        )
        .value(&[], io(|s| &s.webhooks_sent)),
        counter(
            "webhooks_failed_total",
            "Webhook requests given up on: permanent error, retries exhausted, or shutdown.",
        )
        .value(&[], io(|s| &s.webhooks_failed)),
        counter(
            "webhook_retries_total",
            "Webhook attempts retried after a 5xx, 429, timeout or transport error.",
        )
        .value(&[], io(|s| &s.webhook_retries)),
        counter(
            "io_queue_dropped_total",
            "Requests to the I/O shard (webhook events) dropped because its queue was full.",
        )
        .value(&[], io(|s| &s.dropped_queue_full)),
        counter(
            "app_manager_queries_total",
            "Queries sent to the app database (cache misses; concurrent misses for one app share one).",
        )
        .value(&[], io(|s| &s.app_queries)),
        counter(
            "app_manager_query_errors_total",
            "App database queries that failed or timed out.",
        )
        .value(&[], io(|s| &s.app_query_errors)),
        counter(
            "app_manager_lookups_refused_total",
            "App lookups refused at once because too many were waiting for the database.",
        )
        .value(&[], io(|s| &s.app_lookups_refused)),
        counter(
            "rate_limiter_errors_total",
            "REST rate-limit checks the Redis limiter could not answer in time (the request was served: fail open).",
        )
        .value(&[], state(|s| s.rate_limiter_errors.load(std::sync::atomic::Ordering::Relaxed) as f64)),
        gauge(
            "rate_limiter_backend_up",
            "1 while the Redis rate limiter is connected (0 with the memory driver or while it is down).",
        )
        .value(&[], state(|s| s.rate_limiter_up.load(std::sync::atomic::Ordering::Relaxed) as f64)),
        counter(
            "cache_errors_total",
            "Shared cache (Redis) writes lost or reads failed (a failed read is a cache miss).",
        )
        .value(&[], state(|s| s.cache_errors.load(std::sync::atomic::Ordering::Relaxed) as f64)),
        gauge(
            "cache_backend_up",
            "1 while the Redis cache is connected (0 with the memory driver or while it is down).",
        )
        .value(&[], state(|s| s.cache_up.load(std::sync::atomic::Ordering::Relaxed) as f64)),
        gauge(
            "cluster_bus_up",
            "1 while the cluster bus is connected (0 alone or while it is down).",
        )
        .value(&[], bus(|s| &s.bus_up)),
        gauge("cluster_peers", "Other live nodes of the cluster.")
            .value(&[], bus(|s| &s.peers)),
        counter(
            "cluster_published_total",
            "Messages this node published on the cluster bus.",
        )
        .value(&[], bus(|s| &s.published)),
        counter(
            "cluster_received_total",
            "Messages received from other nodes.",
        )
        .value(&[], bus(|s| &s.received)),
        counter(
            "cluster_dropped_inbound_total",
            "Messages from the bus dropped because a worker shard's queue was full.",
        )
        .value(&[], bus(|s| &s.dropped_inbound)),
        counter(
            "cluster_gaps_total",
            "Times messages from another node were found missing (its sequence jumped); each asks for state again.",
        )
        .value(&[], bus(|s| &s.gaps)),
        gauge(
            "queue_enabled",
            "1 when webhooks wait in a durable queue (queue.driver redis, redis-cluster or sqs), else 0.",
        )
        .value(&[], queue(|s| &s.enabled)),
        gauge(
            "queue_backend_up",
            "1 while the last call to the durable queue's backend succeeded.",
        )
        .value(&[], queue(|s| &s.backend_up)),
        counter(
            "queue_enqueued_total",
            "Webhook requests stored in the durable queue.",
        )
        .value(&[], queue(|s| &s.enqueued)),
        gauge(
            "queue_buffered",
            "Webhook requests held locally, waiting for the queue backend.",
        )
        .value(&[], queue(|s| &s.buffered)),
        counter(
            "queue_dropped_total",
            "Webhook requests dropped before reaching the queue backend: local buffer full, or left at shutdown.",
        )
        .value(&[], queue(|s| &s.dropped)),
        counter(
            "queue_oversize_total",
            "Webhook requests too large for the queue backend, delivered from memory instead.",
        )
        .value(&[], queue(|s| &s.oversize)),
        counter(
            "queue_backend_errors_total",
            "Calls to the queue backend that failed (each is retried with backoff).",
        )
        .value(&[], queue(|s| &s.backend_errors)),
        counter(
            "queue_fetched_total",
            "Webhook requests taken from the durable queue for delivery.",
        )
        .value(&[], queue(|s| &s.fetched)),
        counter(
            "queue_redelivered_total",
            "Webhook requests taken over from a process whose lease ran out (delivered again).",
        )
        .value(&[], queue(|s| &s.redelivered)),
        counter(
            "queue_acked_total",
            "Webhook requests removed from the queue: delivered, or given up on.",
        )
        .value(&[], queue(|s| &s.acked)),
        counter(
            "queue_released_total",
            "Webhook requests handed back to the queue unfinished (shutdown, too many waiting).",
        )
        .value(&[], queue(|s| &s.released)),
        counter(
            "queue_invalid_total",
            "Messages in the queue that were not webhook requests of a known format (dropped).",
        )
        .value(&[], queue(|s| &s.invalid)),
        gauge(
            "queue_in_flight",
            "Webhook requests this process took from the queue and has not finished.",
        )
        .value(&[], queue(|s| &s.in_hand)),
        gauge(
            "webhooks_pending",
            "Webhook requests not finished yet: in flight, waiting for a connection slot or a retry.",
        )
        .value(&[], io(|s| &s.webhooks_pending)),
        gauge(
            "process_resident_memory_bytes",
            "Resident memory of the process.",
        )
        .value(&[], process.rss_bytes as f64),
        gauge(
            "process_virtual_memory_bytes",
            "Virtual memory of the process.",
        )
        .value(&[], process.virtual_bytes as f64),
        counter(
            "process_cpu_seconds_total",
            "User and system CPU time of the process.",
        )
        .value(&[], process.cpu_user_seconds + process.cpu_system_seconds),
    ];
    families.into_iter().filter_map(Family::build).collect()
}

/// The text exposition format (version 0.0.4).
pub fn render(r: &MetricsRegistry) -> String {
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&gather(r), &mut out) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn renders_summed_counters_with_prefix_and_labels() {
        let slots = std::sync::Arc::new(crate::app::AppSlots::default());
        slots.intern("app-1");
        let r = MetricsRegistry::new(2, slots, "sockudo_");
        r.shards[0].connection_opened(0);
        r.shards[1].connection_opened(0);
        r.shards[1].connection_opened(0);
        r.shards[0].connection_closed(0);
        r.shards[0].ws_messages_sent.add(3);
        r.shards[1].ws_messages_sent.add(4);
        r.shards[0].http_call(Route::Events, 200, Duration::from_millis(3), 10, 20);
        r.shards[1].http_call(Route::Events, 200, Duration::from_millis(30), 10, 20);
        r.shards[1].error_sent(Some(4001));
        r.shards[1].set_backlog(&[5, 0]);
        let text = render(&r);
        for line in [
            "sockudo_connected{app_id=\"app-1\"} 2",
            "sockudo_new_connections_total{app_id=\"app-1\"} 3",
            "sockudo_new_disconnections_total{app_id=\"app-1\"} 1",
            "sockudo_ws_messages_sent_total 7",
            "sockudo_http_calls_received_total{route=\"events\",status=\"200\"} 2",
            "sockudo_http_request_duration_seconds_bucket{route=\"events\",le=\"0.005\"} 1",
            "sockudo_http_request_duration_seconds_bucket{route=\"events\",le=\"0.05\"} 2",
            "sockudo_http_request_duration_seconds_count{route=\"events\"} 2",
            "sockudo_errors_total{code=\"4001\"} 1",
            "sockudo_shard_queue_depth{shard=\"1\",peer=\"0\"} 5",
            "sockudo_shard_queue_depth{shard=\"0\",peer=\"1\"} 0",
            "# TYPE sockudo_http_request_duration_seconds histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("status=\"404\""), "zero series are left out");
    }
}
