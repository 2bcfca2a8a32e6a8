//! `fanout`: N subscribers over C channels, events published through the signed REST API.

use super::{multi, Ctx, SendPlan};
use crate::cli::Load;
use crate::procfs;
use crate::pusher;
use crate::report::Report;
use crate::rest::{self, HttpConn, Signer};
use crate::stats::Counters;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

pub fn total_events(load: &Load) -> u64 {
    match (load.events, load.rate) {
        (Some(e), _) => e,
        (None, Some(r)) => (r * load.duration).round().max(1.0) as u64,
        (None, None) => 1000,
    }
}

pub async fn run(ctx: Arc<Ctx>, load: Load, report: &mut Report) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (_go_tx, go_rx) = watch::channel(false);
    ctx.set_phase("connecting");
    let t_connect = Instant::now();
    let handles = super::spawn_connections(&ctx, &stop_rx, |_| None::<SendPlan>, &go_rx);
    super::wait_all_subscribed(&ctx).await;
    report.connect_secs = Some(t_connect.elapsed().as_secs_f64());
    let multi = &load.multi;
    if let Some(path) = &multi.ready_file {
        let ready = serde_json::json!({
            "subscribed": Counters::get(&ctx.counters.subscribed),
            "connect_errors": Counters::get(&ctx.counters.connect_errors),
            "connect_secs": report.connect_secs,
        });
        if let Err(e) = multi::write_json(path, &ready) {
            report.problem(format!("{e:#}"));
        }
    }
    if let Some(path) = &multi.start_file {
        ctx.set_phase("waiting for the start file");
        multi::wait_for(path).await;
    }

    let total = total_events(&load);
    let s0 = procfs::snapshot(&ctx.common);
    let t0 = pusher::now_ns();
    if multi.listen_only {
        ctx.set_phase("listening");
        let per_channel = multi::events_per_channel(total, ctx.common.channels);
        for (sent, n) in ctx.sent_per_channel.iter().zip(per_channel) {
            sent.store(n, Ordering::Relaxed);
        }
    } else {
        ctx.set_phase("publishing");
        publish(&ctx, &load, total).await;
    }
    let drain_for = Duration::from_secs_f64(load.drain);
    let start = super::MeasureStart {
        s0,
        t0,
        drain_for,
        multi: load.multi.clone(),
    };
    super::finish_delivery(&ctx, report, start, stop_tx, handles, |_, sent| sent, false).await;
    report.rate = load.rate;
    report.payload_bytes = Some(load.payload_bytes);
}

/// Common delivery figures for fanout and client-events.
pub fn fill_delivery_report(
    ctx: &Ctx,
    report: &mut Report,
    tally: &super::Tally,
    start: &super::MeasureStart,
    s1: &procfs::Snapshot,
    t_last_ns: u64,
) {
    let c = &ctx.counters;
    let (s0, t0_ns) = (&start.s0, start.t0);
    let listen_only = start.multi.listen_only;
    let sent = Counters::get(&c.published);
    let secs = (t_last_ns - t0_ns) as f64 / 1e9;
    report.first_event_ns = Some(t0_ns);
    report.last_delivery_ns = Some(t_last_ns);
    if !listen_only {
        report.events_sent = Some(sent);
        report.publish_errors = Some(Counters::get(&c.publish_errors));
        report.events_per_sec = Some(sent as f64 / secs);
    }
    report.expected_deliveries = Some(tally.expected);
    report.delivered = Some(tally.delivered);
    report.missing = Some(tally.missing);
    report.extra = Some(tally.extra);
    report.connections_short = Some(tally.connections_short);
    report.closed_early = Some(Counters::get(&c.closed_early));
    report.measured_secs = Some(secs);
    report.deliveries_per_sec = Some(tally.delivered as f64 / secs);
    report.latency = ctx.latency.summary();
    if let Some(cpu) = procfs::server_cpu_delta(s0, s1) {
        let wall = s1.at.duration_since(s0.at).as_secs_f64();
        report.server_cpu_us = Some(cpu);
        report.server_cpu_percent = Some(cpu as f64 / 1e4 / wall);
        if tally.delivered > 0 {
            report.server_cpu_us_per_delivery = Some(cpu as f64 / tally.delivered as f64);
        }
    }
    if let Some(cpu) = procfs::bus_cpu_delta(s0, s1) {
        report.bus_cpu_us = Some(cpu);
        if tally.delivered > 0 {
            report.bus_cpu_us_per_delivery = Some(cpu as f64 / tally.delivered as f64);
        }
    }
    if tally.delivered > 0 {
        report.wire_bytes_per_delivery =
            Some(Counters::get(&c.wire_bytes) as f64 / tally.delivered as f64);
    }
    report.server_rss_after_bytes = s1.server_rss;
    report.generator_cpu_us = procfs::self_cpu_delta(s0, s1);
    if tally.missing > 0 {
        report.problem(format!(
            "LOSS: delivered {} of {} expected ({} missing, {} connections short)",
            tally.delivered, tally.expected, tally.missing, tally.connections_short
        ));
    }
    if tally.extra > 0 {
        report.problem(format!(
            "{} unexpected extra deliveries (duplicates or echoes)",
            tally.extra
        ));
    }
    let errs = Counters::get(&c.publish_errors);
    if errs > 0 {
        report.problem(format!("{errs} events were not accepted by the server"));
    }
    if sent == 0 && !listen_only {
        report.problem("no event was accepted by the server");
    }
}

