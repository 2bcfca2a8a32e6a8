//! Minimal WebSocket client (RFC 6455) over a tokio TCP stream, or TLS over it (`wss://`).
//!
//! Small per-connection footprint: one growable read buffer, no write buffer (frames are
//! written directly). Client frames are masked; fragmented messages are reassembled.

use crate::net::{Conn, Target};
use anyhow::{anyhow, bail, Result};
use std::net::Ipv4Addr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_MESSAGE: usize = 16 * 1024 * 1024;

pub enum Message {
    /// A complete text message (the payload bytes, UTF-8 not re-validated).
    Text(Vec<u8>),
    /// Server closed the connection (close frame or EOF).
    Closed,
}

pub struct WsClient {
    stream: Conn,
    buf: Vec<u8>,
    /// Payload of a fragmented message being reassembled.
    partial: Option<Vec<u8>>,
    mask_state: u32,
}

impl WsClient {
    /// TCP connect (optionally from `source`) and TLS handshake for `wss://`, then the HTTP upgrade to `path`.
    pub async fn connect(target: &Target, source: Option<Ipv4Addr>, path: &str) -> Result<Self> {
        let host = &target.host_header;
        let mut stream = crate::net::open(target, source).await?;
        let seed = (stream.local_port().unwrap_or(1) as u32) | 1;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(512);
        let header_end = loop {
            if let Some(pos) = find(&buf, b"\r\n\r\n") {
                break pos + 4;
            }
            if buf.len() > 16 * 1024 {
                bail!("handshake response too large");
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("connection closed during handshake");
            }
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(&buf[..header_end])?;
        if resp.code != Some(101) {
            bail!("upgrade refused: HTTP {:?}", resp.code);
        }
        // Accept value for our fixed key (RFC 6455 section 1.3 example).
        let accept_ok = resp.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("sec-websocket-accept")
                && h.value == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        });
        if !accept_ok {
            bail!("upgrade response has a wrong or missing Sec-WebSocket-Accept");
        }
        buf.drain(..header_end);
        buf.shrink_to(256);
        Ok(Self {
            stream,
            buf,
            partial: None,
            mask_state: seed.wrapping_mul(2_654_435_761),
        })
    }

    /// Read the next text message. Cancel-safe: bytes already read stay in the buffer.
    /// Server pings are answered with pongs transparently.
    pub async fn next_message(&mut self) -> Result<Message> {
        loop {
            while let Some((fin, opcode, start, end)) = parse_frame(&self.buf)? {
                let payload = self.buf[start..end].to_vec();
                self.buf.drain(..end);
                match opcode {
                    0x1 if fin => return Ok(Message::Text(payload)),
                    0x1 => self.partial = Some(payload),
                    0x0 => {
                        let mut p = self
                            .partial
                            .take()
                            .ok_or_else(|| anyhow!("continuation without a start frame"))?;
                        p.extend_from_slice(&payload);
                        if p.len() > MAX_MESSAGE {
                            bail!("message too large");
                        }
                        if fin {
                            return Ok(Message::Text(p));
                        }
                        self.partial = Some(p);
                    }
                    0x8 => return Ok(Message::Closed),
                    0x9 => self.send_frame(0xA, &payload).await?,
                    0xA => {}
                    0x2 => bail!("unexpected binary frame"),
                    other => bail!("unknown opcode {other}"),
                }
            }
            if self.buf.capacity() - self.buf.len() < 256 {
                self.buf.reserve(1024);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(Message::Closed);
            }
        }
    }

    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_frame(0x1, text.as_bytes()).await
    }

    /// Polite close: send a close frame (1000) and shut the write side.
    pub async fn close(mut self) {
        let _ = self.send_frame(0x8, &1000u16.to_be_bytes()).await;
        let _ = self.stream.shutdown().await;
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        // xorshift: masks need not be cryptographic for a load generator.
        let mut x = self.mask_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_state = x;
        let frame = encode_client_frame(opcode, payload, x.to_be_bytes());
        self.stream.write_all(&frame).await?;
        Ok(())
    }
}

pub fn encode_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// Parse one server (unmasked) frame header: `(fin, opcode, payload_start, payload_end)`.
fn parse_frame(buf: &[u8]) -> Result<Option<(bool, u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    let opcode = buf[0] & 0x0f;
    if buf[1] & 0x80 != 0 {
        bail!("server sent a masked frame");
    }
    let (len, hdr) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b) as usize, 10)
        }
        n => (n as usize, 2),
    };
    if len > MAX_MESSAGE {
        bail!("frame too large ({len} bytes)");
    }
    if buf.len() < hdr + len {
        return Ok(None);
    }
    Ok(Some((fin, opcode, hdr, hdr + len)))
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_roundtrip_lengths() {
        for len in [0usize, 5, 125, 126, 300, 70_000] {
            let payload = vec![b'a'; len];
            let mut f = encode_client_frame(1, &payload, [0, 0, 0, 0]);
            // turn into a server frame: clear mask bit and drop the mask key
            let mask_at = match len {
                0..=125 => 2,
                126..=65535 => 4,
                _ => 10,
            };
            f[1] &= 0x7f;
            f.drain(mask_at..mask_at + 4);
            let (fin, op, s, e) = parse_frame(&f).unwrap().unwrap();
            assert!(fin);
            assert_eq!(op, 1);
            assert_eq!(e - s, len);
            assert!(parse_frame(&f[..f.len() - 1]).unwrap().is_none() || len == 0);
        }
    }
}
