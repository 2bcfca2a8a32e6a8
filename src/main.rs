//! The `sockudo` binary: load configuration, start the shards, stop cleanly on SIGTERM/SIGINT.

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sockudo::config::{self, ConfigError};
use sockudo::{logging, server::Server, systemd};
use std::process::ExitCode;
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let loaded = match config::load(&args, &|name| std::env::var(name).ok()) {
        Ok(loaded) => loaded,
        Err(ConfigError::Help(text)) => {
            print_stdout(&text);
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Version) => {
            print_stdout(&format!("sockudo {}", env!("CARGO_PKG_VERSION")));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sockudo: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if loaded.check_only {
        return check_config(&loaded);
    }
    logging::init(&loaded.config);
    // Clients that build TLS configs from the process default (Redis over `rediss://`) need one provider:
    // both ring and aws-lc-rs are compiled in with the AWS backends, so rustls cannot pick one by itself.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match loaded.source.path() {
        Some(path) => tracing::info!(config = %path.display(), "configuration loaded"),
        None => tracing::info!("no configuration file: defaults and environment only"),
    }
    for note in &loaded.notes {
        match note.strip_prefix("WARNING: ") {
            Some(warning) => tracing::warn!("{warning}"),
            None => tracing::info!("{note}"),
        }
    }
    match run(loaded.config, &args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sockudo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: the configuration is valid (errors exit with status 2 before this); print it, secrets masked.
/// With TLS on, the certificate and key are loaded too, so a bad pair fails the check as it would fail the start.
fn check_config(loaded: &config::Loaded) -> ExitCode {
    if loaded.config.ssl.enabled {
        if let Err(e) = sockudo::tls::load(&loaded.config.ssl) {
            eprintln!("sockudo: configuration error: {e}");
            return ExitCode::from(2);
        }
    }
    print_stdout(&sockudo::check_config::report(loaded));
    ExitCode::SUCCESS
}

fn print_stdout(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// Serves until SIGTERM/SIGINT: the first one drains (`/up` 503, then 4200 after `shutdown_grace_period`), a second
/// one closes at once. SIGHUP reloads what can change at run time. systemd hears READY=1 once every shard
/// listens, STATUS= with the connection count, watchdog pings while every shard responds, and STOPPING=1.
fn run(config: config::Config, args: &[String]) -> anyhow::Result<()> {
    // Register before starting shards so that a signal during start-up is not lost.
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("cannot install signal handlers")?;
    let addr = if config.unix_socket.enabled {
        format!("unix:{}", config.unix_socket.path)
    } else {
        format!("{}:{}", config.host, config.port)
    };
    let mut server = Server::start(config.clone())?;
    let mut current = config;
    tracing::info!(%addr, shards = server.nr_shards, "sockudo ready");

    let notifier = systemd::Notifier::from_env().map(Arc::new);
    let supervisor = match &notifier {
        Some(notifier) => {
            let watchdog = systemd::watchdog_interval(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            );
            notifier.notify("READY=1");
            if let Some(every) = watchdog {
                tracing::info!(
                    every_ms = every.as_millis() as u64,
                    "systemd watchdog enabled"
                );
            }
            Some(
                systemd::Supervisor::start(
                    notifier.clone(),
                    watchdog,
                    server.liveness.clone(),
                    server.metrics.clone(),
                )
                .context("cannot start the systemd notify thread")?,
            )
        }
        None => None,
    };

    let (signal_tx, signal_rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal_tx.send(signal).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the signal thread")?;

    let mut draining = false;
    while !(draining && server.shards_stopped()) {
        match signal_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(SIGHUP) => {
                if let Some(notifier) = &notifier {
                    notifier.notify(&systemd::reloading_message());
                }
                reload(&mut server, &mut current, args);
                if let Some(notifier) = &notifier {
                    notifier.notify("READY=1");
                }
            }
            Ok(signal) if !draining => {
                tracing::info!(
                    signal,
                    grace_secs = current.shutdown_grace_period,
                    "draining; a second signal closes connections at once"
                );
                draining = true;
                if let Some(notifier) = &notifier {
                    notifier.notify("STOPPING=1");
                }
                if let Some(supervisor) = &supervisor {
                    supervisor.set_draining();
                }
                server.drain();
            }
            Ok(signal) => {
                tracing::info!(signal, "closing connections now");
                server.close_now();
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the signal thread stopped")
            }
        }
    }
    server.wait();
    if let Some(supervisor) = supervisor {
        supervisor.stop();
    }
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reads the configuration again from the same file, flags and environment and applies what can change
/// while connections stay open: the apps of the memory driver and the log level. A configuration that does not
/// load is refused with its reason and the running one kept.
fn reload(server: &mut Server, current: &mut config::Config, args: &[String]) {
    let loaded = match config::load(args, &|name| std::env::var(name).ok()) {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!("reload refused, keeping the running configuration: {e}");
            return;
        }
    };
    let next = loaded.config;
    if let Err(e) = logging::reload_level(&next) {
        tracing::warn!("reload: {e}");
    }
    if next.app_manager.driver == "memory" {
        for note in server.reload_apps(&next) {
            tracing::warn!("reload: {note}");
        }
    }
    if current.ssl.enabled && next.ssl.enabled {
        match server.reload_tls(&next.ssl) {
            Ok(()) => {
                tracing::info!(cert = %next.ssl.cert_path, key = %next.ssl.key_path, "TLS certificate reloaded");
                current.ssl.cert_path = next.ssl.cert_path.clone();
                current.ssl.key_path = next.ssl.key_path.clone();
            }
            Err(e) => tracing::error!(
                "reload: TLS certificate refused, new connections keep the running one: {e}"
            ),
        }
    }
    let mut restart_only = next.clone();
    restart_only.app_manager.array = current.app_manager.array.clone();
    restart_only.debug = current.debug;
    restart_only.ssl.cert_path = current.ssl.cert_path.clone();
    restart_only.ssl.key_path = current.ssl.key_path.clone();
    if restart_only != *current {
        tracing::warn!(
            "reload: settings other than the apps, the log level and the TLS certificate and key take effect \
             after a restart"
        );
    }
    // Keep what the process runs with for everything but the reloaded parts.
    current.app_manager.array = next.app_manager.array;
    current.debug = next.debug;
    tracing::info!(apps = ?server.app_ids(), "configuration reloaded");
}