/// Publish `total` events round-robin over the channels with `in_flight` keep-alive connections,
/// at `rate` (timestamp = scheduled send time, so queueing delay counts) or as fast as accepted.
async fn publish(ctx: &Arc<Ctx>, load: &Load, total: u64) {
    let signer = Signer {
        app_id: ctx.common.app_id.clone(),
        key: ctx.common.key.clone(),
        secret: ctx.common.secret.clone(),
    };
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let start_ns = pusher::now_ns();
    let workers: Vec<_> = (0..load.in_flight.max(1))
        .map(|_| {
            let ctx = ctx.clone();
            let signer = signer.clone();
            let next = next.clone();
            let load = load.clone();
            tokio::spawn(async move {
                let mut http = HttpConn::new(ctx.http.clone());
                let path = signer.events_path();
                let channels = ctx.common.channels.max(1) as u64;
                loop {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= total {
                        break;
                    }
                    let ts = match load.rate {
                        Some(r) if r > 0.0 => {
                            let offset = Duration::from_secs_f64(seq as f64 / r);
                            tokio::time::sleep_until(start + offset).await;
                            start_ns + offset.as_nanos() as u64
                        }
                        _ => pusher::now_ns(),
                    };
                    let ch = (seq % channels) as usize;
                    let name = pusher::channel_name(ctx.common.private, ch);
                    let data = if load.ticker {
                        pusher::ticker_payload(ts, seq, load.payload_bytes)
                    } else {
                        pusher::payload(ts, seq, load.payload_bytes)
                    };
                    // With a filter, subscribers expect only the events tagged `hit`.
                    let hit = ctx
                        .common
                        .filter_match
                        .is_none_or(|pct| seq % 100 < u64::from(pct));
                    let body = match ctx.common.filter_match {
                        Some(_) => rest::event_body_tagged(
                            pusher::EVENT_NAME,
                            &name,
                            &data,
                            if hit { "hit" } else { "miss" },
                        ),
                        None => rest::event_body(pusher::EVENT_NAME, &name, &data),
                    };
                    let query =
                        signer.signed_query("POST", &path, body.as_bytes(), rest::unix_now());
                    match http.post(&format!("{path}?{query}"), body.as_bytes()).await {
                        Ok(200) => {
                            if hit {
                                ctx.sent_per_channel[ch].fetch_add(1, Ordering::Relaxed);
                            }
                            Counters::inc(&ctx.counters.published);
                        }
                        other => {
                            let prev = ctx.counters.publish_errors.fetch_add(1, Ordering::Relaxed);
                            if prev < 5 {
                                match other {
                                    Ok(code) => eprintln!("publish {seq}: HTTP {code}"),
                                    Err(e) => eprintln!("publish {seq}: {e:#}"),
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
}
