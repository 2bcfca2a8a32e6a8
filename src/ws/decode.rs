//! Server-side frame decoder: turns client bytes into whole [`Message`]s.
//!
//! The decoder never owns the read buffer. The connection task appends socket
//! reads to its own buffer and calls [`Decoder::decode`] until it returns
//! `Ok(None)`, dropping the reported prefix after each message. This keeps the
//! common case (one small unfragmented frame) at one allocation: the payload
//! `Vec` handed to the protocol layer.

use thiserror::Error;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Control frames carry at most this many payload bytes (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Upper bound on frames in one fragmented message.
///
/// Fragments stay in the caller's buffer until the message completes (see the
/// [`Decoder::decode`] contract), so without this a peer could grow that buffer
/// forever with empty continuation frames while never tripping the size limit.
pub const MAX_FRAGMENTS: usize = 1024;

/// A complete message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Payload already validated as UTF-8; kept as bytes so the protocol layer
    /// can hand it straight to a JSON parser without another conversion.
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// `None` when the close frame had no payload; otherwise (code, reason).
    Close(Option<(u16, String)>),
}

/// Protocol violations. Every one is fatal: the server should send a close
/// frame with [`WsError::close_code`] and drop the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WsError {
    #[error("client frame is not masked")]
    UnmaskedFrame,
    #[error("reserved bits set but no extension was negotiated")]
    ReservedBitsSet,
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlFrameTooLarge(u64),
    #[error("control frame is fragmented")]
    FragmentedControlFrame,
    #[error("continuation frame without a message in progress")]
    ContinuationWithoutStart,
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    #[error("message of {size} bytes exceeds the {max}-byte limit")]
    TooBig { size: u64, max: usize },
    #[error("fragmented message exceeds {MAX_FRAGMENTS} frames")]
    TooManyFragments,
    #[error("invalid UTF-8 in text message or close reason")]
    InvalidUtf8,
    #[error("close frame payload of 1 byte (must be 0 or >= 2)")]
    CloseTooShort,
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
}

impl WsError {
    /// Status code for the close frame the server sends before hanging up.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig { .. } | WsError::TooManyFragments => 1009,
            WsError::InvalidUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// XOR `data` with the 4-byte masking key, starting at key offset 0.
///
/// Works 8 bytes at a time because every client frame goes through here; the
/// compiler turns the chunk loop into wide loads/stores.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let (chunks, tail) = data.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ wide).to_ne_bytes();
    }
    // Chunks cover a multiple of 8 bytes, so the tail restarts at key[0].
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Close codes a peer may legitimately send (RFC 6455 §7.4, IANA registry).
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

struct Header {
    fin: bool,
    opcode: u8,
    header_len: usize,
    payload_len: usize,
    mask: [u8; 4],
}

/// Stateful decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    max_message_size: usize,
    /// Opcode (text/binary) of the fragmented message in progress.
    fragmented: Option<u8>,
    /// Unmasked payload of the fragments received so far.
    assembly: Vec<u8>,
    fragments: usize,
    /// Length of the prefix of the caller's buffer already folded into
    /// `assembly`; skipped on the next call instead of being parsed again.
    absorbed: usize,
}

impl Decoder {
    /// `max_message_size` bounds a data message's total payload (after
    /// reassembly); it does not apply to control frames, which RFC 6455 caps at
    /// 125 bytes anyway.
    pub fn new(max_message_size: usize) -> Self {
        Decoder {
            max_message_size,
            fragmented: None,
            assembly: Vec::new(),
            fragments: 0,
            absorbed: 0,
        }
    }

