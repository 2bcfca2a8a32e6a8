//! Scenario plumbing shared by all scenarios: context, connection set-up, the per-connection
//! receive loop, and the progress line.

pub mod churn;
pub mod client_events;
pub mod fanout;
pub mod idle;
pub mod multi;

use crate::cli::Common;
use crate::net::Target;
use crate::pusher;
use crate::stats::{Counters, Latency};
use crate::ws::{Message, WsClient};
use anyhow::{anyhow, bail, Result};
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

/// Everything a connection task needs, shared.
pub struct Ctx {
    pub common: Common,
    /// WebSocket targets; connection i uses `ws[i % len]`.
    pub ws: Vec<Target>,
    pub http: Target,
    pub sources: Vec<Ipv4Addr>,
    pub counters: Counters,
    pub latency: Latency,
    /// Events accepted by the server, per channel.
    pub sent_per_channel: Vec<AtomicU64>,
    /// Connections subscribed, per channel.
    pub subs_per_channel: Vec<AtomicU64>,
    pub phase: Mutex<&'static str>,
    pub ws_path: String,
}

impl Ctx {
    pub fn new(common: Common, ws: Vec<Target>, http: Target, sources: Vec<Ipv4Addr>) -> Self {
        assert!(!ws.is_empty(), "at least one WebSocket target");
        let channels = common.channels.max(1);
        let ws_path = format!(
            "/app/{}?protocol=7&client=sockudo-bench&version={}&flash=false",
            common.key,
            env!("CARGO_PKG_VERSION")
        );
        Self {
            sent_per_channel: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            subs_per_channel: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            common,
            ws,
            http,
            sources,
            counters: Counters::default(),
            latency: Latency::default(),
            phase: Mutex::new("starting"),
            ws_path,
        }
    }

    pub fn set_phase(&self, p: &'static str) {
        if let Ok(mut g) = self.phase.lock() {
            *g = p;
        }
    }

    pub fn source(&self, i: usize) -> Option<Ipv4Addr> {
        if self.sources.is_empty() {
            None
        } else {
            Some(self.sources[i % self.sources.len()])
        }
    }

    pub fn ws_target(&self, conn: usize) -> &Target {
        &self.ws[conn % self.ws.len()]
    }

    pub fn channel_of(&self, conn: usize) -> usize {
        conn % self.common.channels.max(1)
    }
}

/// Connect, wait for `pusher:connection_established`, subscribe and wait for
/// `pusher_internal:subscription_succeeded`. Pings are answered throughout.
pub async fn establish(ctx: &Ctx, conn: usize, channel: &str) -> Result<WsClient> {
    let target = ctx.ws_target(conn);
    let mut ws = WsClient::connect(target, ctx.source(conn), &ctx.ws_path).await?;
    let socket_id = loop {
        let Message::Text(m) = ws.next_message().await? else {
            bail!("closed before connection_established");
        };
        let inc = pusher::parse(&m).ok_or_else(|| anyhow!("unparsable message"))?;
        match inc.event.as_ref() {
            "pusher:connection_established" => {
                break pusher::socket_id(inc.data)
                    .ok_or_else(|| anyhow!("connection_established without socket_id"))?
            }
            "pusher:ping" => ws.send_text(pusher::PONG).await?,
            "pusher:error" => bail!("pusher:error {}", String::from_utf8_lossy(&m)),
            _ => {}
        }
    };
    let auth = if channel.starts_with("private-") {
        Some(pusher::private_auth(
            &ctx.common.key,
            &ctx.common.secret,
            &socket_id,
            channel,
        ))
    } else {
        None
    };
    ws.send_text(&pusher::subscribe_msg_with(
        channel,
        auth.as_deref(),
        ctx.common.delta.as_deref(),
        ctx.common.filter_match.is_some(),
    ))
    .await?;
    loop {
        let Message::Text(m) = ws.next_message().await? else {
            bail!("closed before subscription_succeeded");
        };
        let inc = pusher::parse(&m).ok_or_else(|| anyhow!("unparsable message"))?;
        match inc.event.as_ref() {
            "pusher_internal:subscription_succeeded" if inc.channel.as_deref() == Some(channel) => {
                return Ok(ws)
            }
            "pusher:ping" => ws.send_text(pusher::PONG).await?,
            "pusher:error" | "pusher:subscription_error" => {
                bail!("subscription refused: {}", String::from_utf8_lossy(&m))
            }
            _ => {}
        }
    }
}

