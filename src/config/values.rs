//! Parsing of scalar values given as text (CLI flags, environment variables, strings in app records).
//!
//! Each parser returns the message fragment used in errors (`"abc" is not a valid port`), so the CLI and
//! environment layers word their errors the same way.

use std::str::FromStr;

/// `true/false/1/0/yes/no/on/off`, case-insensitive, surrounding whitespace ignored.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!(
            "\"{text}\" is not a valid boolean (use true/false, 1/0 or yes/no)"
        )),
    }
}

/// A TCP port, `0..=65535` (0 is rejected later by validation, with the key's name).
pub fn parse_port(text: &str) -> Result<u16, String> {
    text.trim()
        .parse::<u16>()
        .map_err(|_| format!("\"{text}\" is not a valid port"))
}

/// A non-negative integer of any unsigned type.
pub fn parse_uint<T: FromStr>(text: &str) -> Result<T, String> {
    text.trim()
        .parse::<T>()
        .map_err(|_| format!("\"{text}\" is not a valid non-negative integer"))
}

/// A comma separated list; items are trimmed and empty items dropped.
pub fn parse_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_the_documented_spellings_in_any_case() {
        for yes in ["true", "TRUE", "1", "yes", "Yes", " on "] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["false", "False", "0", "no", "NO", "off"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        let err = parse_bool("maybe").unwrap_err();
        assert!(err.starts_with("\"maybe\" is not a valid boolean"), "{err}");
    }

    #[test]
    fn ports_and_integers_reject_garbage_with_the_value_quoted() {
        assert_eq!(parse_port("6001"), Ok(6001));
        assert_eq!(parse_port("abc"), Err("\"abc\" is not a valid port".into()));
        assert_eq!(
            parse_port("70000"),
            Err("\"70000\" is not a valid port".into())
        );
        assert_eq!(parse_uint::<u64>(" 42 "), Ok(42));
        assert_eq!(
            parse_uint::<u64>("-1"),
            Err("\"-1\" is not a valid non-negative integer".into())
        );
    }

    #[test]
    fn lists_are_split_on_commas_and_trimmed() {
        assert_eq!(
            parse_list(" https://a.com, *.b.com ,,"),
            vec!["https://a.com".to_string(), "*.b.com".to_string()]
        );
        assert!(parse_list(" , ").is_empty());
    }
}
