//! WebSocket (RFC 6455) server-side codec, sans-IO: bytes in, messages out;
//! messages in, frame bytes out. The connection task owns sockets and buffers.

mod decode;
mod encode;
mod handshake;

pub use decode::{apply_mask, Decoder, Message, WsError, MAX_CONTROL_PAYLOAD, MAX_FRAGMENTS};
pub use encode::{
    encode_binary, encode_binary_into, encode_close, encode_close_empty, encode_ping, encode_pong,
    encode_pong_into, encode_text, encode_text_into, frame_len, header_len, MAX_CLOSE_REASON,
};
pub use handshake::{accept_key, upgrade_response, upgrade_response_into};