/// A client-event sender plan for one connection: send `count` events, one every `every`.
pub struct SendPlan {
    pub channel_index: usize,
    pub first_seq: u64,
    pub stride: u64,
    pub count: u64,
    pub every: Duration,
    pub payload_bytes: usize,
}

/// Outcome of one connection in a measured scenario.
pub struct ConnOutcome {
    pub channel: usize,
    pub subscribed: bool,
    pub delivered: u64,
    pub sender: bool,
}

/// Receive loop after subscription: count bench deliveries, record latency, answer pings,
/// optionally send client events; ends on `stop`.
pub async fn receive_loop(
    ctx: &Ctx,
    mut ws: WsClient,
    mut stop: watch::Receiver<bool>,
    mut plan: Option<SendPlan>,
    channel: &str,
) -> u64 {
    let mut delivered = 0u64;
    let mut samples: Vec<u64> = Vec::new();
    let mut next_send = Instant::now();
    let mut sent = 0u64;
    loop {
        let sending = plan.as_ref().is_some_and(|p| sent < p.count);
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            msg = ws.next_message() => {
                let m = match msg {
                    Ok(Message::Text(m)) => m,
                    Ok(Message::Closed) | Err(_) => {
                        Counters::inc(&ctx.counters.closed_early);
                        break;
                    }
                };
                let Some(inc) = pusher::parse(&m) else { continue };
                match inc.event.as_ref() {
                    pusher::EVENT_NAME | pusher::CLIENT_EVENT_NAME | "pusher:delta" => {
                        let now = pusher::now_ns();
                        delivered += 1;
                        Counters::inc(&ctx.counters.delivered);
                        ctx.counters.wire_bytes.fetch_add(m.len() as u64, Ordering::Relaxed);
                        ctx.counters.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
                        if let Some((ts, _seq)) = pusher::scan_stamp(&m) {
                            samples.push(now.saturating_sub(ts) / 1000);
                            if samples.len() >= 64 {
                                ctx.latency.record_many(&samples);
                                samples.clear();
                            }
                        }
                    }
                    "pusher:ping" => {
                        let failed = ws.send_text(pusher::PONG).await.is_err();
                        if failed {
                            Counters::inc(&ctx.counters.closed_early);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(next_send), if sending => {
                if let Some(p) = plan.as_mut() {
                    let seq = p.first_seq + sent * p.stride;
                    let data = pusher::payload(pusher::now_ns(), seq, p.payload_bytes);
                    let msg = serde_json::json!({
                        "event": pusher::CLIENT_EVENT_NAME,
                        "channel": channel,
                        "data": serde_json::from_str::<serde_json::Value>(&data).unwrap_or_default(),
                    })
                    .to_string();
                    if ws.send_text(&msg).await.is_ok() {
                        ctx.sent_per_channel[p.channel_index].fetch_add(1, Ordering::Relaxed);
                        Counters::inc(&ctx.counters.published);
                    } else {
                        Counters::inc(&ctx.counters.publish_errors);
                    }
                    sent += 1;
                    next_send += p.every;
                }
            }
        }
    }
    ctx.latency.record_many(&samples);
    ws.close().await;
    delivered
}

/// Open `n` connections (bounded concurrency), subscribe connection i to channel i % C, then
/// keep each in `receive_loop` until `stop` fires. `plan_for(i)` gives optional client-event senders.
pub fn spawn_connections(
    ctx: &Arc<Ctx>,
    stop: &watch::Receiver<bool>,
    mut plan_for: impl FnMut(usize) -> Option<SendPlan>,
    start_sending: &watch::Receiver<bool>,
) -> Vec<JoinHandle<ConnOutcome>> {
    let sem = Arc::new(Semaphore::new(ctx.common.connect_concurrency.max(1)));
    (0..ctx.common.connections)
        .map(|i| {
            let ctx = ctx.clone();
            let sem = sem.clone();
            let stop = stop.clone();
            let mut go = start_sending.clone();
            let plan = plan_for(i);
            tokio::spawn(async move {
                let ch = ctx.channel_of(i);
                let name = pusher::channel_name(ctx.common.private, ch);
                let sender = plan.is_some();
                let ws = {
                    let _permit = sem.acquire().await;
                    match timeout(Duration::from_secs(30), establish(&ctx, i, &name)).await {
                        Ok(Ok(ws)) => ws,
                        Ok(Err(e)) => {
                            note_connect_error(&ctx, i, &e.to_string());
                            return ConnOutcome {
                                channel: ch,
                                subscribed: false,
                                delivered: 0,
                                sender,
                            };
                        }
                        Err(_) => {
                            note_connect_error(&ctx, i, "timed out");
                            return ConnOutcome {
                                channel: ch,
                                subscribed: false,
                                delivered: 0,
                                sender,
                            };
                        }
                    }
                };
                Counters::inc(&ctx.counters.subscribed);
                ctx.subs_per_channel[ch].fetch_add(1, Ordering::Relaxed);
                let plan = if plan.is_some() {
                    // senders start only when the whole set is subscribed
                    let _ = go.wait_for(|v| *v).await;
                    plan
                } else {
                    None
                };
                let delivered = receive_loop(&ctx, ws, stop, plan, &name).await;
                ConnOutcome {
                    channel: ch,
                    subscribed: true,
                    delivered,
                    sender,
                }
            })
        })
        .collect()
}

fn note_connect_error(ctx: &Ctx, i: usize, e: &str) {
    let prev = ctx.counters.connect_errors.fetch_add(1, Ordering::Relaxed);
    if prev < 5 {
        eprintln!("connection {i}: {e}");
    }
}

/// Wait until every connection either subscribed or failed.
pub async fn wait_all_subscribed(ctx: &Ctx) {
    let n = ctx.common.connections as u64;
    loop {
        let done =
            Counters::get(&ctx.counters.subscribed) + Counters::get(&ctx.counters.connect_errors);
        if done >= n {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Progress line on stderr (only on a terminal, not with --quiet).
pub fn spawn_progress(ctx: &Arc<Ctx>) -> Option<JoinHandle<()>> {
    if ctx.common.quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let ctx = ctx.clone();
    Some(tokio::spawn(async move {
        let started = Instant::now();
        loop {
            sleep(Duration::from_millis(500)).await;
            let c = &ctx.counters;
            let phase = ctx.phase.lock().map(|p| *p).unwrap_or("?");
            eprint!(
                "\r\x1b[2K[{:>6.1}s] {phase}: subscribed {} errors {} | sent {} (err {}) | delivered {}",
                started.elapsed().as_secs_f64(),
                Counters::get(&c.subscribed),
                Counters::get(&c.connect_errors),
                Counters::get(&c.published),
                Counters::get(&c.publish_errors),
                Counters::get(&c.delivered),
            );
        }
    }))
}

pub fn clear_progress(handle: Option<JoinHandle<()>>) {
    if let Some(h) = handle {
        h.abort();
        eprint!("\r\x1b[2K");
    }
}

/// Expected deliveries and shortfalls from per-connection outcomes.
pub struct Tally {
    pub subscribers_per_channel: Vec<u64>,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub extra: u64,
    pub connections_short: u64,
}

/// `expected_for(outcome, sent_on_its_channel)` gives what one connection should have received.
pub fn tally(
    ctx: &Ctx,
    outcomes: &[ConnOutcome],
    expected_for: impl Fn(&ConnOutcome, u64) -> u64,
) -> Tally {
    let mut t = Tally {
        subscribers_per_channel: vec![0; ctx.sent_per_channel.len()],
        expected: 0,
        delivered: 0,
        missing: 0,
        extra: 0,
        connections_short: 0,
    };
    for o in outcomes.iter().filter(|o| o.subscribed) {
        t.subscribers_per_channel[o.channel] += 1;
        let sent = ctx.sent_per_channel[o.channel].load(Ordering::Relaxed);
        let want = expected_for(o, sent);
        t.expected += want;
        t.delivered += o.delivered;
        if o.delivered < want {
            t.missing += want - o.delivered;
            t.connections_short += 1;
        } else {
            t.extra += o.delivered - want;
        }
    }
    t
}

/// Join all connection tasks.
pub async fn join_all(handles: Vec<JoinHandle<ConnOutcome>>) -> Vec<ConnOutcome> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(o) = h.await {
            out.push(o);
        }
    }
    out
}

/// Total expected deliveries right now (for drain waiting).
pub fn expected_now(ctx: &Ctx, minus_sender: bool) -> u64 {
    ctx.sent_per_channel
        .iter()
        .zip(&ctx.subs_per_channel)
        .map(|(s, n)| {
            let n = n.load(Ordering::Relaxed);
            let n = if minus_sender { n.saturating_sub(1) } else { n };
            s.load(Ordering::Relaxed) * n
        })
        .sum()
}

/// Wait until `delivered >= expected` or `drain` has elapsed; returns true when complete.
pub async fn drain(ctx: &Ctx, expected: u64, drain: Duration) -> bool {
    let deadline = Instant::now() + drain;
    loop {
        if Counters::get(&ctx.counters.delivered) >= expected {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(5)).await;
    }
}

/// Where a delivery measurement starts: server CPU and the clock when the first event went out.
pub struct MeasureStart {
    /// Server CPU/RSS at the start.
    pub s0: crate::procfs::Snapshot,
    /// Start time (ns, payload clock).
    pub t0: u64,
    /// How long to wait for deliveries still in flight.
    pub drain_for: Duration,
    /// Coordination with other generator processes (fanout only; default: none).
    pub multi: crate::cli::MultiProcess,
}

/// The end of every delivery scenario: drain what is still in flight, snapshot the server, stop and join the
/// connections, and fill the report. `senders_excluded`: the sending connection expects none of its own events.
pub async fn finish_delivery(
    ctx: &Ctx,
    report: &mut crate::report::Report,
    start: MeasureStart,
    stop_tx: watch::Sender<bool>,
    handles: Vec<JoinHandle<ConnOutcome>>,
    expected_for: impl Fn(&ConnOutcome, u64) -> u64,
    senders_excluded: bool,
) {
    ctx.set_phase("draining");
    let expected = expected_now(ctx, senders_excluded);
    drain(ctx, expected, start.drain_for).await;
    if let Some(path) = &start.multi.done_file {
        let done = serde_json::json!({
            "delivered": Counters::get(&ctx.counters.delivered),
            "expected": expected,
            "last_delivery_ns": ctx.counters.last_delivery_ns.load(Ordering::Relaxed),
        });
        if let Err(e) = multi::write_json(path, &done) {
            report.problem(format!("{e:#}"));
        }
    }
    if !start.multi.wait_done.is_empty() {
        ctx.set_phase("waiting for the other generators");
        for path in multi::wait_for_all(&start.multi.wait_done, start.drain_for).await {
            report.problem(format!(
                "{} did not appear: that generator did not finish",
                path.display()
            ));
        }
    }
    let s1 = crate::procfs::snapshot(&ctx.common);
    let t_last = ctx
        .counters
        .last_delivery_ns
        .load(Ordering::Relaxed)
        .max(start.t0 + 1);
    ctx.set_phase("closing");
    let _ = stop_tx.send(true);
    let outcomes = join_all(handles).await;
    let tally = tally(ctx, &outcomes, expected_for);
    fanout::fill_delivery_report(ctx, report, &tally, &start, &s1, t_last);
}
