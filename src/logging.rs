//! Log output: human or JSON lines on stderr, level from `RUST_LOG` or `DEBUG`.
//!
//! ANSI colours are used only when stderr is a terminal (never in files or journald), and only when
//! `logging.colors_enabled` allows them. The level filter can be replaced at run time ([`reload_level`], SIGHUP).

use crate::config::{Config, LogFormat};
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// True when log lines should carry ANSI colour codes.
pub fn use_colors(colors_enabled: bool, stderr_is_terminal: bool) -> bool {
    colors_enabled && stderr_is_terminal
}

/// The filter for `config`: `RUST_LOG` when set (it always wins), otherwise `debug` or `info`.
fn filter_for(config: &Config) -> EnvFilter {
    let default_level = if config.debug { "debug" } else { "info" };
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level))
}

/// Installs the global subscriber; call once, first thing.
pub fn init(config: &Config) {
    let (filter, handle) = reload::Layer::new(filter_for(config));
    let ansi = use_colors(
        config.logging.colors_enabled,
        std::io::stderr().is_terminal(),
    );
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(config.logging.include_target)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match config.logging.output_format {
        LogFormat::Json => registry.with(fmt.json()).try_init(),
        LogFormat::Human => registry.with(fmt).try_init(),
    };
    match result {
        Ok(()) => {
            let _ = FILTER.set(handle);
        }
        Err(e) => eprintln!("logging already initialised: {e}"),
    }
}

/// Applies the level of a reloaded configuration (`debug`, or `RUST_LOG` which always wins).
pub fn reload_level(config: &Config) -> Result<(), String> {
    let Some(handle) = FILTER.get() else {
        return Err("logging is not initialised".into());
    };
    handle
        .reload(filter_for(config))
        .map_err(|e| format!("cannot change the log level: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_and_only_when_enabled() {
        assert!(use_colors(true, true));
        assert!(
            !use_colors(true, false),
            "files and journald get no escapes"
        );
        assert!(!use_colors(false, true));
    }
}
