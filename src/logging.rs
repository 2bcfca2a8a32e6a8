//! Log output: human or JSON lines on stderr, level from `RUST_LOG`, Sockudo's `SOCKUDO_LOG_DEBUG` /
//! `SOCKUDO_LOG_PROD`, or `DEBUG`.
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

/// The filter for `config`: `RUST_LOG` when set (it always wins), otherwise Sockudo's
/// `SOCKUDO_LOG_DEBUG` (debug on) or `SOCKUDO_LOG_PROD` (debug off), otherwise `debug` or `info`.
fn filter_for(config: &Config) -> EnvFilter {
    let var = |name: &str| std::env::var(name).ok();
    let directives = filter_directives(
        config.debug,
        var("RUST_LOG"),
        var("SOCKUDO_LOG_DEBUG"),
        var("SOCKUDO_LOG_PROD"),
    );
    EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(default_level(config.debug)))
}

fn default_level(debug: bool) -> &'static str {
    if debug {
        "debug"
    } else {
        "info"
    }
}

/// Which filter text applies; an unset or blank variable counts as absent.
fn filter_directives(
    debug: bool,
    rust_log: Option<String>,
    log_debug: Option<String>,
    log_prod: Option<String>,
) -> String {
    let mode_var = if debug { log_debug } else { log_prod };
    [rust_log, mode_var]
        .into_iter()
        .flatten()
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default_level(debug).to_string())
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
    fn rust_log_wins_then_sockudos_per_mode_filter_then_the_debug_flag() {
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            filter_directives(true, some("warn"), some("trace"), some("error")),
            "warn"
        );
        assert_eq!(
            filter_directives(true, None, some("trace"), some("error")),
            "trace"
        );
        assert_eq!(
            filter_directives(false, some(" "), some("trace"), some("error")),
            "error"
        );
        assert_eq!(filter_directives(true, None, None, some("error")), "debug");
        assert_eq!(filter_directives(false, None, some("trace"), None), "info");
    }

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
