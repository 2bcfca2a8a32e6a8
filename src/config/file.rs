//! The config file layer: which file, which format, and its strict parse into [`Config`].
//!
//! Reading goes through a caller-supplied function so tests use an in-memory file system.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::catalogue::{catalogue, Suggestion};
use super::compat::sockudo_spellings;
use super::error::ConfigError;
use super::key_check::{screen, KeyReport};
use super::model::Config;

/// Files tried, in order, when none is named (relative to the current directory).
pub const DEFAULT_PATHS: &[&str] = &["config/config.toml", "config/config.json"];

/// Reads a whole file; `ErrorKind::NotFound` means "no such file".
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> io::Result<String>;

/// A config file's syntax, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// `.json`
    Json,
    /// `.toml`
    Toml,
}

impl FileFormat {
    /// The format for `path`'s extension (case-insensitive), or an error naming the path.
    pub fn of(path: &Path) -> Result<Self, ConfigError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("json") => Ok(FileFormat::Json),
            Some("toml") => Ok(FileFormat::Toml),
            _ => Err(ConfigError::UnsupportedFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Finds and reads the config file: the explicit one (must exist), else the first of
/// [`DEFAULT_PATHS`] that exists, else none. Returns the path and its text.
pub fn read(
    explicit: Option<&Path>,
    read_file: ReadFile<'_>,
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    if let Some(path) = explicit {
        FileFormat::of(path)?;
        return match read_file(path) {
            Ok(text) => Ok(Some((path.to_path_buf(), text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ConfigError::FileNotFound {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(read_error(path, e)),
        };
    }
    for candidate in DEFAULT_PATHS {
        let path = Path::new(candidate);
        match read_file(path) {
            Ok(text) => return Ok(Some((path.to_path_buf(), text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_error(path, e)),
        }
    }
    Ok(None)
}

fn read_error(path: &Path, e: io::Error) -> ConfigError {
    ConfigError::FileRead {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Parses `text` (format from `path`'s extension) over the defaults. Returns the config and which keys
/// were applied and which ignored (see [`screen`]).
pub fn parse(path: &Path, text: &str) -> Result<(Config, KeyReport), ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        path: path.to_path_buf(),
        message,
    };
    let mut tree: Value = match FileFormat::of(path)? {
        FileFormat::Json => serde_json::from_str(text).map_err(|e| syntax(e.to_string()))?,
        FileFormat::Toml => toml::from_str(text).map_err(|e| syntax(one_line(&e.to_string())))?,
    };
    if !tree.is_object() {
        return Err(ConfigError::BadValue {
            path: path.to_path_buf(),
            key: "(top level)".into(),
            message: "expected a table/object of settings".into(),
        });
    }
    let report = screen(&mut tree, path)?;
    sockudo_spellings(&mut tree, path)?;
    let config = serde_path_to_error::deserialize(tree).map_err(|e| typed_error(path, e))?;
    Ok((config, report))
}

/// Turns serde's error into [`ConfigError::UnknownKey`] or [`ConfigError::BadValue`] with the full key path.
fn typed_error(path: &Path, err: serde_path_to_error::Error<serde_json::Error>) -> ConfigError {
    let at = match err.path().to_string() {
        root if root == "." => String::new(),
        at => at,
    };
    let message = err.into_inner().to_string();
    if let Some(field) = unknown_field_name(&message) {
        // The path usually already ends at the unknown key; append it when it does not.
        let key = if at == field || at.ends_with(&format!(".{field}")) {
            at
        } else if at.is_empty() {
            field.to_string()
        } else {
            format!("{at}.{field}")
        };
        // The key check normally catches these first; this is the model and catalogue disagreeing.
        let suggestion = match catalogue().closest(&catalogue_form(&key)) {
            Some(Suggestion::Sibling(leaf)) => Some(match key.rsplit_once('.') {
                Some((parent, _)) => format!("{parent}.{leaf}"),
                None => leaf,
            }),
            Some(Suggestion::Path(p)) => Some(p),
            None => None,
        }
        .filter(|s| *s != key);
        return ConfigError::UnknownKey {
            path: path.to_path_buf(),
            key,
            suggestion,
        };
    }
    ConfigError::BadValue {
        path: path.to_path_buf(),
        key: if at.is_empty() {
            "(top level)".into()
        } else {
            at
        },
        message,
    }
}

/// `apps[3].x` -> `apps[].x`: a file path in the catalogue's notation.
fn catalogue_form(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// serde's wording is "unknown field `name`, expected one of ...".
fn unknown_field_name(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split_once('`').map(|(name, _)| name)
}

/// toml's messages span several lines (source excerpt with a caret); keep them on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Result<(Config, KeyReport), ConfigError> {
        parse(Path::new("config/config.json"), text)
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            FileFormat::of(Path::new("a/b.TOML")).ok(),
            Some(FileFormat::Toml)
        );
        assert_eq!(
            FileFormat::of(Path::new("b.json")).ok(),
            Some(FileFormat::Json)
        );
        let err = FileFormat::of(Path::new("conf/sockudo.yaml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config file conf/sockudo.yaml: unsupported format (the name must end in .json or .toml)"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_their_full_path() {
        let cases = [
            (r#"{"prot": 1}"#, "prot"),
            (r#"{"metrics": {"enabeld": true}}"#, "metrics.enabeld"),
            (
                r#"{"app_manager": {"array": {"apps": [{"id": "a", "key": "k", "secret": "s", "max_conection": 5}]}}}"#,
                "app_manager.array.apps[0].max_conection",
            ),
            (
                r#"{"webhooks": {"batching": {"enabled": true, "durration": 5}}}"#,
                "webhooks.batching.durration",
            ),
        ];
        for (text, key) in cases {
            let err = json(text).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!(
                    "config/config.json: unknown key \"{key}\" (did you mean"
                )),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = json(r#"{"port": "x"}"#).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("config/config.json: \"port\": invalid type: string \"x\""),
            "{text}"
        );
        let err = json(r#"{"app_manager": {"array": {"apps": [{"id": "a"}, {"id": "b", "max_connections": "many"}]}}}"#)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "config/config.json: \"app_manager.array.apps[1].max_connections\": \"many\" is not a valid non-negative integer"
        );
        let err = json(r#"{"logging": {"output_format": "xml"}}"#).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"logging.output_format\": unknown variant `xml`"),
            "{err}"
        );
        let err = json("[1, 2]").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config/config.json: \"(top level)\": expected a table/object"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file_on_one_line() {
        let err = json(r#"{"port": 6001,}"#).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        let err = parse(Path::new("x.toml"), "port = = 3").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("x.toml: syntax error: "), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn toml_and_json_fill_the_same_fields_and_keep_defaults() {
        let (from_json, _) =
            json(r#"{"port": 7001, "presence": {"max_members_per_channel": 50}}"#).expect("json");
        let (from_toml, _) = parse(
            Path::new("c.toml"),
            "port = 7001\n[presence]\nmax_members_per_channel = 50\n",
        )
        .expect("toml");
        assert_eq!(from_json, from_toml);
        assert_eq!(from_toml.port, 7001);
        assert_eq!(from_toml.presence.max_members_per_channel, 50);
        assert_eq!(
            from_toml.presence.max_user_id_length, 128,
            "untouched key keeps its default"
        );
        assert_eq!(from_toml.host, "0.0.0.0");
    }

    #[test]
    fn explicit_file_must_exist_and_defaults_are_searched_in_order() {
        let none = |_: &Path| -> io::Result<String> { Err(io::ErrorKind::NotFound.into()) };
        let err = read(Some(Path::new("/etc/sockudo.toml")), &none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config file /etc/sockudo.toml does not exist"
        );
        assert!(read(None, &none).expect("no file is fine").is_none());

        let only_json = |p: &Path| -> io::Result<String> {
            if p == Path::new("config/config.json") {
                Ok("{}".into())
            } else {
                Err(io::ErrorKind::NotFound.into())
            }
        };
        let (path, _) = read(None, &only_json).expect("ok").expect("found");
        assert_eq!(path, Path::new("config/config.json"));

        let both = |_: &Path| -> io::Result<String> { Ok(String::new()) };
        let (path, _) = read(None, &both).expect("ok").expect("found");
        assert_eq!(path, Path::new("config/config.toml"), "TOML is preferred");

        let denied =
            |_: &Path| -> io::Result<String> { Err(io::ErrorKind::PermissionDenied.into()) };
        let err = read(Some(Path::new("c.json")), &denied).unwrap_err();
        assert!(matches!(err, ConfigError::FileRead { .. }), "{err:?}");
    }
}
