//! REST API request signing (PROTOCOL.md 2.2), exactly as the Pusher server SDKs do it.
//!
//! ```text
//! string_to_sign = UPPER(method) "\n" path "\n" join("&", sorted(lower(key) "=" value))
//! auth_signature = hex(HMAC-SHA256(secret, string_to_sign))
//! ```
//!
//! over every query parameter except `auth_signature`, with **decoded, unescaped** values.
//! Interop traps handled here: the Python SDK sends `body_md5` of the empty string on GET (it is
//! accepted and signed like any other parameter), the body MD5 is checked over the raw bytes
//! (never a re-serialised JSON), and `auth_timestamp` must be within ±600 s.

use md5::{Digest, Md5};
use thiserror::Error;

use super::auth::{constant_time_eq, hmac_sha256, hmac_sha256_hex};

/// Maximum accepted distance between `auth_timestamp` and the server clock, either direction.
pub const MAX_SKEW_SECS: u64 = 600;
/// The only `auth_version` any SDK sends.
pub const AUTH_VERSION: &str = "1.0";
/// MD5 of the empty body, which pusher-http-python adds to GET requests.
pub const EMPTY_BODY_MD5: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// Why a REST request failed authentication. Messages are returned to API callers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RestAuthError {
    #[error("missing required query parameter `{0}`")]
    MissingParam(&'static str),
    #[error("auth_timestamp must be a unix time in whole seconds")]
    InvalidTimestamp,
    /// `skew_secs` = `auth_timestamp - now`: positive means the client clock is ahead.
    #[error(
        "auth_timestamp is {skew_secs} s away from server time (allowed: ±600 s); \
         check the client clock"
    )]
    Expired { skew_secs: i64 },
    #[error("auth_key does not match this app")]
    WrongKey,
    #[error("body_md5 does not match the MD5 of the request body")]
    BodyMd5Mismatch,
    #[error("body_md5 is required when the request has a body")]
    MissingBodyMd5,
    #[error("unsupported auth_version `{0}` (expected 1.0)")]
    UnsupportedAuthVersion(String),
    #[error("invalid auth_signature")]
    InvalidSignature,
    #[error("malformed query string: {0}")]
    InvalidQuery(String),
    #[error("query parameter `{0}` appears more than once")]
    DuplicateParam(String),
}

impl RestAuthError {
    /// HTTP status for the error: 400 for a query we cannot even parse, 401 for everything that
    /// is an authentication failure (what Pusher and the SDKs expect).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidQuery(_) => 400,
            _ => 401,
        }
    }
}

/// A request as seen by the HTTP layer, after the query string has been parsed with
/// [`parse_query`].
#[derive(Debug, Clone, Copy)]
pub struct RequestToVerify<'a> {
    /// HTTP method; upper-cased before signing.
    pub method: &'a str,
    /// Path exactly as in the request line, without the query (e.g. `/apps/3/events`): SDKs
    /// sign the full path including `/apps/{id}`.
    pub path: &'a str,
    /// Decoded query parameters, in request order.
    pub query: &'a [(String, String)],
    /// Raw body bytes, as received.
    pub body: &'a [u8],
}

/// Parse a raw query string (without `?`) form-style: split on `&` then the first `=`,
/// percent-decode keys and values, `+` means space.
///
/// Empty segments (`a=1&&b=2`) are skipped and a segment without `=` has an empty value, like
/// every form parser. Invalid `%` escapes and non-UTF-8 results are rejected instead of being
/// passed through, because the decoded value is what gets signed and compared.
pub fn parse_query(raw: &str) -> Result<Vec<(String, String)>, RestAuthError> {
    raw.split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (k, v) = segment.split_once('=').unwrap_or((segment, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (form style), rejecting bad escapes and non-UTF-8.
pub fn percent_decode(s: &str) -> Result<String, RestAuthError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(RestAuthError::InvalidQuery(format!(
                            "invalid percent escape in `{s}`"
                        )))
                    }
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| RestAuthError::InvalidQuery(format!("`{s}` does not decode to valid UTF-8")))
}

const fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Look up a parameter by name, ignoring ASCII case (keys are lower-cased for signing, so
/// `AUTH_KEY` and `auth_key` must mean the same thing).
fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The `auth_key` parameter, so the HTTP layer can check it belongs to the app in the path
/// before calling [`verify`].
pub fn auth_key(query: &[(String, String)]) -> Option<&str> {
    param(query, "auth_key")
}

/// Lowercase hex MD5 of the raw body, as sent in `body_md5`.
pub fn body_md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// The canonical string the signature covers (PROTOCOL.md 2.2 step 2). `auth_signature` is
/// skipped; keys are lower-cased and sorted; values are used decoded, without re-escaping.
pub fn string_to_sign<'a>(
    method: &str,
    path: &str,
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    let mut pairs: Vec<(String, &str)> = params
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .filter(|(k, _)| k != "auth_signature")
        .collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let joined = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}\n{path}\n{joined}", method.to_ascii_uppercase())
}

/// What can be checked of a request before its body is read.
#[derive(Debug, Clone, Copy)]
pub struct SignedHead<'a> {
    /// HTTP method; upper-cased before signing.
    pub method: &'a str,
    /// Path exactly as in the request line, without the query.
    pub path: &'a str,
    /// Decoded query parameters, in request order.
    pub query: &'a [(String, String)],
    /// `Content-Length` of the body still to come.
    pub body_len: usize,
}

/// Verify a signed REST request at time `now_unix_secs`: [`verify_head`], then [`verify_body`].
pub fn verify(
    req: &RequestToVerify<'_>,
    app_key: &str,
    app_secret: &str,
    now_unix_secs: u64,
) -> Result<(), RestAuthError> {
    let head = SignedHead {
        method: req.method,
        path: req.path,
        query: req.query,
        body_len: req.body.len(),
    };
    verify_head(&head, app_key, app_secret, now_unix_secs)?;
    verify_body(req.query, req.body)
}

/// Everything the request line proves, checked before a byte of the body is read (so an unsigned request
/// never makes the server buffer its body).
///
/// Checks, in order: no duplicate parameter (they would make the signed string ambiguous),
/// `auth_key` equals `app_key`, `auth_timestamp` is an integer within ±[`MAX_SKEW_SECS`],
/// `auth_version` is present and `1.0`, `auth_signature` is 64 **lowercase** hex characters (what every SDK
/// sends; the same rule as channel and sign-in signatures), `body_md5` is present when a body follows, and
/// finally the HMAC, compared in constant time. The signature covers `body_md5`, so [`verify_body`] only has to
/// check that the body matches it.
pub fn verify_head(
    req: &SignedHead<'_>,
    app_key: &str,
    app_secret: &str,
    now_unix_secs: u64,
) -> Result<(), RestAuthError> {
    let mut keys: Vec<String> = req
        .query
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    keys.sort_unstable();
    if let Some(pair) = keys.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(RestAuthError::DuplicateParam(pair[0].clone()));
    }

    let key = param(req.query, "auth_key").ok_or(RestAuthError::MissingParam("auth_key"))?;
    if key != app_key {
        return Err(RestAuthError::WrongKey);
    }

    let ts =
        param(req.query, "auth_timestamp").ok_or(RestAuthError::MissingParam("auth_timestamp"))?;
    let ts = parse_timestamp(ts)?;
    let skew = i128::from(ts) - i128::from(now_unix_secs);
    if skew.unsigned_abs() > u128::from(MAX_SKEW_SECS) {
        let skew_secs = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
        return Err(RestAuthError::Expired { skew_secs });
    }

    let version =
        param(req.query, "auth_version").ok_or(RestAuthError::MissingParam("auth_version"))?;
    if version != AUTH_VERSION {
        return Err(RestAuthError::UnsupportedAuthVersion(version.to_owned()));
    }

    let signature =
        param(req.query, "auth_signature").ok_or(RestAuthError::MissingParam("auth_signature"))?;
    let provided = decode_signature(signature).ok_or(RestAuthError::InvalidSignature)?;

    if req.body_len > 0 && param(req.query, "body_md5").is_none() {
        return Err(RestAuthError::MissingBodyMd5);
    }

    let to_sign = string_to_sign(
        req.method,
        req.path,
        req.query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    let expected = hmac_sha256(app_secret.as_bytes(), to_sign.as_bytes());
    if constant_time_eq(&expected, &provided) {
        Ok(())
    } else {
        Err(RestAuthError::InvalidSignature)
    }
}

/// The body matches the signed `body_md5` (required when the body is non-empty; the MD5 of an empty body is
/// accepted on an empty one).
pub fn verify_body(query: &[(String, String)], body: &[u8]) -> Result<(), RestAuthError> {
    match param(query, "body_md5") {
        None if !body.is_empty() => Err(RestAuthError::MissingBodyMd5),
        Some(md5) if md5 != body_md5_hex(body) => Err(RestAuthError::BodyMd5Mismatch),
        _ => Ok(()),
    }
}

