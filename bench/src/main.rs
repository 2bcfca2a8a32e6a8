//! sockudo-bench: a loopback-only load generator for Pusher-protocol (v7) servers.

mod cli;
mod net;
mod procfs;
mod pusher;
mod report;
mod rest;
mod scenarios;
mod stats;
mod ws;

use anyhow::{Context, Result};
use clap::Parser;
use cli::{Cli, Scenario};
use report::Report;
use scenarios::Ctx;
use std::sync::Arc;
use std::time::Duration;

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    let fd_limit = net::raise_fd_limit();
    let mut common = cli.common;
    if let Scenario::ClientEvents(load) = &cli.scenario {
        if load.multi.is_used() {
            anyhow::bail!("--listen-only, --ready-file, --start-file, --done-file and --wait-done are for fanout only");
        }
    }
    if matches!(cli.scenario, Scenario::ClientEvents(_)) {
        common.private = true; // client events are only allowed on private/presence channels
    }
    let tls = common.ca.as_deref().map(net::tls_client).transpose()?;
    let ws = common
        .url
        .split(',')
        .map(|u| net::resolve(u.trim(), ["ws", "wss"], tls.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let http_url = common.http_url.clone().unwrap_or_else(|| {
        let scheme = if ws[0].tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", ws[0].host_header)
    });
    let http = net::resolve(&http_url, ["http", "https"], tls.as_ref())?;
    let n_sources = if common.sources == 0 {
        net::auto_sources(common.connections)
    } else {
        common.sources
    };
    let sources = if ws.iter().all(|t| t.addr.is_ipv4()) {
        net::source_addrs(n_sources)
    } else {
        Vec::new()
    };
    if (common.connections as u64) + 64 > fd_limit {
        eprintln!(
            "warning: {} connections need more file descriptors than the limit ({fd_limit})",
            common.connections
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.workers.max(1))
        .enable_all()
        .build()
        .context("building the tokio runtime")?;

    let mut report = Report {
        scenario: match &cli.scenario {
            Scenario::Idle { .. } => "idle",
            Scenario::Fanout(_) => "fanout",
            Scenario::Churn { .. } => "churn",
            Scenario::ClientEvents(_) => "client-events",
        }
        .to_string(),
        target: common.url.clone(),
        connections: common.connections,
        channels: common.channels.max(1),
        private: common.private,
        sources: sources.len(),
        workers: common.workers.max(1),
        ..Report::default()
    };
    let json = common.json;
    let global = Duration::from_secs(common.timeout);
    let ctx = Arc::new(Ctx::new(common, ws, http, sources));

    let finished = rt.block_on(async {
        let progress = scenarios::spawn_progress(&ctx);
        let work = async {
            match cli.scenario {
                Scenario::Idle { hold } => {
                    scenarios::idle::run(ctx.clone(), hold, &mut report).await
                }
                Scenario::Fanout(load) => {
                    scenarios::fanout::run(ctx.clone(), load, &mut report).await
                }
                Scenario::Churn { duration } => {
                    scenarios::churn::run(ctx.clone(), duration, &mut report).await
                }
                Scenario::ClientEvents(load) => {
                    scenarios::client_events::run(ctx.clone(), load, &mut report).await
                }
            }
        };
        let r = tokio::time::timeout(global, work).await;
        scenarios::clear_progress(progress);
        r.is_ok()
    });
    if !finished {
        eprintln!(
            "error: global timeout of {}s expired; aborting (subscribed {}, delivered {})",
            global.as_secs(),
            stats::Counters::get(&ctx.counters.subscribed),
            stats::Counters::get(&ctx.counters.delivered)
        );
        return Ok(2);
    }
    report.subscribed = stats::Counters::get(&ctx.counters.subscribed);
    report.connect_errors = stats::Counters::get(&ctx.counters.connect_errors);
    if report.connect_errors > 0 {
        let msg = format!(
            "{} connections failed to connect or subscribe",
            report.connect_errors
        );
        report.problem(msg);
    }
    report.ok = report.problems.is_empty();
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_table());
    }
    // Don't wait for the runtime to wind down lingering sockets.
    std::mem::forget(rt);
    Ok(if report.ok { 0 } else { 1 })
}
