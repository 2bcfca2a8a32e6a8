//! `client-events`: on every (private) channel, the first connection sends `client-bench`
//! events; every other subscriber of that channel must receive each one (no echo to the sender).

use super::{Ctx, SendPlan};
use crate::cli::Load;
use crate::procfs;
use crate::pusher;
use crate::report::Report;
use crate::stats::Counters;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

/// Default rate when none is given: 5 events/s per channel (Pusher limits clients to 10/s).
const DEFAULT_PER_CHANNEL_RATE: f64 = 5.0;

pub async fn run(ctx: Arc<Ctx>, load: Load, report: &mut Report) {
    let channels = ctx.common.channels.max(1);
    let rate = load
        .rate
        .unwrap_or(DEFAULT_PER_CHANNEL_RATE * channels as f64);
    let total = match load.events {
        Some(e) => e,
        None => (rate * load.duration).round().max(1.0) as u64,
    };
    let every = Duration::from_secs_f64(channels as f64 / rate);
    if ctx.common.connections < 2 * channels {
        report.problem("client-events needs at least 2 connections per channel");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (go_tx, go_rx) = watch::channel(false);
    ctx.set_phase("connecting");
    let t_connect = Instant::now();
    let handles = super::spawn_connections(
        &ctx,
        &stop_rx,
        |i| {
            (i < channels).then(|| SendPlan {
                channel_index: i,
                first_seq: i as u64,
                stride: channels as u64,
                count: (total + (channels - 1 - i) as u64) / channels as u64,
                every,
                payload_bytes: load.payload_bytes,
            })
        },
        &go_rx,
    );
    super::wait_all_subscribed(&ctx).await;
    report.connect_secs = Some(t_connect.elapsed().as_secs_f64());

    ctx.set_phase("sending");
    let s0 = procfs::snapshot(&ctx.common);
    let t0 = pusher::now_ns();
    let _ = go_tx.send(true);
    // Senders finish on their own schedule; wait for them (or for their connections to die).
    let senders = (0..channels.min(ctx.common.connections))
        .filter(|&ch| ctx.subs_per_channel[ch].load(Ordering::Relaxed) > 0)
        .count() as u64;
    let deadline =
        Instant::now() + every * (total as u32 / channels as u32 + 2) + Duration::from_secs(5);
    while Counters::get(&ctx.counters.published) + Counters::get(&ctx.counters.publish_errors)
        < total
        && senders > 0
        && Instant::now() < deadline
    {
        sleep(Duration::from_millis(10)).await;
    }
    let drain_for = Duration::from_secs_f64(load.drain);
    let start = super::MeasureStart {
        s0,
        t0,
        drain_for,
        multi: Default::default(),
    };
    let expected_for = |o: &super::ConnOutcome, sent| if o.sender { 0 } else { sent };
    super::finish_delivery(&ctx, report, start, stop_tx, handles, expected_for, true).await;
    if Counters::get(&ctx.counters.published) < total {
        report.problem(format!(
            "only {} of {total} client events were sent",
            Counters::get(&ctx.counters.published)
        ));
    }
    report.rate = Some(rate);
    report.payload_bytes = Some(load.payload_bytes);
}
