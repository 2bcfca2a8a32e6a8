//! Screens a parsed config file against the [catalogue](super::catalogue) before the typed parse.
//!
//! Every key must be in the catalogue, else the file is refused naming the key and the closest known
//! one. Keys of Sockudo features this server does not have (`ignored`) are type-checked, removed from
//! the tree and reported, so the strict typed parse only sees keys the model implements. Sections that
//! hold only ignored keys are removed whole.

use std::path::Path;

use serde_json::{Map, Value};

use super::catalogue::{catalogue, describe, Catalogue, Suggestion};
use super::error::ConfigError;

/// Which keys of a file (full paths with list indexes) were applied and which ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Keys that reached the configuration (honoured or this server's own), in file order.
    pub honoured: Vec<String>,
    /// Sockudo keys of features this server does not have, in file order.
    pub ignored: Vec<String>,
    /// Sockudo environment variables of such features that are set.
    pub ignored_env: Vec<String>,
}

impl KeyReport {
    /// The single startup warning listing everything ignored, or `None` when nothing was.
    pub fn warning(&self) -> Option<String> {
        let total = self.ignored.len() + self.ignored_env.len();
        if total == 0 {
            return None;
        }
        let mut parts = Vec::new();
        if !self.ignored.is_empty() {
            parts.push(format!("keys {}", group_by_parent(&self.ignored)));
        }
        if !self.ignored_env.is_empty() {
            parts.push(format!("environment {}", self.ignored_env.join(", ")));
        }
        Some(format!(
            "WARNING: {total} Sockudo setting(s) of features this server does not have were ignored \
             (see config/README.md): {}",
            parts.join("; ")
        ))
    }
}

/// `a.b.x, a.b.y, c, d` -> `a.b.{x,y}, c, d` (input order kept, siblings grouped).
fn group_by_parent(paths: &[String]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for path in paths {
        let (parent, leaf) = path.rsplit_once('.').unwrap_or(("", path));
        match groups.iter_mut().find(|(p, _)| *p == parent) {
            Some((_, leaves)) => leaves.push(leaf),
            None => groups.push((parent, vec![leaf])),
        }
    }
    groups
        .into_iter()
        .map(|(parent, leaves)| {
            if parent.is_empty() {
                leaves.join(", ")
            } else if leaves.len() == 1 {
                format!("{parent}.{}", leaves[0])
            } else {
                format!("{parent}.{{{}}}", leaves.join(","))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks every key of `root` (a file's top-level object) and removes the ignored ones.
pub fn screen(root: &mut Value, file: &Path) -> Result<KeyReport, ConfigError> {
    let mut report = KeyReport::default();
    if let Value::Object(map) = root {
        Walk {
            catalogue: catalogue(),
            file,
            report: &mut report,
        }
        .map(map, "", "")?;
    }
    Ok(report)
}

struct Walk<'a> {
    catalogue: &'a Catalogue,
    file: &'a Path,
    report: &'a mut KeyReport,
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

impl Walk<'_> {
    /// `map` sits at catalogue path `at` (with `[]`/`*`) and file path `actual` (with indexes).
    fn map(
        &mut self,
        map: &mut Map<String, Value>,
        at: &str,
        actual: &str,
    ) -> Result<(), ConfigError> {
        let mut remove = Vec::new();
        for (name, value) in map.iter_mut() {
            let actual_child = join(actual, name);
            let known = |path: &String| {
                self.catalogue.key(path).is_some()
                    || self.catalogue.is_section(path)
                    || self.catalogue.is_section(&format!("{path}[]"))
            };
            let Some(path) = [join(at, name), join(at, "*")].into_iter().find(known) else {
                return Err(self.unknown(&join(at, name), actual, actual_child));
            };
            let list = format!("{path}[]");
            if value.is_array() && self.catalogue.is_section(&list) {
                let items = value.as_array_mut().into_iter().flatten();
                for (i, item) in items.enumerate() {
                    let actual_item = format!("{actual_child}[{i}]");
                    let Value::Object(item) = item else {
                        return Err(self.bad(
                            actual_item,
                            format!("expected a table/object, found {}", describe(item)),
                        ));
                    };
                    self.map(item, &list, &actual_item)?;
                }
                if !self.catalogue.has_applied_keys_below(&list) {
                    if value.as_array().is_some_and(Vec::is_empty) {
                        self.report.ignored.push(actual_child);
                    }
                    remove.push(name.clone());
                }
            } else if value.is_object() && self.catalogue.is_section(&path) {
                let was_empty = value.as_object().is_some_and(Map::is_empty);
                if let Value::Object(inner) = value {
                    self.map(inner, &path, &actual_child)?;
                }
                if !self.catalogue.has_applied_keys_below(&path) {
                    if was_empty {
                        self.report.ignored.push(actual_child);
                    }
                    remove.push(name.clone());
                }
            } else if let Some(key) = self.catalogue.key(&path) {
                if key.status.is_applied() {
                    // The typed parse checks these (app records are lenient: "100" for 100).
                    self.report.honoured.push(actual_child);
                } else {
                    if let Some(message) = key.ty.mismatch(value) {
                        return Err(self.bad(actual_child, message));
                    }
                    self.report.ignored.push(actual_child);
                    remove.push(name.clone());
                }
            } else {
                let wanted = if self.catalogue.is_section(&path) {
                    "a table/object"
                } else {
                    "a list of tables/objects"
                };
                return Err(self.bad(
                    actual_child,
                    format!("expected {wanted}, found {}", describe(value)),
                ));
            }
        }
        for name in remove {
            map.remove(&name);
        }
        Ok(())
    }

    fn unknown(&self, path: &str, actual_parent: &str, actual: String) -> ConfigError {
        let suggestion = self.catalogue.closest(path).map(|s| match s {
            Suggestion::Sibling(leaf) => join(actual_parent, &leaf),
            Suggestion::Path(path) => path,
        });
        ConfigError::UnknownKey {
            path: self.file.to_path_buf(),
            key: actual,
            suggestion,
        }
    }

    fn bad(&self, key: String, message: String) -> ConfigError {
        ConfigError::BadValue {
            path: self.file.to_path_buf(),
            key,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn siblings_are_grouped_in_the_warning() {
        let paths = [
            "push.retry.jitter",
            "push.retry.max_attempts",
            "mode",
            "ssl.enabled",
            "path_prefix",
        ];
        let report = KeyReport {
            ignored: paths.iter().map(|p| p.to_string()).collect(),
            ignored_env: vec!["CORS_ORIGINS".into()],
            ..KeyReport::default()
        };
        assert_eq!(
            report.warning().expect("a warning"),
            "WARNING: 6 Sockudo setting(s) of features this server does not have were ignored \
             (see config/README.md): keys push.retry.{jitter,max_attempts}, mode, path_prefix, \
             ssl.enabled; environment CORS_ORIGINS"
        );
        assert_eq!(KeyReport::default().warning(), None);
    }

    #[test]
    fn ignored_sections_are_removed_whole_and_applied_ones_kept() {
        let mut tree = json!({
            "cors": {},
            "adapter": {"driver": "local", "kafka": {"brokers": []}},
            "app_manager": {"array": {"apps": []}},
            "apps": []
        });
        let report = screen(&mut tree, Path::new("c.json")).expect("known keys");
        assert_eq!(
            tree,
            json!({"adapter": {"driver": "local"}, "app_manager": {"array": {"apps": []}}})
        );
        assert_eq!(report.honoured, vec!["adapter.driver"]);
        assert_eq!(
            report.ignored,
            vec!["adapter.kafka.brokers", "apps", "cors"]
        );
    }
}
