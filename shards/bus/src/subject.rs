//! NATS subjects for topics: `<prefix>.<token>`, the topic escaped into one subject token. `.` separates
//! tokens, `*` and `>` are wildcards and whitespace ends a subject, while Pusher channel names may contain
//! `.` (and callers' topics anything), so every byte outside a safe set is written as `%XX` (upper-case hex),
//! `%` included. The mapping is injective, so two topics never share a subject.

use std::fmt::Write;

/// Whether `byte` stands for itself in a token.
fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'_' | b'=' | b'@' | b',' | b';' | b':' | b'#' | b'+'
        )
}

/// The subject token for `topic` (`%` alone for the empty topic, which has no other form).
pub(crate) fn escape_token(topic: &str) -> String {
    if topic.is_empty() {
        return "%".to_string();
    }
    let mut token = String::with_capacity(topic.len());
    for &byte in topic.as_bytes() {
        if is_plain(byte) {
            token.push(byte as char);
        } else {
            let _ = write!(token, "%{byte:02X}");
        }
    }
    token
}

/// The subject for `topic` under `prefix`.
pub(crate) fn subject(prefix: &str, topic: &str) -> String {
    format!("{prefix}.{}", escape_token(topic))
}

/// Checks a subject prefix: one or more non-empty tokens separated by `.`, without wildcards or whitespace.
pub(crate) fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("the NATS prefix is empty".into());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(format!("the NATS prefix {prefix:?} has an empty token"));
        }
        if token
            .bytes()
            .any(|b| b == b'*' || b == b'>' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(format!(
                "the NATS prefix {prefix:?} contains a wildcard, whitespace or control character"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_channel_names_stay_readable() {
        assert_eq!(escape_token("presence-room_1"), "presence-room_1");
        assert_eq!(subject("sockudo", "node-3f2a"), "sockudo.node-3f2a");
    }

    #[test]
    fn separators_wildcards_and_whitespace_become_one_token() {
        let token = escape_token("ch.app 1.*.>\t%");
        assert_eq!(token, "ch%2Eapp%201%2E%2A%2E%3E%09%25");
        assert!(!token.contains(['.', '*', '>', ' ', '\t']));
    }

    #[test]
    fn non_ascii_is_escaped_per_byte() {
        assert_eq!(escape_token("é"), "%C3%A9");
    }

    #[test]
    fn distinct_topics_get_distinct_tokens() {
        let topics = ["a.b", "a%2Eb", "a_b", "", "%", "a b", "a+b"];
        let tokens: std::collections::HashSet<String> =
            topics.iter().map(|t| escape_token(t)).collect();
        assert_eq!(tokens.len(), topics.len());
    }

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("sockudo").is_ok());
        assert!(check_prefix("sockudo.prod").is_ok());
        for bad in ["", "a..b", ".a", "a.*", "a b", "a.>"] {
            assert!(check_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }
}
