//! `idle`: connect and subscribe N connections, hold them, report server RSS per connection.

use super::{Ctx, SendPlan};
use crate::procfs;
use crate::report::Report;
use crate::stats::Counters;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{sleep, Instant};

pub async fn run(ctx: Arc<Ctx>, hold: f64, report: &mut Report) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (_go_tx, go_rx) = watch::channel(false);
    let s0 = procfs::snapshot(&ctx.common);
    ctx.set_phase("connecting");
    let t_connect = Instant::now();
    let handles = super::spawn_connections(&ctx, &stop_rx, |_| None::<SendPlan>, &go_rx);
    super::wait_all_subscribed(&ctx).await;
    let connect_secs = t_connect.elapsed().as_secs_f64();
    let s_conn = procfs::snapshot(&ctx.common);
    ctx.set_phase("holding");
    sleep(Duration::from_secs_f64(hold)).await;
    let s1 = procfs::snapshot(&ctx.common);

    ctx.set_phase("closing");
    let _ = stop_tx.send(true);
    let _ = super::join_all(handles).await;

    let subscribed = Counters::get(&ctx.counters.subscribed);
    report.connect_secs = Some(connect_secs);
    report.connects = Some(subscribed);
    report.connects_per_sec = Some(subscribed as f64 / connect_secs.max(1e-9));
    report.server_rss_before_bytes = s0.server_rss;
    report.server_rss_after_bytes = s1.server_rss;
    if let (Some(a), Some(b)) = (s0.server_rss, s1.server_rss) {
        if subscribed > 0 {
            report.server_rss_per_connection_bytes =
                Some((b as f64 - a as f64) / subscribed as f64);
        }
    }
    if let Some(cpu) = procfs::server_cpu_delta(&s0, &s_conn) {
        report.server_cpu_us = Some(cpu);
        if subscribed > 0 {
            report.server_cpu_us_per_connect = Some(cpu as f64 / subscribed as f64);
        }
    }
    report.generator_cpu_us = procfs::self_cpu_delta(&s0, &s1);
    let closed = Counters::get(&ctx.counters.closed_early);
    report.closed_early = Some(closed);
    if closed > 0 {
        report.problem(format!(
            "{closed} connections were closed by the server while idle"
        ));
    }
}
