//! The configuration loader: a JSON or TOML file (first byte picks which) or environment variables (`KEY=value`
//! lines), through parsing, merging and validation. It must answer with a config or an error, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let (args, env): (Vec<String>, HashMap<String, String>) = match mode % 3 {
        0 => (
            vec!["sockudo".into(), "--config".into(), "fuzz.json".into()],
            HashMap::new(),
        ),
        1 => (
            vec!["sockudo".into(), "--config".into(), "fuzz.toml".into()],
            HashMap::new(),
        ),
        _ => (
            vec!["sockudo".into()],
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ),
    };
    let lookup = |k: &str| env.get(k).cloned();
    let read = |_: &Path| Ok(text.to_owned());
    if let Ok(loaded) = sockudo::config::load_with(&args, &lookup, &read) {
        let _ = format!("{:?}", loaded.config);
    }
});
