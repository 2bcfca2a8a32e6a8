//! sockudo-floor: the physical floor for Pusher fan-out on this machine.
//!
//! The least work any Pusher-protocol server must do: a single-threaded, edge-triggered epoll
//! (mio) loop that accepts WebSocket upgrades on any path, answers `pusher:subscribe` with a
//! pre-encoded `subscription_succeeded`, answers pings, and turns each `POST /apps/{id}/events`
//! into ONE encoded text frame written to every subscriber of the channel. No auth, no JSON
//! re-encoding beyond that one frame. `--coalesce` buffers frames per socket and flushes once per
//! event-loop iteration. Client events (`client-*`) are forwarded verbatim to the other
//! subscribers. Loopback only.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha1::{Digest, Sha1};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(usize::MAX);
const MAX_WBUF: usize = 64 * 1024 * 1024;
const MAX_RBUF: usize = 1024 * 1024;
const PONG: &[u8] = br#"{"event":"pusher:pong","data":"{}"}"#;

struct Args {
    bind: SocketAddr,
    coalesce: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut port: u16 = 6001;
    let mut host = "127.0.0.1".to_string();
    let mut coalesce = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => port = it.next().and_then(|v| v.parse().ok()).ok_or("--port N")?,
            "--bind" => host = it.next().ok_or("--bind ADDR")?,
            "--coalesce" => coalesce = true,
            "-h" | "--help" => {
                println!("usage: sockudo-floor [--bind 127.0.0.1] [--port 6001] [--coalesce]\n  --port 0 picks a free port; the bound address is printed on stdout");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let ip: std::net::IpAddr = host.parse().map_err(|_| format!("bad --bind {host}"))?;
    if !ip.is_loopback() {
        return Err(format!("refusing to bind non-loopback address {ip}"));
    }
    Ok(Args {
        bind: SocketAddr::new(ip, port),
        coalesce,
    })
}

#[derive(PartialEq)]
enum Kind {
    Handshake,
    Ws,
    Http,
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    kind: Kind,
    channels: Vec<usize>,
    closing: bool,
}

struct Channel {
    subs: Vec<usize>,
    /// Pre-encoded `subscription_succeeded` frame.
    succeeded: Vec<u8>,
}

struct Server {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    channel_ids: HashMap<String, usize>,
    channels: Vec<Channel>,
    coalesce: bool,
    dirty: Vec<usize>,
    to_close: Vec<usize>,
    next_socket: u64,
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    raise_fd_limit();
    if let Err(e) = serve(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn serve(args: Args) -> std::io::Result<()> {
    let poll = Poll::new()?;
    let mut listener = TcpListener::bind(args.bind)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!(
        "sockudo-floor listening on {} (coalesce: {})",
        listener.local_addr()?,
        args.coalesce
    );
    std::io::stdout().flush()?;
    let mut srv = Server {
        poll,
        conns: Vec::new(),
        free: Vec::new(),
        channel_ids: HashMap::new(),
        channels: Vec::new(),
        coalesce: args.coalesce,
        dirty: Vec::new(),
        to_close: Vec::new(),
        next_socket: 1,
    };
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = srv.poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                srv.accept_all(&listener);
                continue;
            }
            let idx = ev.token().0;
            if ev.is_writable() {
                srv.flush(idx);
            }
            if ev.is_readable() || ev.is_read_closed() {
                srv.on_readable(idx);
            }
        }
        let dirty = std::mem::take(&mut srv.dirty);
        for idx in dirty {
            srv.flush(idx);
        }
        let closing = std::mem::take(&mut srv.to_close);
        for idx in closing {
            srv.close(idx);
        }
    }
}

