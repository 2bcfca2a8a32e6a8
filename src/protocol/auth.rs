//! Subscription, sign-in and webhook signatures (PROTOCOL.md 1.7, 1.8, 2.3).
//!
//! `auth = "<app_key>:" + hex(HMAC-SHA256(secret, string_to_sign))`. Verification compares the
//! *whole* `key:sig` string in constant time so that neither the key nor a prefix of the
//! signature can be probed byte by byte through response timing.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Raw HMAC-SHA256 tag.
pub(crate) fn hmac_sha256(secret: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length (long keys are hashed), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(message);
    let tag = mac.finalize().into_bytes();
    let mut out = [0u8; 32];
    out.copy_from_slice(&tag);
    out
}

/// Lowercase hex of HMAC-SHA256(`secret`, `message`), the encoding every Pusher SDK uses.
pub fn hmac_sha256_hex(secret: &[u8], message: &[u8]) -> String {
    hex::encode(hmac_sha256(secret, message))
}

/// Compare two byte strings without an early exit on the first differing byte.
///
/// A length mismatch returns `false` immediately: the length of a `key:hexsig` string is public
/// (key is public, signature is always 64 hex chars), only the content must not leak.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold back into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// String to sign for `private-*`, `private-encrypted-*` (`socket_id:channel`) and `presence-*`
/// (`socket_id:channel:channel_data`).
///
/// `channel_data` must be **exactly the string the client sent**: pysher produces it with Python
/// `json.dumps` (spaces after `,` and `:`), so re-serialising the parsed JSON would break the HMAC.
pub fn channel_string_to_sign(
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
) -> String {
    match channel_data {
        Some(data) => format!("{socket_id}:{channel}:{data}"),
        None => format!("{socket_id}:{channel}"),
    }
}

