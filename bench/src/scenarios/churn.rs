//! `churn`: `--connections` loops that connect, subscribe, wait for success and close, for
//! `--duration` seconds; connects/s and server CPU per connect.

use super::Ctx;
use crate::procfs;
use crate::pusher;
use crate::report::Report;
use crate::stats::Counters;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::{timeout, Instant};

pub async fn run(ctx: Arc<Ctx>, duration: f64, report: &mut Report) {
    ctx.set_phase("churning");
    let done = Arc::new(AtomicU64::new(0));
    let s0 = procfs::snapshot(&ctx.common);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(duration);
    let loops: Vec<_> = (0..ctx.common.connections.max(1))
        .map(|w| {
            let ctx = ctx.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let ch = ctx.channel_of(w);
                let name = pusher::channel_name(ctx.common.private, ch);
                let mut iter = 0usize;
                while Instant::now() < end {
                    // rotate source addresses so TIME_WAIT is spread out
                    let slot = w + iter * ctx.common.connections.max(1);
                    iter += 1;
                    match timeout(Duration::from_secs(30), super::establish(&ctx, slot, &name))
                        .await
                    {
                        Ok(Ok(ws)) => {
                            Counters::inc(&ctx.counters.subscribed);
                            done.fetch_add(1, Ordering::Relaxed);
                            ws.close().await;
                        }
                        Ok(Err(e)) => {
                            if ctx.counters.connect_errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("churn connect: {e}");
                            }
                        }
                        Err(_) => Counters::inc(&ctx.counters.connect_errors),
                    }
                }
            })
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
    let s1 = procfs::snapshot(&ctx.common);
    let secs = s1.at.duration_since(s0.at).as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    report.connects = Some(n);
    report.connects_per_sec = Some(n as f64 / secs);
    report.measured_secs = Some(secs);
    if let Some(cpu) = procfs::server_cpu_delta(&s0, &s1) {
        report.server_cpu_us = Some(cpu);
        report.server_cpu_percent = Some(cpu as f64 / 1e4 / secs);
        if n > 0 {
            report.server_cpu_us_per_connect = Some(cpu as f64 / n as f64);
        }
    }
    report.server_rss_before_bytes = s0.server_rss;
    report.server_rss_after_bytes = s1.server_rss;
    report.generator_cpu_us = procfs::self_cpu_delta(&s0, &s1);
    if n == 0 {
        report.problem("no connection completed");
    }
}
