//! Log output: human or JSON lines on stderr, level from `RUST_LOG` or `DEBUG`.

use crate::config::{Config, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; call once, first thing.
pub fn init(config: &Config) {
    let default_level = if config.debug { "debug" } else { "info" };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(config.logging.include_target)
        .with_ansi(config.logging.colors_enabled);
    let result = match config.logging.output_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => builder.try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}
