//! Sockudo spellings of settings this server names differently, rewritten after the
//! [key check](super::key_check) and before the typed parse: `metrics.driver = "prometheus"` and
//! `metrics.prometheus.prefix` (this server: `metrics.prometheus_prefix`).

use serde_json::{Map, Value};

use super::error::ConfigError;

/// Rewrites Sockudo-only spellings in the (already key-checked) tree. `file` is only used in errors.
pub fn sockudo_spellings(root: &mut Value, file: &std::path::Path) -> Result<(), ConfigError> {
    if let Some(metrics) = object_at(root, "metrics") {
        sockudo_metrics_shape(metrics, file)?;
    }
    Ok(())
}

/// Sockudo writes `metrics.driver = "prometheus"` and `metrics.prometheus.prefix`.
fn sockudo_metrics_shape(
    metrics: &mut Map<String, Value>,
    file: &std::path::Path,
) -> Result<(), ConfigError> {
    let bad = |key: &str, message: &str| ConfigError::BadValue {
        path: file.to_path_buf(),
        key: key.to_string(),
        message: message.to_string(),
    };
    if let Some(driver) = metrics.remove("driver") {
        if driver.as_str() != Some("prometheus") {
            return Err(bad("metrics.driver", "only \"prometheus\" is supported"));
        }
    }
    if let Some(prometheus) = metrics.remove("prometheus") {
        let Value::Object(mut prometheus) = prometheus else {
            return Err(bad("metrics.prometheus", "expected a table/object"));
        };
        if let Some(prefix) = prometheus.remove("prefix") {
            if metrics.contains_key("prometheus_prefix") {
                return Err(bad(
                    "metrics.prometheus.prefix",
                    "set either this or metrics.prometheus_prefix, not both",
                ));
            }
            metrics.insert("prometheus_prefix".into(), prefix);
        }
        if let Some(other) = prometheus.keys().next() {
            return Err(ConfigError::UnknownKey {
                path: file.to_path_buf(),
                key: format!("metrics.prometheus.{other}"),
                suggestion: Some("metrics.prometheus.prefix".into()),
            });
        }
    }
    Ok(())
}

fn object_at<'a>(root: &'a mut Value, dotted: &str) -> Option<&'a mut Map<String, Value>> {
    dotted
        .split('.')
        .try_fold(root, |node, part| node.as_object_mut()?.get_mut(part))?
        .as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn sockudo_metrics_spelling_is_mapped() {
        let mut tree = json!({"metrics": {"driver": "prometheus", "prometheus": {"prefix": "x_"}}});
        sockudo_spellings(&mut tree, Path::new("c.json")).expect("ok");
        assert_eq!(tree, json!({"metrics": {"prometheus_prefix": "x_"}}));

        let mut tree = json!({"metrics": {"driver": "statsd"}});
        let err = sockudo_spellings(&mut tree, Path::new("c.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.json: \"metrics.driver\": only \"prometheus\" is supported"
        );

        let mut tree =
            json!({"metrics": {"prometheus_prefix": "a", "prometheus": {"prefix": "b"}}});
        let err = sockudo_spellings(&mut tree, Path::new("c.json")).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
    }
}
