//! The `sockudo` binary: load configuration, start the shards, stop cleanly on SIGTERM/SIGINT.

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use sockudo::config::{self, ConfigError};
use sockudo::{logging, server::Server};
use std::process::ExitCode;

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
    match run(loaded.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("sockudo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: the configuration is valid (errors exit with status 2 before this); print it, secrets masked.
fn check_config(loaded: &config::Loaded) -> ExitCode {
    print_stdout(&sockudo::check_config::report(loaded));
    ExitCode::SUCCESS
}

fn print_stdout(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{text}");
}

fn run(config: config::Config) -> anyhow::Result<()> {
    // Register before starting shards so that a signal during start-up is not lost.
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;
    let addr = format!("{}:{}", config.host, config.port);
    let server = Server::start(config)?;
    tracing::info!(%addr, shards = server.nr_shards, "sockudo ready");
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "stopping");
    }
    server.stop();
    tracing::info!("stopped");
    Ok(())
}