    /// Decode at most one complete message from the front of `buf`.
    ///
    /// Contract:
    /// - `Ok(Some((msg, n)))`: drop exactly the first `n` bytes of `buf`, then
    ///   call again (more messages may already be buffered). `n` also covers
    ///   any fragments of a data message absorbed in earlier calls, so a
    ///   control frame interleaved in a fragmented message releases them too.
    /// - `Ok(None)`: nothing to drop. Keep `buf` unchanged, append more bytes
    ///   and call again with the grown buffer. Complete fragment frames at the
    ///   front may already have been absorbed; the decoder remembers their
    ///   length and skips them, so they are never parsed or copied twice. The
    ///   caller must therefore never alter that prefix between calls.
    /// - `Err(e)`: the stream is unusable; close with `e.close_code()` and
    ///   drop the decoder (its state is unspecified after an error).
    ///
    /// Because absorbed fragments stay in the caller's buffer until their
    /// message completes, that buffer may need up to `max_message_size` plus
    /// 14 bytes of header per fragment ([`MAX_FRAGMENTS`] bounds the count).
    /// The decoder keeps decoding after a `Close`; stopping is the caller's
    /// decision, as the closing handshake lives in the connection task.
    ///
    /// Size limits are checked as soon as a frame's length field is readable,
    /// so an oversized frame fails before its payload is buffered.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(Message, usize)>, WsError> {
        let mut pos = self.absorbed;
        loop {
            let Some(rest) = buf.get(pos..) else {
                // Caller broke the contract by shrinking the buffer; there is
                // nothing sensible to decode until it grows back.
                return Ok(None);
            };
            let Some(h) = self.parse_header(rest)? else {
                self.absorbed = pos;
                return Ok(None);
            };
            let frame_len = h
                .header_len
                .checked_add(h.payload_len)
                .ok_or(WsError::TooBig {
                    size: h.payload_len as u64,
                    max: self.max_message_size,
                })?;
            let Some(payload) = rest.get(h.header_len..frame_len) else {
                self.absorbed = pos;
                return Ok(None);
            };
            pos += frame_len;

            let msg = match h.opcode {
                OP_TEXT | OP_BINARY if h.fin => {
                    let mut data = payload.to_vec();
                    apply_mask(&mut data, h.mask);
                    data_message(h.opcode, data)?
                }
                OP_TEXT | OP_BINARY => {
                    self.fragmented = Some(h.opcode);
                    self.fragments = 1;
                    self.assembly.clear();
                    self.absorb(payload, h.mask);
                    continue;
                }
                OP_CONTINUATION => {
                    self.fragments += 1;
                    if !h.fin && self.fragments >= MAX_FRAGMENTS {
                        return Err(WsError::TooManyFragments);
                    }
                    self.absorb(payload, h.mask);
                    if !h.fin {
                        continue;
                    }
                    let opcode = self.fragmented.take().unwrap_or(OP_BINARY);
                    self.fragments = 0;
                    data_message(opcode, std::mem::take(&mut self.assembly))?
                }
                _ => {
                    let mut data = payload.to_vec();
                    apply_mask(&mut data, h.mask);
                    match h.opcode {
                        OP_PING => Message::Ping(data),
                        OP_PONG => Message::Pong(data),
                        _ => parse_close(&data)?,
                    }
                }
            };
            self.absorbed = 0;
            return Ok(Some((msg, pos)));
        }
    }

    fn absorb(&mut self, payload: &[u8], mask: [u8; 4]) {
        let start = self.assembly.len();
        self.assembly.extend_from_slice(payload);
        apply_mask(&mut self.assembly[start..], mask);
    }

    /// Validate everything knowable from the header before the payload arrives.
    fn parse_header(&self, rest: &[u8]) -> Result<Option<Header>, WsError> {
        let (b0, b1) = match rest {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Ok(None),
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::ReservedBitsSet);
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0F;
        if b1 & 0x80 == 0 {
            return Err(WsError::UnmaskedFrame);
        }
        let len7 = b1 & 0x7F;
        let is_control = match opcode {
            OP_CONTINUATION if self.fragmented.is_none() => {
                return Err(WsError::ContinuationWithoutStart)
            }
            OP_TEXT | OP_BINARY if self.fragmented.is_some() => {
                return Err(WsError::ExpectedContinuation)
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => false,
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(WsError::FragmentedControlFrame);
                }
                if usize::from(len7) > MAX_CONTROL_PAYLOAD {
                    return Err(WsError::ControlFrameTooLarge(u64::from(len7)));
                }
                true
            }
            other => return Err(WsError::UnknownOpcode(other)),
        };
        let (len, len_end) = match len7 {
            126 => match rest.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match rest.get(2..10).and_then(|s| <[u8; 8]>::try_from(s).ok()) {
                Some(bytes) => (u64::from_be_bytes(bytes), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        if !is_control {
            let already = if opcode == OP_CONTINUATION {
                self.assembly.len() as u64
            } else {
                0
            };
            let size = already.saturating_add(len);
            if size > self.max_message_size as u64 {
                return Err(WsError::TooBig {
                    size,
                    max: self.max_message_size,
                });
            }
        }
        let Some(mask) = rest
            .get(len_end..len_end + 4)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
        else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            header_len: len_end + 4,
            // Fits: bounded by max_message_size (a usize) or by 125 above.
            payload_len: len as usize,
            mask,
        }))
    }
}

