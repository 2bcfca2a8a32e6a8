//! REST signature checking: the query parser, percent-decoding and the whole verification, over fuzzed query
//! strings, methods, paths and bodies. A forged request must never verify.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sockudo::protocol::rest_auth::{self, RequestToVerify};

const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
const NOW: u64 = 1_353_088_179;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `query \n body`, the body optional.
    let (raw_query, body) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(query) = rest_auth::parse_query(raw_query) else {
        return;
    };
    let req = RequestToVerify {
        method: "POST",
        path: "/apps/3/events",
        query: &query,
        body: body.as_bytes(),
    };
    let verdict = rest_auth::verify(&req, KEY, SECRET, NOW);
    if let Err(e) = &verdict {
        let _ = e.http_status();
    }
    // Accepted only if the signature really is the HMAC of what was signed.
    if verdict.is_ok() {
        let params: Vec<(&str, &str)> = query
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let to_sign = rest_auth::string_to_sign("POST", "/apps/3/events", params);
        let expected =
            sockudo::protocol::auth::hmac_sha256_hex(SECRET.as_bytes(), to_sign.as_bytes());
        assert!(
            query.iter().any(|(_, v)| *v == expected),
            "verified without the right signature"
        );
    }
});