/// Unix seconds: ASCII digits only (no sign, no fraction), fitting in u64.
fn parse_timestamp(s: &str) -> Result<u64, RestAuthError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RestAuthError::InvalidTimestamp);
    }
    s.parse().map_err(|_| RestAuthError::InvalidTimestamp)
}

/// 64 lowercase hex chars -> 32 bytes. Uppercase is refused, as for channel and sign-in signatures (which are
/// compared as strings): one rule for every signature this server checks.
fn decode_signature(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// Build a complete signed query string (without `?`) the way the SDKs do: `auth_key`,
/// `auth_timestamp`, `auth_version=1.0`, `body_md5` when `body` is non-empty, the caller's
/// `params`, then `auth_signature`. Keys and values are percent-encoded (RFC 3986 unreserved
/// characters stay literal), so the output round-trips through [`parse_query`] and [`verify`].
///
/// Used by tests and the benchmark client.
pub fn sign_query(
    method: &str,
    path: &str,
    params: &[(&str, &str)],
    body: &[u8],
    key: &str,
    secret: &str,
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let md5 = body_md5_hex(body);
    let mut all: Vec<(&str, &str)> = vec![
        ("auth_key", key),
        ("auth_timestamp", &timestamp),
        ("auth_version", AUTH_VERSION),
    ];
    if !body.is_empty() {
        all.push(("body_md5", &md5));
    }
    all.extend_from_slice(params);
    all.sort_by_key(|(k, _)| k.to_ascii_lowercase());

    let signature = hmac_sha256_hex(
        secret.as_bytes(),
        string_to_sign(method, path, all.iter().copied()).as_bytes(),
    );
    all.push(("auth_signature", &signature));
    all.iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Worked example from PROTOCOL.md 2.2 (Pusher docs, reproduced).
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";
    const BODY: &[u8] = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    const TS: u64 = 1_353_088_179;
    const BODY_MD5: &str = "ec365a775a4cd0599faeb73354201b6f";
    const SIGNATURE: &str = "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c";

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: &[u8],
        now: u64,
    ) -> Result<(), RestAuthError> {
        let req = RequestToVerify {
            method,
            path,
            query,
            body,
        };
        verify(&req, KEY, SECRET, now)
    }

    fn worked_example_query() -> Vec<(String, String)> {
        q(&[
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", BODY_MD5),
            ("auth_signature", SIGNATURE),
        ])
    }

    /// Sign a request with sign_query and parse it back, as the HTTP layer would see it.
    fn signed(
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &[u8],
        ts: u64,
    ) -> Vec<(String, String)> {
        parse_query(&sign_query(method, path, params, body, KEY, SECRET, ts))
            .expect("own output parses")
    }

    #[test]
    fn worked_example_from_the_docs() {
        assert_eq!(body_md5_hex(BODY), BODY_MD5);
        let query = worked_example_query();
        let to_sign = string_to_sign(
            "POST",
            "/apps/3/events",
            query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(
            to_sign,
            "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179\
             &auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
        );
        assert_eq!(
            hmac_sha256_hex(SECRET.as_bytes(), to_sign.as_bytes()),
            SIGNATURE
        );
        assert_eq!(check("POST", "/apps/3/events", &query, BODY, TS), Ok(()));
    }

    #[test]
    fn sign_query_reproduces_the_worked_example() {
        let raw = sign_query("POST", "/apps/3/events", &[], BODY, KEY, SECRET, TS);
        assert_eq!(
            raw,
            format!(
                "auth_key={KEY}&auth_timestamp={TS}&auth_version=1.0&body_md5={BODY_MD5}\
                 &auth_signature={SIGNATURE}"
            )
        );
    }

    #[test]
    fn method_is_upper_cased_before_signing() {
        let query = worked_example_query();
        assert_eq!(check("post", "/apps/3/events", &query, BODY, TS), Ok(()));
    }

    #[test]
    fn path_is_part_of_the_signature() {
        let query = worked_example_query();
        assert_eq!(
            check("POST", "/apps/4/events", &query, BODY, TS),
            Err(RestAuthError::InvalidSignature)
        );
        assert_eq!(
            check("GET", "/apps/3/events", &query, BODY, TS),
            Err(RestAuthError::InvalidSignature)
        );
    }

    /// pusher-http-python adds body_md5 of "" to GETs; accept it and include it in the signature.
    #[test]
    fn python_sdk_get_with_empty_body_md5() {
        assert_eq!(body_md5_hex(b""), EMPTY_BODY_MD5);
        let path = "/apps/3/channels";
        let params = [
            ("body_md5", EMPTY_BODY_MD5),
            ("filter_by_prefix", "presence-"),
        ];
        let query = signed("GET", path, &params, b"", TS);
        assert_eq!(check("GET", path, &query, b"", TS), Ok(()));

        // It really is covered by the signature: a request signed *without* body_md5 fails once
        // body_md5 is added afterwards.
        let mut query = signed("GET", path, &[("filter_by_prefix", "presence-")], b"", TS);
        assert_eq!(check("GET", path, &query, b"", TS), Ok(()));
        query.push(("body_md5".into(), EMPTY_BODY_MD5.into()));
        assert_eq!(
            check("GET", path, &query, b"", TS),
            Err(RestAuthError::InvalidSignature)
        );

        // A body_md5 that isn't MD5("") on an empty body is a mismatch.
        let query = signed("GET", path, &[("body_md5", BODY_MD5)], b"", TS);
        assert_eq!(
            check("GET", path, &query, b"", TS),
            Err(RestAuthError::BodyMd5Mismatch)
        );
    }

    #[test]
    fn timestamp_window_is_600_seconds_both_directions() {
        let query = worked_example_query();
        let v = |now| check("POST", "/apps/3/events", &query, BODY, now);
        assert_eq!(v(TS + 600), Ok(()));
        assert_eq!(v(TS - 600), Ok(()));
        // Request too old: the server clock is 601 s past the timestamp.
        assert_eq!(v(TS + 601), Err(RestAuthError::Expired { skew_secs: -601 }));
        // Request from the future: client clock 601 s ahead.
        assert_eq!(v(TS - 601), Err(RestAuthError::Expired { skew_secs: 601 }));
        assert_eq!(
            v(0),
            Err(RestAuthError::Expired {
                skew_secs: 1_353_088_179
            })
        );
    }

    #[test]
    fn huge_timestamps_do_not_overflow() {
        let ts = u64::MAX;
        let query = signed("GET", "/apps/3/channels", &[], b"", ts);
        assert!(matches!(
            check("GET", "/apps/3/channels", &query, b"", 0),
            Err(RestAuthError::Expired {
                skew_secs: i64::MAX
            })
        ));
        assert!(matches!(
            check(
                "GET",
                "/apps/3/channels",
                &signed("GET", "/apps/3/channels", &[], b"", 0),
                b"",
                u64::MAX
            ),
            Err(RestAuthError::Expired {
                skew_secs: i64::MIN
            })
        ));
    }

    #[test]
    fn tampered_body_is_rejected() {
        let query = worked_example_query();
        let tampered = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"evil\"}"}"#;
        assert_eq!(
            check("POST", "/apps/3/events", &query, tampered, TS),
            Err(RestAuthError::BodyMd5Mismatch)
        );
        // Same JSON, re-serialised with a space: MD5 is over raw bytes, so still a mismatch.
        let reserialised =
            br#"{"name": "foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(
            check("POST", "/apps/3/events", &query, reserialised, TS),
            Err(RestAuthError::BodyMd5Mismatch)
        );
        // Attacker also fixes body_md5 but cannot re-sign.
        let mut query = query;
        query[3].1 = body_md5_hex(tampered);
        assert_eq!(
            check("POST", "/apps/3/events", &query, tampered, TS),
            Err(RestAuthError::InvalidSignature)
        );
    }

    #[test]
    fn body_requires_body_md5() {
        let query = signed("POST", "/apps/3/events", &[], b"", TS);
        assert_eq!(
            check("POST", "/apps/3/events", &query, BODY, TS),
            Err(RestAuthError::MissingBodyMd5)
        );
    }

    #[test]
    fn tampered_or_added_param_is_rejected() {
        let path = "/apps/3/channels/presence-room";
        let mut query = signed("GET", path, &[("info", "user_count")], b"", TS);
        assert_eq!(check("GET", path, &query, b"", TS), Ok(()));
        let info = query
            .iter_mut()
            .find(|(k, _)| k == "info")
            .expect("info present");
        info.1 = "subscription_count".into();
        assert_eq!(
            check("GET", path, &query, b"", TS),
            Err(RestAuthError::InvalidSignature)
        );

        let mut query = signed("GET", path, &[], b"", TS);
        query.push(("info".into(), "user_count".into()));
        assert_eq!(
            check("GET", path, &query, b"", TS),
            Err(RestAuthError::InvalidSignature)
        );
    }

    #[test]
    fn wrong_key_and_wrong_secret() {
        let query = worked_example_query();
        let req = RequestToVerify {
            method: "POST",
            path: "/apps/3/events",
            query: &query,
            body: BODY,
        };
        assert_eq!(
            verify(&req, "another-key", SECRET, TS),
            Err(RestAuthError::WrongKey)
        );
        assert_eq!(
            verify(&req, KEY, "another-secret", TS),
            Err(RestAuthError::InvalidSignature)
        );
        assert_eq!(auth_key(&query), Some(KEY));
    }

    #[test]
    fn missing_required_params() {
        for name in [
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
        ] {
            let query: Vec<_> = worked_example_query()
                .into_iter()
                .filter(|(k, _)| k != name)
                .collect();
            assert_eq!(
                check("POST", "/apps/3/events", &query, BODY, TS),
                Err(RestAuthError::MissingParam(name)),
                "{name}"
            );
        }
        assert_eq!(auth_key(&[]), None);
    }

    #[test]
    fn auth_version_is_required_and_must_be_1_0() {
        let path = "/apps/3/channels";
        // Hand-signed without auth_version: every SDK sends it, so its absence is refused.
        let mut query = q(&[("auth_key", KEY), ("auth_timestamp", "1353088179")]);
        let to_sign = string_to_sign(
            "GET",
            path,
            query.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        query.push((
            "auth_signature".into(),
            hmac_sha256_hex(SECRET.as_bytes(), to_sign.as_bytes()),
        ));
        assert_eq!(
            check("GET", path, &query, b"", TS),
            Err(RestAuthError::MissingParam("auth_version"))
        );

        let mut query = signed("GET", path, &[], b"", TS);
        let version = query
            .iter_mut()
            .find(|(k, _)| k == "auth_version")
            .expect("present");
        version.1 = "2.0".into();
        assert_eq!(
            check("GET", path, &query, b"", TS),
            Err(RestAuthError::UnsupportedAuthVersion("2.0".into()))
        );
    }

    #[test]
    fn malformed_timestamps() {
        for bad in [
            "",
            "abc",
            "-5",
            "+1353088179",
            "1353088179.0",
            " 1353088179",
            "99999999999999999999999",
        ] {
            let mut query = worked_example_query();
            query[1].1 = bad.into();
            assert_eq!(
                check("POST", "/apps/3/events", &query, BODY, TS),
                Err(RestAuthError::InvalidTimestamp),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_signatures() {
        for bad in [
            "",
            "abc",
            &SIGNATURE[..63],
            &format!("{SIGNATURE}0"),
            &SIGNATURE.replace('d', "g"),
        ] {
            let mut query = worked_example_query();
            query[4].1 = bad.to_string();
            assert_eq!(
                check("POST", "/apps/3/events", &query, BODY, TS),
                Err(RestAuthError::InvalidSignature),
                "{bad:?}"
            );
        }
        // Uppercase hex encodes the same digest but is refused, like an uppercase channel signature.
        let mut query = worked_example_query();
        query[4].1 = SIGNATURE.to_uppercase();
        assert_eq!(
            check("POST", "/apps/3/events", &query, BODY, TS),
            Err(RestAuthError::InvalidSignature)
        );
    }

    #[test]
    fn duplicate_params_are_rejected() {
        let mut query = worked_example_query();
        query.push(("auth_timestamp".into(), "1353088179".into()));
        assert_eq!(
            check("POST", "/apps/3/events", &query, BODY, TS),
            Err(RestAuthError::DuplicateParam("auth_timestamp".into()))
        );
        let mut query = worked_example_query();
        query.push(("AUTH_KEY".into(), KEY.into()));
        assert_eq!(
            check("POST", "/apps/3/events", &query, BODY, TS),
            Err(RestAuthError::DuplicateParam("auth_key".into()))
        );
    }

    #[test]
    fn keys_are_lower_cased_and_sorted_for_signing() {
        let s = string_to_sign(
            "get",
            "/apps/1/channels",
            [
                ("Info", "user_count"),
                ("auth_key", "k"),
                ("AUTH_SIGNATURE", "x"),
                ("filter_by_prefix", "presence-"),
            ],
        );
        assert_eq!(
            s,
            "GET\n/apps/1/channels\nauth_key=k&filter_by_prefix=presence-&info=user_count"
        );
    }

    #[test]
    fn percent_encoded_values_are_signed_decoded() {
        let path = "/apps/3/channels/my-channel";
        let value = "user_count,subscription_count";
        // Sign over the decoded value, send it escaped as SDKs do.
        let sts = format!(
            "GET\n{path}\nauth_key={KEY}&auth_timestamp={TS}&auth_version=1.0&info={value}"
        );
        let sig = hmac_sha256_hex(SECRET.as_bytes(), sts.as_bytes());
        let raw = format!(
            "auth_key={KEY}&auth_timestamp={TS}&auth_version=1.0&info=user_count%2Csubscription_count&auth_signature={sig}"
        );
        let query = parse_query(&raw).expect("valid query");
        assert!(query.contains(&("info".to_string(), value.to_string())));
        assert_eq!(check("GET", path, &query, b"", TS), Ok(()));
        // Unescaped comma in the request means the same thing.
        let raw_plain = raw.replace("%2C", ",");
        assert_eq!(
            check(
                "GET",
                path,
                &parse_query(&raw_plain).expect("valid"),
                b"",
                TS
            ),
            Ok(())
        );
    }

    #[test]
    fn round_trip_with_awkward_values() {
        let path = "/apps/3/channels";
        let params = [
            ("filter_by_prefix", "presence- a&b=c+d%e/é"),
            ("info", "user_count,subscription_count"),
        ];
        let raw = sign_query("get", path, &params, b"", KEY, SECRET, TS);
        assert!(
            raw.contains("info=user_count%2Csubscription_count"),
            "{raw}"
        );
        let query = parse_query(&raw).expect("own output parses");
        assert!(query.contains(&("filter_by_prefix".into(), "presence- a&b=c+d%e/é".into())));
        assert_eq!(check("GET", path, &query, b"", TS + 30), Ok(()));
        assert_eq!(
            check(
                "GET",
                path,
                &signed("POST", "/apps/3/events", &[], BODY, TS),
                BODY,
                TS
            )
            .err(),
            Some(RestAuthError::InvalidSignature)
        );
        assert_eq!(
            check(
                "POST",
                "/apps/3/events",
                &signed("POST", "/apps/3/events", &[], BODY, TS),
                BODY,
                TS
            ),
            Ok(())
        );
    }

    #[test]
    fn parse_query_form_decoding() {
        assert_eq!(parse_query(""), Ok(vec![]));
        assert_eq!(parse_query("a=1&&b=2&"), Ok(q(&[("a", "1"), ("b", "2")])));
        assert_eq!(parse_query("flag"), Ok(q(&[("flag", "")])));
        assert_eq!(parse_query("a=b=c"), Ok(q(&[("a", "b=c")])));
        assert_eq!(parse_query("a=x+y%20z"), Ok(q(&[("a", "x y z")])));
        assert_eq!(parse_query("a=%2B%2b"), Ok(q(&[("a", "++")])));
        assert_eq!(parse_query("k%5Fx=%C3%A9"), Ok(q(&[("k_x", "é")])));
    }

    #[test]
    fn parse_query_rejects_bad_escapes_and_non_utf8() {
        for bad in ["a=%", "a=%2", "a=%zz", "a=%2G", "%=1", "a=%FF", "a=%C3"] {
            let err = parse_query(bad).expect_err(bad);
            assert!(
                matches!(err, RestAuthError::InvalidQuery(_)),
                "{bad}: {err:?}"
            );
            assert_eq!(err.http_status(), 400);
        }
    }

    #[test]
    fn http_status_mapping() {
        let unauthorized = [
            RestAuthError::MissingParam("auth_key"),
            RestAuthError::InvalidTimestamp,
            RestAuthError::Expired { skew_secs: 601 },
            RestAuthError::WrongKey,
            RestAuthError::BodyMd5Mismatch,
            RestAuthError::MissingBodyMd5,
            RestAuthError::UnsupportedAuthVersion("2.0".into()),
            RestAuthError::InvalidSignature,
            RestAuthError::DuplicateParam("info".into()),
        ];
        for e in unauthorized {
            assert_eq!(e.http_status(), 401, "{e}");
        }
        assert_eq!(RestAuthError::InvalidQuery("x".into()).http_status(), 400);
        assert_eq!(
            RestAuthError::Expired { skew_secs: -700 }.to_string(),
            "auth_timestamp is -700 s away from server time (allowed: ±600 s); check the client clock"
        );
    }
}
