//! `--check-config`: the effective configuration as an operator can read it, with secrets masked.

use crate::config::Loaded;
use serde_json::Value;

/// What replaces every secret in the printed configuration.
pub const MASK: &str = "********";

/// The report printed by `--check-config`: where the configuration came from, the notes the loader produced and
/// the effective configuration as pretty JSON with every secret masked.
pub fn report(loaded: &Loaded) -> String {
    let mut value = serde_json::to_value(&loaded.config).unwrap_or(Value::Null);
    mask_secrets(&mut value);
    let mut out = format!("# configuration OK\n# source: {}\n", loaded.source);
    let list = |out: &mut String, title: &str, items: &[String]| {
        out.push_str(&format!("# {title} ({}):\n", items.len()));
        for item in items {
            out.push_str(&format!("#   {item}\n"));
        }
    };
    list(&mut out, "honoured keys", &loaded.keys.honoured);
    list(
        &mut out,
        "ignored keys (Sockudo features this server does not have)",
        &loaded.keys.ignored,
    );
    list(
        &mut out,
        "ignored environment variables",
        &loaded.keys.ignored_env,
    );
    for note in &loaded.notes {
        out.push_str(&format!("# note: {note}\n"));
    }
    out.push_str(&serde_json::to_string_pretty(&value).unwrap_or_default());
    out
}

/// True for a key whose value must never be printed.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["secret", "password", "token", "credential"]
        .iter()
        .any(|word| key.contains(word))
}

/// Masks, in place, every value under a secret-looking key and the user information of every URL
/// (`scheme://user:pass@host` becomes `scheme://********@host`).
pub fn mask_secrets(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_secret_key(key) && !v.is_null() {
                    *v = Value::String(MASK.into());
                } else {
                    mask_secrets(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_secrets),
        Value::String(text) => {
            if let Some(masked) = mask_url_userinfo(text) {
                *text = masked;
            }
        }
        _ => {}
    }
}

fn mask_url_userinfo(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some(format!("{scheme}://{MASK}{}", &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_and_url_credentials_are_masked_everything_else_kept() {
        let mut v = json!({
            "port": 6001,
            "apps": [{"id": "1", "key": "k", "secret": "s3cr3t",
                      "webhooks": [{"url": "https://user:pw@hooks.example/x?a=b"}]}],
            "database": {"password": "pw", "url": "redis://:pw@127.0.0.1:6379/0", "token": null},
            "plain": "https://hooks.example/a@b"
        });
        mask_secrets(&mut v);
        assert_eq!(v["port"], 6001);
        assert_eq!(v["apps"][0]["key"], "k");
        assert_eq!(v["apps"][0]["secret"], MASK);
        assert_eq!(
            v["apps"][0]["webhooks"][0]["url"],
            "https://********@hooks.example/x?a=b"
        );
        assert_eq!(v["database"]["password"], MASK);
        assert_eq!(v["database"]["url"], "redis://********@127.0.0.1:6379/0");
        assert_eq!(v["database"]["token"], Value::Null, "unset stays unset");
        assert_eq!(
            v["plain"], "https://hooks.example/a@b",
            "@ in the path is not userinfo"
        );
    }

    #[test]
    fn report_names_the_source_and_hides_app_secrets() {
        let file = r#"{"app_manager": {"array": {"apps": [{"id": "1", "key": "k", "secret": "hunter2"}]}}}"#;
        let env = |name: &str| (name == "CONFIG_FILE").then(|| "/etc/sockudo/c.json".to_string());
        let loaded = crate::config::load_with(&["--check-config".to_string()], &env, &|_| {
            Ok(file.to_string())
        })
        .expect("loads");
        assert!(loaded.check_only);
        let text = report(&loaded);
        assert!(
            text.starts_with("# configuration OK\n# source: /etc/sockudo/c.json\n"),
            "{text}"
        );
        assert!(text.contains("\"secret\": \"********\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let json_start = text.find('{').expect("json");
        let parsed: Value = serde_json::from_str(&text[json_start..]).expect("valid JSON");
        assert_eq!(parsed["app_manager"]["array"]["apps"][0]["key"], "k");
    }
}
