//! `${VAR}` and `${VAR:-default}` in a config file's text, as Sockudo expands them: the variable's
//! value (an empty variable counts as unset), else the default after `:-`. A variable that is unset
//! and has no default is an error naming it, so a placeholder never reaches the server as text.
//! Expansion happens on the raw text, before parsing, so `"port": ${PORT:-6001}` works in JSON too.

use std::path::Path;

use super::error::ConfigError;

/// Expands every `${...}` of `text` with `lookup`. `path` is only used in errors.
pub fn expand(
    text: &str,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            // No closing brace: not a placeholder.
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !is_variable_name(name) {
            out.push_str(&rest[start..start + 2 + end + 1]);
        } else {
            match (lookup(name).filter(|v| !v.trim().is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(ConfigError::UnsetVariable {
                        path: path.to_path_buf(),
                        var: name.to_string(),
                    })
                }
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_variable_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, ConfigError> {
        let env = |name: &str| match name {
            "PORT" => Some("7001".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        expand(text, Path::new("c.json"), &env)
    }

    #[test]
    fn variables_and_defaults_are_expanded() {
        assert_eq!(run(r#"{"port": ${PORT}}"#).unwrap(), r#"{"port": 7001}"#);
        assert_eq!(
            run(r#"{"host": "${HOST:-127.0.0.1}"}"#).unwrap(),
            r#"{"host": "127.0.0.1"}"#
        );
        assert_eq!(run("a ${EMPTY:-x} b ${PORT:-1}").unwrap(), "a x b 7001");
        assert_eq!(run("no placeholders").unwrap(), "no placeholders");
    }

    #[test]
    fn text_that_is_not_a_placeholder_is_kept() {
        assert_eq!(
            run("^price${1}$ and ${} and ${ open").unwrap(),
            "^price${1}$ and ${} and ${ open"
        );
    }

    #[test]
    fn an_unset_variable_without_default_is_an_error() {
        let err = run(r#"{"ssl": {"cert_path": "${CERT}"}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.json: ${CERT} is used but the variable is not set (write ${CERT:-value} for a default)"
        );
    }
}
