//! [`ConfigError`]: everything that can stop the server from starting with a usable configuration.
//!
//! Every `Display` is one line a human can act on: it names the flag, the environment variable or the
//! config key (with its full path) that is wrong.

use std::path::PathBuf;

/// Why [`load`](super::load) did not return a configuration.
///
/// `Help` and `Version` are not failures: the binary prints them and exits with status 0.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--help` / `-h` was given; the payload is the full help text to print.
    #[error("{0}")]
    Help(String),
    /// `--version` / `-V` was given; `Display` is the version line to print.
    #[error("sockudo {}", env!("CARGO_PKG_VERSION"))]
    Version,
    /// A command-line problem: unknown flag, missing or bad value.
    #[error("{0}")]
    Cli(String),
    /// An environment variable has a value that cannot be used.
    #[error("{var}: {message}")]
    Env {
        /// The variable's name, e.g. `PORT`.
        var: String,
        /// What is wrong, e.g. `"abc" is not a valid port`.
        message: String,
    },
    /// Only some of `SOCKUDO_DEFAULT_APP_{ID,KEY,SECRET}` are set.
    #[error(
        "SOCKUDO_DEFAULT_APP_ID, SOCKUDO_DEFAULT_APP_KEY and SOCKUDO_DEFAULT_APP_SECRET must be set together; missing: {}",
        missing.join(", ")
    )]
    PartialDefaultApp {
        /// The variables of the three that are unset (or empty).
        missing: Vec<&'static str>,
    },
    /// A config file named with `--config` or `CONFIG_FILE` does not exist.
    #[error("config file {} does not exist", path.display())]
    FileNotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The config file exists but could not be read.
    #[error("config file {}: {message}", path.display())]
    FileRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
    /// The config file's name does not end in `.json` or `.toml`.
    #[error("config file {}: unsupported format (the name must end in .json or .toml)", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// The file uses `${VAR}` for a variable that is not set and gives no default.
    #[error("{}: ${{{var}}} is used but the variable is not set (write ${{{var}:-value}} for a default)", path.display())]
    UnsetVariable {
        /// The file.
        path: PathBuf,
        /// The variable's name.
        var: String,
    },
    /// The file is not valid JSON / TOML.
    #[error("{}: syntax error: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The file has a key this server does not know (typo, or a key from another server).
    #[error("{}: unknown key \"{key}\"{}", path.display(), did_you_mean(suggestion))]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// Full dotted path of the key, e.g. `app_manager.array.apps[0].max_conection`.
        key: String,
        /// The closest known key (by edit distance over the key catalogue).
        suggestion: Option<String>,
    },
    /// A key in the file has a value of the wrong type or shape.
    #[error("{}: \"{key}\": {message}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// Full dotted path of the key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// The merged configuration is not usable (checked after file, CLI and environment are applied).
    #[error("{key}: {message}")]
    Invalid {
        /// Full dotted path of the offending setting, e.g. `app_manager.array.apps[1].key`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Env`].
    pub(crate) fn env(var: &str, message: impl Into<String>) -> Self {
        ConfigError::Env {
            var: var.to_string(),
            message: message.into(),
        }
    }

    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

fn did_you_mean(suggestion: &Option<String>) -> String {
    suggestion
        .as_ref()
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default()
}