impl Server {
    fn accept_all(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let idx = self.free.pop().unwrap_or_else(|| {
                        self.conns.push(None);
                        self.conns.len() - 1
                    });
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(idx),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        self.free.push(idx);
                        continue;
                    }
                    self.conns[idx] = Some(Conn {
                        stream,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        kind: Kind::Handshake,
                        channels: Vec::new(),
                        closing: false,
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: report and retry on the next readiness event.
                    eprintln!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn on_readable(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(|c| c.as_mut()) else {
            return;
        };
        let mut tmp = [0u8; 16 * 1024];
        let mut eof = false;
        loop {
            match conn.stream.read(&mut tmp) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => conn.rbuf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
            if conn.rbuf.len() > MAX_RBUF {
                eof = true;
                break;
            }
        }
        let mut rbuf = std::mem::take(&mut conn.rbuf);
        let consumed = self.process(idx, &rbuf);
        rbuf.drain(..consumed);
        if let Some(conn) = self.conns.get_mut(idx).and_then(|c| c.as_mut()) {
            conn.rbuf = rbuf;
            if eof && !conn.closing {
                conn.closing = true;
                self.to_close.push(idx);
            }
        }
    }

    /// Handle complete requests/frames in `buf`; returns the bytes consumed.
    fn process(&mut self, idx: usize, buf: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let kind = match self.conns.get(idx).and_then(|c| c.as_ref()) {
                Some(c) if !c.closing => &c.kind,
                _ => return pos,
            };
            let step = match kind {
                Kind::Handshake => self.handshake(idx, &buf[pos..]),
                Kind::Http => self.http(idx, &buf[pos..]),
                Kind::Ws => self.ws_frame(idx, &buf[pos..]),
            };
            match step {
                Some(n) => pos += n,
                None => return pos,
            }
        }
    }

    fn handshake(&mut self, idx: usize, buf: &[u8]) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let (len, req) = match parse_head(buf, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) => return None,
            Err(()) => {
                self.mark_close(idx);
                return None;
            }
        };
        let key = header(&req, "sec-websocket-key").map(<[u8]>::to_vec);
        let is_get = req.method == Some("GET");
        match (is_get, key) {
            (true, Some(key)) => {
                let mut sha = Sha1::new();
                sha.update(&key);
                sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
                let accept = base64(&sha.finalize());
                let mut out = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                )
                .into_bytes();
                let sid = self.next_socket;
                self.next_socket += 1;
                let est = format!(
                    r#"{{"event":"pusher:connection_established","data":"{{\"socket_id\":\"{}.{}\",\"activity_timeout\":120}}"}}"#,
                    sid / 1000 + 1,
                    sid
                );
                out.extend_from_slice(&text_frame(est.as_bytes()));
                if let Some(c) = self.conns[idx].as_mut() {
                    c.kind = Kind::Ws;
                }
                self.send(idx, &out);
                Some(len)
            }
            _ => {
                if let Some(c) = self.conns[idx].as_mut() {
                    c.kind = Kind::Http;
                }
                Some(0) // re-parse the same bytes as an HTTP request
            }
        }
    }

    fn http(&mut self, idx: usize, buf: &[u8]) -> Option<usize> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let (hlen, req) = match parse_head(buf, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) => return None,
            Err(()) => {
                self.mark_close(idx);
                return None;
            }
        };
        let clen = header(&req, "content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if buf.len() < hlen + clen {
            return None;
        }
        let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
        let is_events =
            req.method == Some("POST") && path.starts_with("/apps/") && path.ends_with("/events");
        let body = &buf[hlen..hlen + clen];
        let ok = is_events && self.publish(body);
        let resp: &[u8] = if ok {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        } else if is_events {
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        };
        self.send(idx, resp);
        Some(hlen + clen)
    }

    /// One frame per channel, written to every subscriber.
    fn publish(&mut self, body: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Trigger<'a> {
            #[serde(borrow)]
            name: &'a RawValue,
            #[serde(borrow, default)]
            data: Option<&'a RawValue>,
            #[serde(default)]
            channel: Option<String>,
            #[serde(default)]
            channels: Option<Vec<String>>,
        }
        let Ok(t) = serde_json::from_slice::<Trigger>(body) else {
            return false;
        };
        let targets: Vec<String> = t
            .channels
            .unwrap_or_default()
            .into_iter()
            .chain(t.channel)
            .collect();
        for ch in &targets {
            let Some(&id) = self.channel_ids.get(ch) else {
                continue;
            };
            let mut payload = Vec::with_capacity(body.len() + 64);
            payload.extend_from_slice(b"{\"event\":");
            payload.extend_from_slice(t.name.get().as_bytes());
            payload.extend_from_slice(b",\"channel\":");
            payload.extend_from_slice(serde_json::to_string(ch).unwrap_or_default().as_bytes());
            payload.extend_from_slice(b",\"data\":");
            payload.extend_from_slice(t.data.map(|d| d.get()).unwrap_or("\"\"").as_bytes());
            payload.push(b'}');
            let frame = text_frame(&payload);
            self.broadcast(id, &frame, None);
        }
        true
    }

    fn broadcast(&mut self, channel: usize, frame: &[u8], except: Option<usize>) {
        let subs = std::mem::take(&mut self.channels[channel].subs);
        for &s in &subs {
            if Some(s) != except {
                self.send(s, frame);
            }
        }
        self.channels[channel].subs = subs;
    }

    fn ws_frame(&mut self, idx: usize, buf: &[u8]) -> Option<usize> {
        if buf.len() < 2 {
            return None;
        }
        let opcode = buf[0] & 0x0f;
        let masked = buf[1] & 0x80 != 0;
        let (len, mut hdr) = match buf[1] & 0x7f {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if !masked || len > MAX_RBUF {
            self.mark_close(idx);
            return None;
        }
        if buf.len() < hdr + 4 + len {
            return None;
        }
        let mask = [buf[hdr], buf[hdr + 1], buf[hdr + 2], buf[hdr + 3]];
        hdr += 4;
        let payload: Vec<u8> = buf[hdr..hdr + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i & 3])
            .collect();
        match opcode {
            0x1 => self.ws_text(idx, &payload),
            0x8 => {
                self.send(idx, &[0x88, 0x02, 0x03, 0xe8]);
                self.mark_close(idx);
            }
            0x9 => {
                let mut f = vec![0x8a, payload.len().min(125) as u8];
                f.extend_from_slice(&payload[..payload.len().min(125)]);
                self.send(idx, &f);
            }
            _ => {}
        }
        Some(hdr + len)
    }

    fn ws_text(&mut self, idx: usize, payload: &[u8]) {
        #[derive(Deserialize)]
        struct In<'a> {
            #[serde(borrow)]
            event: Cow<'a, str>,
            #[serde(borrow, default)]
            channel: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            data: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Sub {
            channel: String,
        }
        let Ok(msg) = serde_json::from_slice::<In>(payload) else {
            return;
        };
        match msg.event.as_ref() {
            "pusher:subscribe" | "pusher:unsubscribe" => {
                let Some(raw) = msg.data else { return };
                let sub = serde_json::from_str::<Sub>(raw.get()).ok().or_else(|| {
                    let inner: String = serde_json::from_str(raw.get()).ok()?;
                    serde_json::from_str::<Sub>(&inner).ok()
                });
                let Some(sub) = sub else { return };
                if msg.event == "pusher:subscribe" {
                    self.subscribe(idx, sub.channel);
                } else {
                    self.unsubscribe(idx, &sub.channel);
                }
            }
            "pusher:ping" => self.send(idx, &text_frame(PONG)),
            ev if ev.starts_with("client-") => {
                let Some(ch) = msg.channel else { return };
                let Some(&id) = self.channel_ids.get(ch.as_ref()) else {
                    return;
                };
                let member = self.conns[idx]
                    .as_ref()
                    .is_some_and(|c| c.channels.contains(&id));
                if member {
                    self.broadcast(id, &text_frame(payload), Some(idx));
                }
            }
            _ => {}
        }
    }

    fn subscribe(&mut self, idx: usize, name: String) {
        let id = match self.channel_ids.get(&name) {
            Some(&id) => id,
            None => {
                let id = self.channels.len();
                let succeeded = format!(
                    r#"{{"event":"pusher_internal:subscription_succeeded","channel":{},"data":"{{}}"}}"#,
                    serde_json::to_string(&name).unwrap_or_default()
                );
                self.channels.push(Channel {
                    subs: Vec::new(),
                    succeeded: text_frame(succeeded.as_bytes()),
                });
                self.channel_ids.insert(name, id);
                id
            }
        };
        let Some(conn) = self.conns[idx].as_mut() else {
            return;
        };
        if conn.channels.contains(&id) {
            return; // duplicate subscribe: no second reply
        }
        conn.channels.push(id);
        self.channels[id].subs.push(idx);
        let frame = std::mem::take(&mut self.channels[id].succeeded);
        self.send(idx, &frame);
        self.channels[id].succeeded = frame;
    }

    fn unsubscribe(&mut self, idx: usize, name: &str) {
        let Some(&id) = self.channel_ids.get(name) else {
            return;
        };
        if let Some(conn) = self.conns[idx].as_mut() {
            conn.channels.retain(|&c| c != id);
        }
        let subs = &mut self.channels[id].subs;
        if let Some(p) = subs.iter().position(|&s| s == idx) {
            subs.swap_remove(p);
        }
    }

    /// Queue (coalesce) or write `bytes` now; leftovers wait for the next writable edge.
    fn send(&mut self, idx: usize, bytes: &[u8]) {
        let Some(conn) = self.conns.get_mut(idx).and_then(|c| c.as_mut()) else {
            return;
        };
        if self.coalesce || !conn.wbuf.is_empty() {
            if conn.wbuf.is_empty() {
                self.dirty.push(idx);
            }
            conn.wbuf.extend_from_slice(bytes);
            if conn.wbuf.len() > MAX_WBUF {
                conn.closing = true;
                self.to_close.push(idx);
            }
            return;
        }
        let mut off = 0;
        while off < bytes.len() {
            match conn.stream.write(&bytes[off..]) {
                Ok(0) => break,
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    if !conn.closing {
                        conn.closing = true;
                        self.to_close.push(idx);
                    }
                    return;
                }
            }
        }
        if off < bytes.len() {
            conn.wbuf.extend_from_slice(&bytes[off..]);
        }
    }

    fn flush(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(|c| c.as_mut()) else {
            return;
        };
        let mut off = 0;
        while off < conn.wbuf.len() {
            match conn.stream.write(&conn.wbuf[off..]) {
                Ok(0) => break,
                Ok(n) => off += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    if !conn.closing {
                        conn.closing = true;
                        self.to_close.push(idx);
                    }
                    break;
                }
            }
        }
        conn.wbuf.drain(..off);
        if conn.wbuf.capacity() > 64 * 1024 && conn.wbuf.is_empty() {
            conn.wbuf = Vec::new();
        }
    }

    fn mark_close(&mut self, idx: usize) {
        if let Some(conn) = self.conns.get_mut(idx).and_then(|c| c.as_mut()) {
            if !conn.closing {
                conn.closing = true;
                self.to_close.push(idx);
            }
        }
    }

    fn close(&mut self, idx: usize) {
        self.flush(idx);
        let Some(mut conn) = self.conns.get_mut(idx).and_then(|c| c.take()) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        for id in conn.channels {
            let subs = &mut self.channels[id].subs;
            if let Some(p) = subs.iter().position(|&s| s == idx) {
                subs.swap_remove(p);
            }
        }
        self.free.push(idx);
    }
}

/// Unmasked server text frame.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x81);
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls with valid pointers.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Parses an HTTP request head into `headers`: `Ok(None)` while incomplete, `Err` for garbage.
fn parse_head<'h, 'b>(
    buf: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<Option<(usize, httparse::Request<'h, 'b>)>, ()> {
    let mut req = httparse::Request::new(headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => Ok(Some((n, req))),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(()),
    }
}

/// The value of header `name` (case-insensitive).
fn header<'b>(req: &httparse::Request<'_, 'b>, name: &str) -> Option<&'b [u8]> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_rfc6455_example() {
        use sha1::{Digest, Sha1};
        let mut sha = Sha1::new();
        sha.update(b"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
        assert_eq!(
            super::base64(&sha.finalize()),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
