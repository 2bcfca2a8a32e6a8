//! The HTTP/1.1 request-head parser shared by the REST API, WebSocket upgrades and the metrics port, and what is
//! derived from a parsed head (upgrade checks, key, path segments).
#![no_main]
use libfuzzer_sys::fuzz_target;
use sockudo::http::{parse_request, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_header_bytes: 4096,
        max_body_bytes: 65536,
    };
    // Every prefix a slow client could have sent so far, then the whole input (pipelined requests included).
    let mut offset = 0;
    while offset < data.len() {
        match parse_request(&data[offset..], &limits) {
            Ok(Some((req, head_len))) => {
                assert!(head_len > 0 && head_len <= data.len() - offset);
                assert!(req.content_length <= limits.max_body_bytes);
                let _ = req.is_websocket_upgrade();
                let _ = req.websocket_key();
                let _ = req.path_segments().count();
                let _ = req.headers.iter().count();
                let _ = sockudo::ws::accept_key(req.websocket_key().unwrap_or("x"));
                offset += head_len + req.content_length;
            }
            Ok(None) => break,
            Err(e) => {
                let _ = e.status();
                break;
            }
        }
    }
});
