//! Server-to-client frame encoding. Server frames are never masked
//! (RFC 6455 §5.1), so encoding is a header write plus one payload copy.
//!
//! The `Bytes` variants allocate exactly once with exact capacity so a frame
//! built for a channel broadcast can be shared by every subscriber without
//! re-encoding; the `_into` variants append to a connection's write buffer.

use bytes::Bytes;

use super::decode::MAX_CONTROL_PAYLOAD;

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// Longest close reason that fits a control frame next to the 2-byte code.
pub const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Size of an unmasked frame header for a payload of `len` bytes.
#[inline]
pub fn header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= 0xFFFF {
        4
    } else {
        10
    }
}

/// Total encoded size of an unmasked frame, for callers sizing a write buffer.
#[inline]
pub fn frame_len(payload_len: usize) -> usize {
    header_len(payload_len) + payload_len
}

#[inline]
fn write_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    if len < 126 {
        out.extend_from_slice(&[FIN | opcode, len as u8]);
    } else if len <= 0xFFFF {
        let l = (len as u16).to_be_bytes();
        out.extend_from_slice(&[FIN | opcode, 126, l[0], l[1]]);
    } else {
        out.push(FIN | opcode);
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

#[inline]
fn frame_into(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(frame_len(payload.len()));
    write_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

#[inline]
fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(frame_len(payload.len()));
    write_header(&mut out, opcode, payload.len());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Control payloads over 125 bytes would make an invalid frame; cut them
/// rather than fail, since a ping/pong body is opaque anyway.
fn control_payload(payload: &[u8]) -> &[u8] {
    &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)]
}

/// One final text frame. The caller guarantees `payload` is UTF-8 (it is
/// normally serialized JSON); it is not re-validated on this hot path.
pub fn encode_text(payload: &[u8]) -> Bytes {
    frame(OP_TEXT, payload)
}

/// Append one final text frame to `out`.
pub fn encode_text_into(payload: &[u8], out: &mut Vec<u8>) {
    frame_into(OP_TEXT, payload, out)
}

pub fn encode_binary(payload: &[u8]) -> Bytes {
    frame(OP_BINARY, payload)
}

pub fn encode_binary_into(payload: &[u8], out: &mut Vec<u8>) {
    frame_into(OP_BINARY, payload, out)
}

/// Payload beyond 125 bytes is truncated.
pub fn encode_ping(payload: &[u8]) -> Bytes {
    frame(OP_PING, control_payload(payload))
}

/// Payload beyond 125 bytes is truncated. Echoing a decoded ping never
/// truncates, because the decoder rejects larger pings.
pub fn encode_pong(payload: &[u8]) -> Bytes {
    frame(OP_PONG, control_payload(payload))
}

/// Append a pong to `out`, e.g. straight into the connection's write buffer.
pub fn encode_pong_into(payload: &[u8], out: &mut Vec<u8>) {
    frame_into(OP_PONG, control_payload(payload), out)
}

/// Close frame with `code` and `reason`, the reason cut to
/// [`MAX_CLOSE_REASON`] bytes on a char boundary so the frame stays valid and
/// the reason stays UTF-8 (clients must fail the connection otherwise).
pub fn encode_close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = &reason.as_bytes()[..end];
    let len = 2 + reason.len();
    let mut out = Vec::with_capacity(frame_len(len));
    write_header(&mut out, OP_CLOSE, len);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
    Bytes::from(out)
}

/// Close frame without a status code, the reply to a client close that had
/// no payload.
pub fn encode_close_empty() -> Bytes {
    Bytes::from_static(&[FIN | OP_CLOSE, 0])
}