/// String to sign for `pusher:signin`: `socket_id::user::user_data`, `user_data` as sent.
pub fn user_string_to_sign(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

/// The `auth` value an app server would produce: `key:hex(HMAC-SHA256(secret, string_to_sign))`.
///
/// Note the single colon: the docs' `<APP_KEY>::user::<sig>` sign-in example is an erratum.
pub fn expected_auth(key: &str, secret: &str, string_to_sign: &str) -> String {
    format!(
        "{key}:{}",
        hmac_sha256_hex(secret.as_bytes(), string_to_sign.as_bytes())
    )
}

/// Whether `provided` equals `key:hexsig` for `string_to_sign`, compared in constant time.
///
/// An uppercase-hex signature is rejected: every SDK emits lowercase, and Pusher compares the
/// exact string.
pub fn verify_auth(key: &str, secret: &str, string_to_sign: &str, provided: &str) -> bool {
    let expected = expected_auth(key, secret, string_to_sign);
    constant_time_eq(expected.as_bytes(), provided.as_bytes())
}

/// `X-Pusher-Signature` header for a webhook: hex HMAC-SHA256 of the raw body bytes sent.
pub fn webhook_signature(secret: &str, body: &[u8]) -> String {
    hmac_sha256_hex(secret.as_bytes(), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Golden vectors from PROTOCOL.md 1.7 (Node `pusher` SDK, checked with Python hmac).
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const SOCKET: &str = "1234.1234";

    const PRIVATE_SIG: &str = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
    const USER_SIG: &str = "4708d583dada6a56435fb8bc611c77c359a31eebde13337c16ab43aa6de336ba";
    const PRESENCE_SIG: &str = "31935e7d86dba64c2a90aed31fdc61869f9b22ba9d8863bba239c03ca481bc80";
    const PRESENCE_DATA: &str = r#"{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#;

    #[test]
    fn private_channel_golden_vector() {
        let s = channel_string_to_sign(SOCKET, "private-foobar", None);
        assert_eq!(s, "1234.1234:private-foobar");
        assert_eq!(
            hmac_sha256_hex(SECRET.as_bytes(), s.as_bytes()),
            PRIVATE_SIG
        );
        assert_eq!(
            expected_auth(KEY, SECRET, &s),
            format!("{KEY}:{PRIVATE_SIG}")
        );
        assert!(verify_auth(
            KEY,
            SECRET,
            &s,
            &format!("{KEY}:{PRIVATE_SIG}")
        ));
    }

    #[test]
    fn user_signin_golden_vector() {
        let s = user_string_to_sign(SOCKET, r#"{"id":"12345"}"#);
        assert_eq!(s, r#"1234.1234::user::{"id":"12345"}"#);
        assert_eq!(expected_auth(KEY, SECRET, &s), format!("{KEY}:{USER_SIG}"));
        assert!(verify_auth(KEY, SECRET, &s, &format!("{KEY}:{USER_SIG}")));
    }

    /// The docs print `afaed369…` for this vector; that is an erratum (PROTOCOL.md 1.7).
    #[test]
    fn presence_channel_golden_vector_not_the_docs_erratum() {
        let s = channel_string_to_sign(SOCKET, "presence-foobar", Some(PRESENCE_DATA));
        assert_eq!(
            s,
            r#"1234.1234:presence-foobar:{"user_id":10,"user_info":{"name":"Mr. Channels"}}"#
        );
        assert_eq!(
            expected_auth(KEY, SECRET, &s),
            format!("{KEY}:{PRESENCE_SIG}")
        );
        assert!(!expected_auth(KEY, SECRET, &s).contains("afaed369"));
    }

    #[test]
    fn channel_data_is_signed_exactly_as_sent() {
        // pysher's json.dumps spacing: a different string, so a different signature.
        let spaced = r#"{"user_id": 10, "user_info": {"name": "Mr. Channels"}}"#;
        let s = channel_string_to_sign(SOCKET, "presence-foobar", Some(spaced));
        let auth = expected_auth(KEY, SECRET, &s);
        assert!(verify_auth(KEY, SECRET, &s, &auth));
        assert_ne!(auth, format!("{KEY}:{PRESENCE_SIG}"));
        // A signature made over the compact form does not verify the spaced form.
        assert!(!verify_auth(
            KEY,
            SECRET,
            &s,
            &format!("{KEY}:{PRESENCE_SIG}")
        ));
    }

    #[test]
    fn verify_rejects_every_kind_of_mismatch() {
        let s = channel_string_to_sign(SOCKET, "private-foobar", None);
        let good = format!("{KEY}:{PRIVATE_SIG}");
        assert!(verify_auth(KEY, SECRET, &s, &good));
        // Wrong key prefix with the right signature.
        assert!(!verify_auth(
            KEY,
            SECRET,
            &s,
            &format!("otherkey:{PRIVATE_SIG}")
        ));
        // Signature alone, without the key.
        assert!(!verify_auth(KEY, SECRET, &s, PRIVATE_SIG));
        // Docs erratum 2 format.
        assert!(!verify_auth(
            KEY,
            SECRET,
            &s,
            &format!("{KEY}::user::{PRIVATE_SIG}")
        ));
        // Uppercase hex.
        assert!(!verify_auth(
            KEY,
            SECRET,
            &s,
            &format!("{KEY}:{}", PRIVATE_SIG.to_uppercase())
        ));
        // One flipped hex digit at the end, truncated, extended, empty.
        let mut flipped = good.clone();
        flipped.pop();
        flipped.push('5');
        assert!(!verify_auth(KEY, SECRET, &s, &flipped));
        assert!(!verify_auth(KEY, SECRET, &s, &good[..good.len() - 1]));
        assert!(!verify_auth(KEY, SECRET, &s, &format!("{good}0")));
        assert!(!verify_auth(KEY, SECRET, &s, ""));
        // Another socket id (replay onto a different connection) or channel.
        let replay = channel_string_to_sign("1234.1235", "private-foobar", None);
        assert!(!verify_auth(KEY, SECRET, &replay, &good));
        let other_channel = channel_string_to_sign(SOCKET, "private-foobaz", None);
        assert!(!verify_auth(KEY, SECRET, &other_channel, &good));
        // Wrong secret.
        assert!(!verify_auth(KEY, "not-the-secret", &s, &good));
    }

    #[test]
    fn constant_time_eq_semantics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn hmac_matches_rfc4231_test_case_2() {
        // Independent check of the primitive (RFC 4231 §4.3).
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn webhook_signature_is_hmac_of_raw_body() {
        let body = br#"{"time_ms":1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        let sig = webhook_signature(SECRET, body);
        assert_eq!(sig, hmac_sha256_hex(SECRET.as_bytes(), body));
        assert_eq!(sig.len(), 64);
        assert!(sig
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        // Any change to the body (even whitespace) changes the signature.
        let reformatted = br#"{"time_ms": 1327078148132,"events":[{"name":"channel_occupied","channel":"test_channel"}]}"#;
        assert_ne!(sig, webhook_signature(SECRET, reformatted));
    }
}