fn data_message(opcode: u8, data: Vec<u8>) -> Result<Message, WsError> {
    if opcode == OP_TEXT {
        if std::str::from_utf8(&data).is_err() {
            return Err(WsError::InvalidUtf8);
        }
        Ok(Message::Text(data))
    } else {
        Ok(Message::Binary(data))
    }
}

fn parse_close(payload: &[u8]) -> Result<Message, WsError> {
    match payload {
        [] => Ok(Message::Close(None)),
        [_] => Err(WsError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Message::Close(Some((code, reason.to_owned()))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::encode::{
        encode_binary, encode_close, encode_ping, encode_pong, encode_text, encode_text_into,
    };

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Build a masked client frame by hand (fin, rsv bits, opcode).
    fn client_frame(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![b0];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], mask);
        out
    }

    /// Turn a server (unmasked) frame into the equivalent client frame.
    fn mask_server_frame(frame: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let hl = header_len_of(frame);
        let mut out = frame[..hl].to_vec();
        out[1] |= 0x80;
        out.extend_from_slice(&mask);
        let start = out.len();
        out.extend_from_slice(&frame[hl..]);
        apply_mask(&mut out[start..], mask);
        out
    }

    fn header_len_of(frame: &[u8]) -> usize {
        match frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        }
    }

    /// Feed `stream` in `chunk`-sized reads, buffering like a connection.
    fn replay(stream: &[u8], chunk: usize, max: usize) -> Result<Vec<Message>, WsError> {
        let mut dec = Decoder::new(max);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some((msg, n)) = dec.decode(&buf)? {
                assert!(n > 0 && n <= buf.len());
                buf.drain(..n);
                out.push(msg);
            }
        }
        assert!(
            buf.len() < 14 + max + 4 * MAX_FRAGMENTS,
            "leftover {}",
            buf.len()
        );
        Ok(out)
    }

    const CHUNKS: [usize; 7] = [1, 2, 3, 5, 7, 100, usize::MAX];

    fn replay_all(stream: &[u8], max: usize) -> Vec<Message> {
        let whole = replay(stream, usize::MAX, max).expect("decode");
        for c in CHUNKS {
            assert_eq!(replay(stream, c, max).expect("decode"), whole, "chunk {c}");
        }
        whole
    }

    fn replay_err(stream: &[u8], max: usize) -> WsError {
        let whole = replay(stream, usize::MAX, max).expect_err("should fail");
        for c in CHUNKS {
            assert_eq!(
                replay(stream, c, max).expect_err("should fail"),
                whole,
                "chunk {c}"
            );
        }
        whole
    }

    fn one(stream: &[u8]) -> Result<Option<(Message, usize)>, WsError> {
        Decoder::new(1 << 20).decode(stream)
    }

    #[test]
    fn rfc6455_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message containing "Hello".
        let f = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        assert_eq!(
            one(&f).unwrap(),
            Some((Message::Text(b"Hello".to_vec()), f.len()))
        );
        assert_eq!(replay_all(&f, 100), vec![Message::Text(b"Hello".to_vec())]);
        assert_eq!(client_frame(0x81, b"Hello", MASK), f);
    }

    #[test]
    fn rfc6455_unmasked_hello_rejected() {
        let f = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(one(&f), Err(WsError::UnmaskedFrame));
    }

    #[test]
    fn mask_matches_bytewise() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(31)).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, MASK);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn lengths_16_and_64_bit() {
        let mid = vec![b'a'; 300];
        let big = vec![7u8; 70_000];
        let mut s = client_frame(0x81, &mid, MASK);
        assert_eq!(s[1], 0x80 | 126);
        let b = client_frame(0x82, &big, [1, 2, 3, 4]);
        assert_eq!(b[1], 0x80 | 127);
        s.extend_from_slice(&b);
        let msgs = replay(&s, 7, 100_000).unwrap();
        assert_eq!(
            msgs,
            vec![Message::Text(mid.clone()), Message::Binary(big.clone())]
        );
        assert_eq!(replay(&s, 1000, 100_000).unwrap(), msgs);
        assert_eq!(replay(&s, usize::MAX, 100_000).unwrap(), msgs);
        // Edges of each length encoding.
        for len in [0, 125, 126, 127, 65_535, 65_536] {
            let p = vec![b'x'; len];
            let f = client_frame(0x82, &p, MASK);
            assert_eq!(
                one(&f).unwrap(),
                Some((Message::Binary(p), f.len())),
                "len {len}"
            );
        }
    }

    fn fragmented_stream() -> (Vec<u8>, Vec<Message>) {
        let mut s = Vec::new();
        s.extend(client_frame(0x01, b"Hel", MASK)); // text, not fin
        s.extend(client_frame(0x89, b"ping!", [9, 8, 7, 6])); // interleaved ping
        s.extend(client_frame(0x00, b"lo, ", [1, 1, 1, 1])); // continuation
        s.extend(client_frame(0x00, "wörld".as_bytes(), [0xff, 0, 0xff, 0])); // continuation
        s.extend(client_frame(0x8A, b"", MASK)); // interleaved pong
        s.extend(client_frame(0x80, b"!", MASK)); // final continuation
        s.extend(client_frame(0x02, &[1, 2], MASK)); // binary, not fin
        s.extend(client_frame(0x80, &[3], MASK));
        s.extend(client_frame(0x88, &[0x03, 0xe8, b'b', b'y', b'e'], MASK));
        let expected = vec![
            Message::Ping(b"ping!".to_vec()),
            Message::Pong(vec![]),
            Message::Text("Hello, wörld!".as_bytes().to_vec()),
            Message::Binary(vec![1, 2, 3]),
            Message::Close(Some((1000, "bye".into()))),
        ];
        (s, expected)
    }

    #[test]
    fn fragmented_with_interleaved_control_frames() {
        let (s, expected) = fragmented_stream();
        assert_eq!(replay_all(&s, 1 << 20), expected);
    }

    #[test]
    fn replay_every_chunk_size_mixed_stream() {
        let mut s = Vec::new();
        s.extend(client_frame(
            0x81,
            b"{\"event\":\"pusher:ping\",\"data\":{}}",
            MASK,
        ));
        s.extend(client_frame(0x81, &vec![b'z'; 1000], MASK));
        s.extend(client_frame(0x88, &[], MASK));
        let msgs = replay_all(&s, 4096);
        assert_eq!(msgs.len(), 3);
        for c in 1..64 {
            assert_eq!(replay(&s, c, 4096).unwrap(), msgs, "chunk {c}");
        }
    }

    #[test]
    fn absorbed_fragments_reported_with_next_message() {
        let a = client_frame(0x01, b"ab", MASK);
        let b = client_frame(0x80, b"cd", MASK);
        let mut dec = Decoder::new(100);
        let mut buf = a.clone();
        assert_eq!(dec.decode(&buf), Ok(None));
        // Calling again without new data must not absorb the fragment twice.
        assert_eq!(dec.decode(&buf), Ok(None));
        buf.extend_from_slice(&b[..3]);
        assert_eq!(dec.decode(&buf), Ok(None));
        buf.extend_from_slice(&b[3..]);
        assert_eq!(
            dec.decode(&buf),
            Ok(Some((Message::Text(b"abcd".to_vec()), a.len() + b.len())))
        );
    }

    #[test]
    fn error_unmasked() {
        assert_eq!(one(&[0x81, 0x00]), Err(WsError::UnmaskedFrame));
    }

    #[test]
    fn error_reserved_bits() {
        for rsv in [0x40, 0x20, 0x10] {
            let f = client_frame(0x81 | rsv, b"x", MASK);
            assert_eq!(replay_err(&f, 100), WsError::ReservedBitsSet);
        }
    }

    #[test]
    fn error_unknown_opcode() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let f = client_frame(0x80 | op, b"", MASK);
            assert_eq!(replay_err(&f, 100), WsError::UnknownOpcode(op));
        }
    }

    #[test]
    fn error_control_too_large() {
        let f = client_frame(0x89, &[0; 126], MASK);
        assert_eq!(replay_err(&f, 1000), WsError::ControlFrameTooLarge(126));
        // 125 is fine.
        let f = client_frame(0x89, &[0; 125], MASK);
        assert_eq!(replay_all(&f, 10), vec![Message::Ping(vec![0; 125])]);
    }

    #[test]
    fn error_fragmented_control() {
        let f = client_frame(0x09, b"", MASK);
        assert_eq!(replay_err(&f, 100), WsError::FragmentedControlFrame);
    }

    #[test]
    fn error_continuation_without_start() {
        let f = client_frame(0x80, b"x", MASK);
        assert_eq!(replay_err(&f, 100), WsError::ContinuationWithoutStart);
    }

    #[test]
    fn error_data_frame_during_fragmented_message() {
        let mut s = client_frame(0x01, b"a", MASK);
        s.extend(client_frame(0x81, b"b", MASK));
        assert_eq!(replay_err(&s, 100), WsError::ExpectedContinuation);
    }

    #[test]
    fn error_too_big_single_frame() {
        let f = client_frame(0x82, &[0; 101], MASK);
        let e = replay_err(&f, 100);
        assert_eq!(
            e,
            WsError::TooBig {
                size: 101,
                max: 100
            }
        );
        assert_eq!(e.close_code(), 1009);
        assert_eq!(
            replay_all(&client_frame(0x82, &[0; 100], MASK), 100).len(),
            1
        );
    }

    #[test]
    fn error_too_big_detected_from_header_alone() {
        // A 64-bit length of 2^62 with no payload behind it: must fail on the
        // 10 header bytes, not wait for (or allocate) the payload.
        let mut f = vec![0x82, 0x80 | 127];
        f.extend_from_slice(&(1u64 << 62).to_be_bytes());
        assert!(matches!(one(&f), Err(WsError::TooBig { .. })));
        f[2] = 0xFF; // MSB set: also just too big
        assert!(matches!(one(&f), Err(WsError::TooBig { .. })));
        let mut f = vec![0x82, 0x80 | 126];
        f.extend_from_slice(&1000u16.to_be_bytes());
        assert!(matches!(
            Decoder::new(999).decode(&f),
            Err(WsError::TooBig { .. })
        ));
    }

    #[test]
    fn error_too_big_across_fragments() {
        let mut s = client_frame(0x02, &[0; 60], MASK);
        s.extend(client_frame(0x80, &[0; 41], MASK));
        assert_eq!(
            replay_err(&s, 100),
            WsError::TooBig {
                size: 101,
                max: 100
            }
        );
    }

    #[test]
    fn error_too_many_fragments() {
        let mut s = client_frame(0x02, b"", MASK);
        for _ in 0..MAX_FRAGMENTS {
            s.extend(client_frame(0x00, b"", MASK));
        }
        let e = replay(&s, usize::MAX, 100).unwrap_err();
        assert_eq!(e, WsError::TooManyFragments);
        assert_eq!(e.close_code(), 1009);
    }

    #[test]
    fn error_invalid_utf8() {
        let f = client_frame(0x81, &[0xff, 0xfe], MASK);
        let e = replay_err(&f, 100);
        assert_eq!(e, WsError::InvalidUtf8);
        assert_eq!(e.close_code(), 1007);
        // A code point split across fragments is fine...
        let mut s = client_frame(0x01, &[0xc3], MASK);
        s.extend(client_frame(0x80, &[0xb6], MASK));
        assert_eq!(
            replay_all(&s, 100),
            vec![Message::Text("ö".as_bytes().to_vec())]
        );
        // ...but an unfinished one at the end is not.
        let mut s = client_frame(0x01, b"a", MASK);
        s.extend(client_frame(0x80, &[0xc3], MASK));
        assert_eq!(replay_err(&s, 100), WsError::InvalidUtf8);
    }

    #[test]
    fn error_close_payloads() {
        let f = client_frame(0x88, &[0x03], MASK);
        assert_eq!(replay_err(&f, 100), WsError::CloseTooShort);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000, 65535] {
            let f = client_frame(0x88, &code.to_be_bytes(), MASK);
            let e = replay_err(&f, 100);
            assert_eq!(e, WsError::InvalidCloseCode(code));
            assert_eq!(e.close_code(), 1002);
        }
        for code in [1000u16, 1001, 1003, 1007, 1011, 3000, 4999] {
            let f = client_frame(0x88, &code.to_be_bytes(), MASK);
            assert_eq!(
                replay_all(&f, 100),
                vec![Message::Close(Some((code, String::new())))]
            );
        }
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.push(0xff);
        let e = replay_err(&client_frame(0x88, &p, MASK), 100);
        assert_eq!(e, WsError::InvalidUtf8);
        assert_eq!(
            replay_all(&client_frame(0x88, b"", MASK), 100),
            vec![Message::Close(None)]
        );
    }

    #[test]
    fn close_codes_for_protocol_errors() {
        assert_eq!(WsError::UnmaskedFrame.close_code(), 1002);
        assert_eq!(WsError::ReservedBitsSet.close_code(), 1002);
        assert_eq!(WsError::ContinuationWithoutStart.close_code(), 1002);
    }

    #[test]
    fn roundtrip_encoder_masked_decode() {
        let big = vec![b'q'; 70_000];
        let cases: Vec<(Vec<u8>, Message)> = vec![
            (encode_text(b"hi").to_vec(), Message::Text(b"hi".to_vec())),
            (encode_text(&big).to_vec(), Message::Text(big.clone())),
            (
                encode_text(&big[..300]).to_vec(),
                Message::Text(big[..300].to_vec()),
            ),
            (
                encode_binary(&[0, 1, 2]).to_vec(),
                Message::Binary(vec![0, 1, 2]),
            ),
            (encode_ping(b"p").to_vec(), Message::Ping(b"p".to_vec())),
            (encode_pong(b"").to_vec(), Message::Pong(vec![])),
            (
                encode_close(4001, "gone").to_vec(),
                Message::Close(Some((4001, "gone".into()))),
            ),
        ];
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for (i, (frame, msg)) in cases.into_iter().enumerate() {
            let m = mask_server_frame(&frame, [i as u8, 0xAA, 0x55, 0x0F]);
            assert_eq!(one(&m).unwrap(), Some((msg.clone(), m.len())));
            stream.extend(m);
            expected.push(msg);
        }
        for c in [1, 3, 7, 100, 4096, usize::MAX] {
            assert_eq!(replay(&stream, c, 1 << 20).unwrap(), expected, "chunk {c}");
        }
    }

    #[test]
    fn encoder_exact_bytes_and_allocation() {
        assert_eq!(&encode_text(b"Hello")[..], b"\x81\x05Hello");
        let b = encode_text(&[b'a'; 126]);
        assert_eq!(&b[..4], &[0x81, 126, 0, 126]);
        assert_eq!(b.len(), 130);
        let b = encode_text(&[b'a'; 65_536]);
        assert_eq!(&b[..10], &[0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        let mut out = b"prefix".to_vec();
        encode_text_into(b"Hi", &mut out);
        assert_eq!(out, b"prefix\x81\x02Hi");
        assert_eq!(&encode_ping(&[1; 200])[..2], &[0x89, 125]);
        assert_eq!(&encode_pong(b"x")[..], &[0x8A, 1, b'x']);
    }

    #[test]
    fn close_reason_truncated_on_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes, 2-byte chars
        let f = encode_close(1000, &reason);
        // 123 is odd, so the cut lands at 122 to stay on a boundary.
        assert_eq!(f[1] as usize, 2 + 122);
        let m = mask_server_frame(&f, MASK);
        assert_eq!(
            one(&m).unwrap().unwrap().0,
            Message::Close(Some((1000, "é".repeat(61))))
        );
        assert_eq!(&encode_close(1000, "")[..], &[0x88, 2, 0x03, 0xe8]);
    }

    #[test]
    fn tungstenite_reads_our_frames() {
        use std::io::Cursor;
        use tungstenite::protocol::frame::{coding::OpCode, FrameSocket};
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&encode_text(b"hello"));
        bytes.extend_from_slice(&encode_text(&[b'x'; 70_000]));
        bytes.extend_from_slice(&encode_close(1001, "away"));
        let mut sock = FrameSocket::new(Cursor::new(bytes));
        let f = sock.read(None).unwrap().unwrap();
        assert_eq!(
            f.header().opcode,
            OpCode::Data(tungstenite::protocol::frame::coding::Data::Text)
        );
        assert!(f.header().is_final && f.header().mask.is_none());
        assert_eq!(f.payload(), b"hello");
        let f = sock.read(None).unwrap().unwrap();
        assert_eq!(f.payload().len(), 70_000);
        let f = sock.read(None).unwrap().unwrap();
        assert_eq!(
            f.header().opcode,
            OpCode::Control(tungstenite::protocol::frame::coding::Control::Close)
        );
        assert_eq!(f.payload(), b"\x03\xe9away");
    }

    #[test]
    fn we_read_tungstenite_client_frames() {
        use tungstenite::protocol::frame::{coding::OpCode, Frame};
        let mut f = Frame::message(
            vec![b'w'; 1000],
            OpCode::Data(tungstenite::protocol::frame::coding::Data::Text),
            true,
        );
        f.header_mut().mask = Some([5, 6, 7, 8]);
        let mut bytes = Vec::new();
        f.format(&mut bytes).unwrap();
        assert_eq!(
            replay_all(&bytes, 2000),
            vec![Message::Text(vec![b'w'; 1000])]
        );
    }
}
