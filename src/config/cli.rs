//! Command-line flags. There are no positional arguments, so a first argument that does not start
//! with `-` is taken to be the program name (callers may pass `std::env::args()` whole or without argv[0]).

use super::error::ConfigError;
use super::model::Config;
use super::values::{parse_port, parse_uint};

/// The text printed for `--help`.
pub const HELP: &str = "\
sockudo: Pusher-compatible (protocol v7) WebSocket server

Usage: sockudo [OPTIONS]

Options:
  -c, --config <PATH>   Config file (.toml or .json); env CONFIG_FILE.
                        Default: config/config.toml, then config/config.json, if present
      --host <ADDR>     Listen address (default 0.0.0.0); env HOST
  -p, --port <PORT>     Listen port (default 6001); env PORT
      --shards <N>      Shards / threads, 0 = one per CPU (default 0); env SHARDS
      --debug           Verbose logging; env DEBUG
      --check-config    Load and validate the configuration, print the keys honoured and
                        ignored, exit (status 2 on a configuration error)
  -h, --help            Print this help
  -V, --version         Print the version

Precedence: defaults < config file < command line < environment variables.
";

/// What the command line asks for.
#[derive(Debug, Default, PartialEq)]
pub struct CliArgs {
    /// `--config` / `-c`.
    pub config: Option<String>,
    /// `--host`.
    pub host: Option<String>,
    /// `--port` / `-p`.
    pub port: Option<u16>,
    /// `--shards`.
    pub shards: Option<usize>,
    /// `--debug` (a bare switch).
    pub debug: bool,
    /// `--check-config` (a bare switch).
    pub check_config: bool,
}

impl CliArgs {
    /// Parses `args`. `--help` / `--version` return [`ConfigError::Help`] / [`ConfigError::Version`]
    /// wherever they appear. Values may be given as `--flag value` or `--flag=value`.
    pub fn parse(args: &[String]) -> Result<Self, ConfigError> {
        let args = match args.first() {
            Some(first) if !first.starts_with('-') => &args[1..],
            _ => args,
        };
        if args.iter().any(|a| a == "--help" || a == "-h") {
            return Err(ConfigError::Help(HELP.to_string()));
        }
        if args.iter().any(|a| a == "--version" || a == "-V") {
            return Err(ConfigError::Version);
        }
        let mut out = CliArgs::default();
        let mut rest = args.iter();
        while let Some(arg) = rest.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = || -> Result<String, ConfigError> {
                match inline.clone().or_else(|| rest.next().cloned()) {
                    Some(v) => Ok(v),
                    None => Err(ConfigError::Cli(format!("{flag}: a value is required"))),
                }
            };
            let bad = |message: String| ConfigError::Cli(format!("{flag}: {message}"));
            match flag {
                "--config" | "-c" => out.config = Some(value()?),
                "--host" => out.host = Some(value()?),
                "--port" | "-p" => out.port = Some(parse_port(&value()?).map_err(bad)?),
                "--shards" => out.shards = Some(parse_uint(&value()?).map_err(bad)?),
                "--debug" if inline.is_none() => out.debug = true,
                "--debug" => return Err(bad("takes no value".into())),
                "--check-config" if inline.is_none() => out.check_config = true,
                "--check-config" => return Err(bad("takes no value".into())),
                _ if flag.starts_with('-') => {
                    return Err(ConfigError::Cli(format!(
                        "unknown flag \"{flag}\" (see --help)"
                    )))
                }
                _ => {
                    return Err(ConfigError::Cli(format!(
                        "unexpected argument \"{arg}\" (see --help)"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Overwrites the settings given on the command line.
    pub fn apply(&self, config: &mut Config) {
        if let Some(host) = &self.host {
            config.host = host.clone();
        }
        if let Some(port) = self.port {
            config.port = port;
        }
        if let Some(shards) = self.shards {
            config.shards = shards;
        }
        if self.debug {
            config.debug = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<CliArgs, ConfigError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        CliArgs::parse(&args)
    }

    #[test]
    fn all_flags_in_both_spellings() {
        let long = parse(&[
            "--config",
            "a.toml",
            "--host",
            "127.0.0.1",
            "--port",
            "7000",
            "--shards",
            "3",
            "--debug",
            "--check-config",
        ])
        .expect("parses");
        assert_eq!(
            long,
            CliArgs {
                config: Some("a.toml".into()),
                host: Some("127.0.0.1".into()),
                port: Some(7000),
                shards: Some(3),
                debug: true,
                check_config: true,
            }
        );
        let short = parse(&["sockudo", "-c", "b.json", "-p", "7001"]).expect("parses");
        assert_eq!(short.config.as_deref(), Some("b.json"));
        assert_eq!(short.port, Some(7001));
        assert!(!short.debug);
        let inline = parse(&["--port=7002", "--config=c.toml"]).expect("parses");
        assert_eq!(
            (inline.port, inline.config.as_deref()),
            (Some(7002), Some("c.toml"))
        );
    }

    #[test]
    fn help_and_version_win_over_everything_else() {
        match parse(&["sockudo", "--bogus", "-h"]) {
            Err(ConfigError::Help(text)) => assert!(text.contains("--config <PATH>")),
            other => panic!("expected help, got {other:?}"),
        }
        let err = parse(&["-V"]).unwrap_err();
        assert!(matches!(err, ConfigError::Version));
        assert_eq!(
            err.to_string(),
            format!("sockudo {}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn mistakes_name_the_flag() {
        let msg = |args: &[&str]| parse(args).unwrap_err().to_string();
        assert_eq!(
            msg(&["--prot", "1"]),
            "unknown flag \"--prot\" (see --help)"
        );
        assert_eq!(
            msg(&["--port", "abc"]),
            "--port: \"abc\" is not a valid port"
        );
        assert_eq!(msg(&["-p"]), "-p: a value is required");
        assert_eq!(
            msg(&["--shards", "-1"]),
            "--shards: \"-1\" is not a valid non-negative integer"
        );
        assert_eq!(msg(&["--debug=yes"]), "--debug: takes no value");
        assert_eq!(
            msg(&["--port", "1", "extra"]),
            "unexpected argument \"extra\" (see --help)"
        );
    }

    #[test]
    fn apply_overwrites_only_given_settings() {
        let mut config = Config::default();
        parse(&["--port", "7000", "--debug"])
            .expect("parses")
            .apply(&mut config);
        assert_eq!(config.port, 7000);
        assert!(config.debug);
        assert_eq!(config.host, "0.0.0.0");
        assert_eq!(config.shards, 0);
    }
}
