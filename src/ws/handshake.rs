//! Server half of the opening handshake (RFC 6455 §4.2.2). Request validation
//! lives in [`crate::http::Request::is_websocket_upgrade`]; this only builds
//! the answer. No extensions and no subprotocol are ever negotiated, which is
//! what lets the decoder reject any RSV bit.

/// `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(sec_websocket_key: &str) -> String {
    // Surrounding whitespace is not part of the key (header OWS); hashing it
    // would produce a value the client rejects.
    tungstenite::handshake::derive_accept_key(sec_websocket_key.trim().as_bytes())
}

const PREFIX: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\n\
Upgrade: websocket\r\n\
Connection: Upgrade\r\n\
Sec-WebSocket-Accept: ";

/// The complete 101 response, ready to write to the socket.
pub fn upgrade_response(accept_key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX.len() + accept_key.len() + 4);
    upgrade_response_into(accept_key, &mut out);
    out
}

/// Append the 101 response to an existing write buffer.
pub fn upgrade_response_into(accept_key: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(accept_key.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_sample_key() {
        // RFC 6455 §1.3 example.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            accept_key(" dGhlIHNhbXBsZSBub25jZQ== "),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn response_bytes_exact() {
        let r = upgrade_response("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            r,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert_eq!(r.len(), r.capacity());
    }
}
