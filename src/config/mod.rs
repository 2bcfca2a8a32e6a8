//! Server configuration: defaults < config file < command-line flags < environment variables.
//!
//! [`load`] is the only entry point. It is pure apart from reading the config file: it does not log
//! (things worth logging come back in [`Loaded::notes`]), does not read the process environment
//! itself (the caller passes a lookup function) and never exits (`--help`/`--version` come back as
//! [`ConfigError::Help`]/[`ConfigError::Version`]).
//!
//! Layout: [`model`] (types and defaults, which are also the file schema), [`app`] (one app record,
//! flat or with Sockudo's nested `policy`), [`catalogue`] (every Sockudo key and whether it is honoured,
//! read from `sockudo_keys.tsv`), `key_check` (a file's keys against the catalogue), `file` (locating and
//! strictly parsing JSON/TOML), `substitute` (`${VAR}` in the file), `compat` (Sockudo spellings), `cli`,
//! `env`, `validate`.

pub mod app;
mod app_record;
pub mod catalogue;
mod cli;
mod compat;
mod env;
mod error;
mod file;
mod key_check;
pub mod model;
mod substitute;
mod validate;
mod values;

#[cfg(test)]
mod catalogue_tests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use app::AppConfig;
pub use cli::HELP;
pub use error::ConfigError;
pub use file::{FileFormat, DEFAULT_PATHS};
pub use key_check::KeyReport;
pub use model::{
    is_memory_driver, AdapterConfig, AppArrayConfig, AppCacheConfig, AppManagerConfig,
    ChannelLimits, Config, DatabaseConfig, DeltaCompressionConfig, DynamoDbDatabaseConfig,
    EventLimits, HttpApiConfig, LogFormat, LoggingConfig, MetricsConfig, PresenceConfig,
    RuntimeConfig, SqlDatabaseConfig, SslConfig, TagFilteringConfig, UnixSocketConfig,
    WebhookBatchingConfig, WebhooksConfig, WebsocketConfig, APP_MANAGER_DRIVERS,
};

/// The result of [`load`].
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Which file was read, if any.
    pub source: ConfigSource,
    /// Messages for the startup log, in order (the one warning listing ignored Sockudo settings,
    /// default/development app). Those starting with `WARNING:` should be logged at warn level.
    pub notes: Vec<String>,
    /// Which file keys were applied and which Sockudo keys / variables were ignored.
    pub keys: KeyReport,
    /// `--check-config`: validate and report, do not start.
    pub check_only: bool,
}

/// Where the file layer came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// No file: defaults, CLI and environment only.
    NoFile,
    /// This file (named by `--config`/`CONFIG_FILE`, or found at a [`DEFAULT_PATHS`] entry).
    File(PathBuf),
}

impl ConfigSource {
    /// The file's path, if a file was read.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigSource::NoFile => None,
            ConfigSource::File(path) => Some(path),
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::NoFile => f.write_str("no config file (defaults, flags and environment)"),
            ConfigSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Builds the configuration from `args` (command-line arguments, with or without the program name)
/// and `env` (an environment lookup, e.g. `&|k| std::env::var(k).ok()`), reading the config file from disk.
pub fn load(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    load_with(args, env, &|path: &Path| std::fs::read_to_string(path))
}

/// [`load`] with the file system replaced by `read_file` (tests pass an in-memory map).
pub fn load_with(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
    read_file: &dyn Fn(&Path) -> io::Result<String>,
) -> Result<Loaded, ConfigError> {
    let cli = cli::CliArgs::parse(args)?;
    let env = env::Env::new(env);
    let explicit = env
        .var(env::CONFIG_FILE)
        .or(cli.config.clone())
        .map(PathBuf::from);

    let (mut config, source, mut keys) = match file::read(explicit.as_deref(), read_file)? {
        Some((path, text)) => {
            let text = substitute::expand(&text, &path, &|name| env.var(name))?;
            let (config, keys) = file::parse(&path, &text)?;
            (config, ConfigSource::File(path), keys)
        }
        None => (
            Config::default(),
            ConfigSource::NoFile,
            KeyReport::default(),
        ),
    };
    cli.apply(&mut config);
    env.apply(&mut config)?;
    keys.ignored_env = env.ignored_sockudo_vars();
    let mut notes: Vec<String> = keys.warning().into_iter().collect();
    if config.app_manager.driver == "array" {
        // Sockudo's shipped files name the inline app list's driver after its key.
        config.app_manager.driver = "memory".into();
    }

    let apps = &mut config.app_manager.array.apps;
    if env.skip_inline_apps()? && !apps.is_empty() {
        notes.push(format!(
            "{} inline app(s) of the config file skipped (SOCKUDO_SKIP_INLINE_APPS / \
             APP_MANAGER_REGISTER_INLINE_APPS)",
            apps.len()
        ));
        apps.clear();
    }
    if let Some(app) = env.default_app()? {
        notes.push(format!(
            "app \"{}\" configured from SOCKUDO_DEFAULT_APP_* environment variables",
            app.id
        ));
        match apps.iter_mut().find(|a| a.id == app.id) {
            Some(existing) => *existing = app,
            None => apps.push(app),
        }
    }
    if apps.is_empty() && config.app_manager.driver == "memory" {
        apps.push(AppConfig::dev_app());
        notes.push(format!(
            "WARNING: no app configured: using development app {}/{} with the public secret \"{}\"; \
             insecure, never use it in production",
            AppConfig::DEV_ID,
            AppConfig::DEV_KEY,
            AppConfig::DEV_SECRET
        ));
    } else if let Some(app) = apps.iter().find(|a| a.secret == AppConfig::DEV_SECRET) {
        notes.push(format!(
            "WARNING: app \"{}\" uses the public development secret \"{}\"; insecure, never use it in production",
            app.id,
            AppConfig::DEV_SECRET
        ));
    }
    validate::validate(&config)?;
    Ok(Loaded {
        config,
        source,
        notes,
        keys,
        check_only: cli.check_config,
    })
}
