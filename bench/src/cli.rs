//! Command-line interface: every knob of the generator, parsed with clap.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "sockudo-bench",
    version,
    about = "Load generator for Pusher-protocol (v7) servers over loopback"
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Clone, Args)]
pub struct Common {
    /// WebSocket base URL of the server (`ws://` or, with --ca, `wss://`); the host must be a loopback address.
    /// Several comma-separated URLs (e.g. the nodes of a cluster on different ports): connection i goes to URL
    /// i % count.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:6001")]
    pub url: String,
    /// HTTP base URL of the REST API (defaults to the host and port of --url, https for wss).
    #[arg(long, global = true)]
    pub http_url: Option<String>,
    /// PEM file of the CA that signed the server's certificate: trusted for `wss://` and `https://` URLs.
    #[arg(long, global = true)]
    pub ca: Option<String>,
    #[arg(long, global = true, default_value = "app-id")]
    pub app_id: String,
    #[arg(long, global = true, default_value = "app-key")]
    pub key: String,
    #[arg(long, global = true, default_value = "app-secret")]
    pub secret: String,
    /// Server process id(s) for CPU (/proc/PID/stat) and RSS (/proc/PID/status); repeat or comma-separate, values are summed.
    #[arg(long, global = true, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Process id(s) of the cluster bus broker (redis-server, nats-server): its CPU is reported apart
    /// (`bus_cpu_us`, `bus_cpu_us_per_delivery`) over the same window as the server's.
    #[arg(long, global = true, value_delimiter = ',')]
    pub bus_pid: Vec<u32>,
    /// Number of WebSocket connections.
    #[arg(long, short = 'n', global = true, default_value_t = 100)]
    pub connections: usize,
    /// Number of channels the connections are spread over (connection i joins channel i % C).
    #[arg(long, short = 'c', global = true, default_value_t = 1)]
    pub channels: usize,
    /// Use `private-` channels, signing subscriptions locally with the secret.
    #[arg(long, global = true)]
    pub private: bool,
    /// Number of local source addresses (127.0.0.2, 127.0.0.3, ...); 0 = automatic (one per 20,000 connections, at least 4).
    #[arg(long, global = true, default_value_t = 0)]
    pub sources: usize,
    /// Connections being established at the same time.
    #[arg(long, global = true, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Hard global timeout in seconds: the run is aborted (exit 2) when it expires.
    #[arg(long, global = true, default_value_t = 300)]
    pub timeout: u64,
    /// Print the final report as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Tokio worker threads of the generator (default 1, leaving the other core to the server).
    #[arg(long, global = true, default_value_t = 1)]
    pub workers: usize,
    /// Disable the progress line on stderr.
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Subscribe with delta compression (`fossil` or `xdelta3`, sockudo-js `delta` setting); delta frames count
    /// as deliveries.
    #[arg(long, global = true)]
    pub delta: Option<String>,
    /// Tag filtering: every subscriber filters on `tags_filter {"key":"k","cmp":"eq","val":"hit"}` and this
    /// percentage of published events is tagged `k=hit` (the rest `k=miss`); the server needs
    /// `TAG_FILTERING_ENABLED=true`. Expected deliveries count only the matching events.
    #[arg(long, global = true)]
    pub filter_match: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct Load {
    /// Events per second (fixed rate). Without it, --events are sent as fast as the server accepts them.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Total events to send (default: rate x duration, or 1000 without --rate).
    #[arg(long)]
    pub events: Option<u64>,
    /// Seconds of publishing at --rate (ignored when --events is given).
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Concurrent in-flight publish requests (one keep-alive HTTP connection each).
    #[arg(long, default_value_t = 4)]
    pub in_flight: usize,
    /// Size of the event `data` string in bytes (padded).
    #[arg(long, default_value_t = 100)]
    pub payload_bytes: usize,
    /// Ticker-like payload: a JSON quote (symbol, bid, ask, last, volume) with a fixed order book padding it to
    /// --payload-bytes, so only a few fields change from one event to the next.
    #[arg(long)]
    pub ticker: bool,
    /// Seconds to wait for outstanding deliveries after the last event was sent.
    #[arg(long, default_value_t = 10.0)]
    pub drain: f64,
    #[command(flatten)]
    pub multi: MultiProcess,
}

/// One fan-out driven by several generator processes (each is limited to ~20,000 sockets by the fd limit):
/// every process connects its share and writes --ready-file; the caller creates --start-file once all are
/// ready; one process publishes, the others run with --listen-only, count their deliveries exactly and write
/// --done-file; the publisher waits for those (--wait-done) before its last server CPU reading.
#[derive(Debug, Clone, Default, Args)]
pub struct MultiProcess {
    /// Publish nothing: expect the --events that another generator publishes (event s on channel s % C).
    #[arg(long)]
    pub listen_only: bool,
    /// Create this file once every connection is subscribed or failed (JSON: subscribed, connect_errors).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Wait for this file to exist before publishing (with --listen-only: before the measurement starts).
    #[arg(long)]
    pub start_file: Option<PathBuf>,
    /// Create this file once every expected event arrived or the drain expired (JSON: delivered, expected,
    /// last_delivery_ns).
    #[arg(long)]
    pub done_file: Option<PathBuf>,
    /// After its own deliveries, wait up to --drain seconds for these files (the other generators'
    /// --done-file) before the final server CPU reading, so the window covers the whole fan-out.
    #[arg(long, value_delimiter = ',')]
    pub wait_done: Vec<PathBuf>,
}

impl MultiProcess {
    pub fn is_used(&self) -> bool {
        self.listen_only
            || self.ready_file.is_some()
            || self.start_file.is_some()
            || self.done_file.is_some()
            || !self.wait_done.is_empty()
    }
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Connect and subscribe N connections, report server RSS per connection.
    Idle {
        /// Seconds to hold the connections after all subscribed (answering pings).
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
    },
    /// Publish events through the signed REST API; measure deliveries/s, latency, server CPU per delivery.
    Fanout(Load),
    /// Connect, subscribe, wait for success, close, repeat; measure connects/s and server CPU per connect.
    Churn {
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
    /// Client events: one sender per (private) channel; every other subscriber must receive each event.
    ClientEvents(Load),
}
