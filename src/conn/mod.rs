//! One client connection: its socket, its outbound queue and its Pusher-level state.
//!
//! A connection lives on exactly one shard and is shared there through `Rc`. One task serves it: the reader
//! (`websocket::serve`) owns the protocol. Queued frames are written by the shard's flusher ([`flush`]), or by a
//! writer task ([`write_loop`]) that exists only while the socket is full. Nothing holds a borrow of the socket
//! across an `.await`.

pub mod client_event;
mod flush;
pub mod http_conn;
pub mod outbound;
pub mod signin;
pub mod stream;
pub mod subscribe;
pub mod websocket;

use crate::app::App;
use crate::conn::stream::Stream;
use crate::metrics::ShardMetrics;
use crate::ws;
use bytes::Bytes;
use futures_lite::future::poll_fn;
use futures_lite::AsyncWrite;
use outbound::{Drain, Frame, Offer, OutQueue, QueueLimits};
use std::cell::{Cell, RefCell};
use std::os::unix::io::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::Poll;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Exchanging Pusher messages.
    Open,
    /// A close frame is queued or sent; waiting for the peer to go away.
    Closing,
    /// The reader has finished; the connection is out of every index.
    Closed,
}

/// Who writes a connection's queue out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    /// Nothing queued, or nobody needs to be told yet.
    Idle,
    /// On the shard flusher's list.
    Scheduled,
    /// The socket was full: a writer task waits for it to drain.
    Blocked,
    /// The write side is shut (close frame sent) or failed: nothing more is written.
    Done,
}

/// One channel a connection joined.
#[derive(Debug)]
pub struct Subscription {
    /// Channel name.
    pub name: Box<str>,
    /// For presence channels, the user id the socket joined as (from `channel_data`).
    pub presence_user: Option<Box<str>>,
}

/// The identity a connection signed in with.
#[derive(Debug, Clone)]
pub struct SignedInUser {
    /// `user_data.id`.
    pub id: Box<str>,
}

/// What to do when a subscriber's queue is full.
#[derive(Debug, Clone, Copy)]
pub struct SlowConsumerPolicy {
    /// Queue bounds.
    pub limits: QueueLimits,
    /// Close with 4100 (true) or drop the message (false).
    pub disconnect: bool,
}

/// One WebSocket client.
pub struct Connection {
    /// Shard-local key.
    pub id: u64,
    /// The Pusher socket id, unique and unpredictable.
    pub socket_id: Box<str>,
    /// The app the client connected to.
    pub app: Rc<App>,
    /// This connection, for handing itself to the flusher.
    me: Weak<Connection>,
    stream: RefCell<Stream>,
    fd: RawFd,
    /// The stream is [`Stream::Tls`]: queued frames are encrypted on the way out.
    tls: bool,
    out: RefCell<OutQueue>,
    writing: Cell<Writing>,
    state: Cell<ConnState>,
    /// After the queue drains, shut the socket's write side (a close frame is the last thing queued).
    shutdown_after_flush: Cell<bool>,
    /// The peer sent a close frame and ours answered it: the closing handshake is complete once it is written.
    peer_closed: Cell<bool>,
    /// Channels this connection has joined.
    pub channels: RefCell<Vec<Subscription>>,
    /// Bound on the replies the server itself makes (errors, pongs, acknowledgements): twice the event bound, so
    /// a slow subscriber still gets its replies while a client that never reads cannot grow the queue forever.
    reply_limits: QueueLimits,
    /// The queue went past its bound and the connection is being closed with 4100: the reader stops reading.
    overflowed: Cell<bool>,
    /// The user this connection signed in as (`pusher:signin`); never changes once set.
    pub user: RefCell<Option<SignedInUser>>,
    /// Signed in, or joined a private/presence channel: what `enable_user_authentication` asks for.
    pub authorized: Cell<bool>,
    /// Shard clock second the connection was established.
    pub connected_at: u32,
    /// Client events sent in the current one-second window: (window start second, count).
    pub client_event_window: Cell<(u32, u32)>,
    /// Shard clock second of the last message from the client.
    pub last_seen: Cell<u32>,
    /// Shard clock second when the server sent `pusher:ping` and is waiting for any reply.
    pub ping_sent_at: Cell<Option<u32>>,
    /// Shard clock second when closing began.
    pub closing_since: Cell<u32>,
    /// Messages dropped because the queue was full (with `disconnect_on_buffer_full` off).
    pub dropped: Cell<u64>,
    /// The counters of the shard serving this connection.
    pub metrics: Arc<ShardMetrics>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("socket_id", &self.socket_id)
            .field("app", &self.app.id)
            .field("state", &self.state.get())
            .finish()
    }
}

impl Connection {
    /// Wraps an upgraded socket; `limits` is the bound of its outbound queue (`websocket.max_messages` /
    /// `max_bytes`).
    pub fn new(
        id: u64,
        socket_id: String,
        app: Rc<App>,
        stream: Stream,
        now: u32,
        limits: QueueLimits,
        metrics: Arc<ShardMetrics>,
    ) -> Rc<Self> {
        let fd = stream.as_raw_fd();
        let tls = matches!(stream, Stream::Tls(_));
        Rc::new_cyclic(|me| Connection {
            id,
            socket_id: socket_id.into_boxed_str(),
            app,
            me: me.clone(),
            stream: RefCell::new(stream),
            fd,
            tls,
            out: RefCell::new(OutQueue::default()),
            writing: Cell::new(Writing::Idle),
            state: Cell::new(ConnState::Open),
            shutdown_after_flush: Cell::new(false),
            peer_closed: Cell::new(false),
            channels: RefCell::new(Vec::new()),
            reply_limits: QueueLimits {
                max_messages: limits.max_messages.saturating_mul(2),
                max_bytes: limits.max_bytes.saturating_mul(2),
            },
            overflowed: Cell::new(false),
            user: RefCell::new(None),
            authorized: Cell::new(false),
            connected_at: now,
            client_event_window: Cell::new((now, 0)),
            last_seen: Cell::new(now),
            ping_sent_at: Cell::new(None),
            closing_since: Cell::new(now),
            dropped: Cell::new(0),
            metrics,
        })
    }

    /// The subscription to `channel`, if joined.
    pub fn is_subscribed(&self, channel: &str) -> bool {
        self.channels.borrow().iter().any(|s| &*s.name == channel)
    }

    /// The user id of this connection in presence channel `channel`.
    pub fn presence_user(&self, channel: &str) -> Option<Box<str>> {
        self.channels
            .borrow()
            .iter()
            .find(|s| &*s.name == channel)
            .and_then(|s| s.presence_user.clone())
    }

    /// The signed-in user id, if any.
    pub fn user_id(&self) -> Option<Box<str>> {
        self.user.borrow().as_ref().map(|u| u.id.clone())
    }

    /// Current state.
    pub fn state(&self) -> ConnState {
        self.state.get()
    }

    /// True while messages may still be sent to the client.
    pub fn is_open(&self) -> bool {
        self.state.get() == ConnState::Open
    }

    /// Frames waiting in the queue.
    pub fn queued(&self) -> usize {
        self.out.borrow().len()
    }

    /// Queues a frame the server itself produced for this client. Replies count against the queue's bound like
    /// events do: a client that keeps asking without reading the answers is closed with 4100.
    pub fn send_control(&self, text: &str) {
        if self.is_open() {
            self.push_reply(Rc::new(ws::encode_text(text.as_bytes())));
        }
    }

    /// True once everything up to our close frame has been written (or writing failed): nothing more will go out.
    pub fn close_written(&self) -> bool {
        self.writing.get() == Writing::Done
    }

    /// True once the queue went past its bound and the connection is closing with 4100.
    pub fn overflowed(&self) -> bool {
        self.overflowed.get()
    }

    /// Sends `pusher:error` (`code` null when `None`), naming `channel` when it concerns one, and counts it.
    /// The connection stays open.
    pub fn send_error(&self, code: Option<u16>, message: &str, channel: Option<&str>) {
        if self.is_open() {
            self.metrics.error_sent(code);
            self.send_control(&crate::protocol::messages::error(code, message, channel));
        }
    }

    /// Sends the 101 response followed by the first frame (the last `frame_len` bytes of `bytes`) in one system
    /// call, straight to the fresh socket; whatever it does not take now is queued.
    pub fn send_upgrade(&self, bytes: Vec<u8>, frame_len: usize) {
        if self.tls {
            // Encrypted by the flusher with whatever else is queued in this executor pass.
            self.push(Rc::new(Bytes::from(bytes)), None);
            return;
        }
        // SAFETY: `bytes` outlives the call; the descriptor is this connection's.
        let sent = unsafe {
            libc::send(
                self.fd,
                bytes.as_ptr().cast(),
                bytes.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        // An error (full or broken socket) leaves everything to the writer, which reports it.
        let sent = usize::try_from(sent).unwrap_or(0);
        if sent == bytes.len() {
            self.metrics.ws_messages_sent.inc();
            self.metrics.ws_bytes_sent.add(frame_len as u64);
        } else {
            self.push(Rc::new(Bytes::from(bytes).slice(sent..)), None);
        }
    }

    /// Queues an already-encoded frame produced for this client alone (e.g. a pong), bounded like
    /// [`Connection::send_control`].
    pub fn send_raw(&self, frame: Bytes) {
        if self.is_open() {
            self.push_reply(Rc::new(frame));
        }
    }

    /// Queues a reply within [`Connection::reply_limits`]. A queue at its bound is first written out now (many
    /// requests read at once are answered before the flusher runs); only when the socket takes no more is the
    /// client not reading, and closed.
    fn push_reply(&self, frame: Frame) {
        if self.offer_reply(&frame) || (self.write_out_now() && self.offer_reply(&frame)) {
            return;
        }
        tracing::debug!(socket_id = %self.socket_id, queued = self.queued(), "replies not read: closing 4100");
        self.close_overflowed(self.last_seen.get());
    }

    /// Queues a reply if it fits [`Connection::reply_limits`].
    fn offer_reply(&self, frame: &Frame) -> bool {
        let offered = self
            .out
            .borrow_mut()
            .offer(frame.clone(), Some(self.reply_limits));
        if offered == Offer::Queued {
            self.schedule_write();
        }
        offered == Offer::Queued
    }

    /// Writes the queue to the socket at once, outside the flusher; true when all of it left.
    fn write_out_now(&self) -> bool {
        if matches!(self.writing.get(), Writing::Blocked | Writing::Done) {
            return false;
        }
        let drained = self.drain();
        self.count_written();
        match drained {
            // Still on the flusher's list if it was: the flusher then finds nothing to write.
            Ok(Drain::Empty) => true,
            Ok(Drain::WouldBlock) => false,
            Err(e) => {
                tracing::debug!(socket_id = %self.socket_id, error = %e, "write failed");
                self.writing.set(Writing::Done);
                self.abort();
                false
            }
        }
    }

    /// Closes a connection whose queue is over its bound: what was not started is dropped (memory goes back at
    /// once), then `pusher:error` and a close frame with 4100.
    fn close_overflowed(&self, now: u32) {
        self.metrics.slow_consumer_disconnections.inc();
        self.overflowed.set(true);
        self.out.borrow_mut().clear_unsent();
        self.close_with_error(
            crate::protocol::codes::OVER_CAPACITY,
            "Client too slow: buffer full",
            now,
        );
    }

    /// Queues a shared channel-event frame, applying the slow-consumer policy.
    /// Returns false when the connection was closed for being too slow.
    pub fn send_event(&self, frame: &Frame, policy: &SlowConsumerPolicy, now: u32) -> bool {
        if !self.is_open() {
            return true;
        }
        if self.push(frame.clone(), Some(policy.limits)) == Offer::Full {
            if policy.disconnect {
                tracing::debug!(socket_id = %self.socket_id, queued = self.queued(), "slow consumer: closing 4100");
                self.close_overflowed(now);
                return false;
            }
            self.dropped.set(self.dropped.get() + 1);
        }
        true
    }

    fn push(&self, frame: Frame, limits: Option<QueueLimits>) -> Offer {
        let outcome = self.out.borrow_mut().offer(frame, limits);
        if outcome == Offer::Queued {
            self.schedule_write();
        }
        outcome
    }

    /// Makes sure someone will write the queue out: the flusher, unless it already will or a writer task waits
    /// for the socket (and will write everything queued once it can).
    fn schedule_write(&self) {
        if self.writing.get() == Writing::Idle {
            if let Some(me) = self.me.upgrade() {
                self.writing.set(Writing::Scheduled);
                flush::schedule(me);
            }
        }
    }

    /// Called by the flusher: writes what the socket takes now; a full socket hands over to a writer task.
    fn flush(self: &Rc<Self>) {
        if self.writing.get() != Writing::Scheduled {
            return;
        }
        self.writing.set(Writing::Idle);
        if self.state.get() == ConnState::Closed {
            return;
        }
        let drained = self.drain();
        self.count_written();
        self.after_drain(drained);
        if self.writing.get() == Writing::Blocked {
            glommio::spawn_local(write_loop(self.clone())).detach();
        }
    }

    /// Acts on the result of a drain: shut the write side after the close frame, wait for a full socket, or
    /// give up on a broken one.
    fn after_drain(&self, drained: std::io::Result<Drain>) {
        match drained {
            Ok(Drain::Empty) => {
                if self.shutdown_after_flush.get() {
                    self.writing.set(Writing::Done);
                    // SAFETY: half-close of our own descriptor; the peer sees end-of-stream after the close frame.
                    unsafe {
                        libc::shutdown(self.fd, libc::SHUT_WR);
                    }
                } else {
                    self.writing.set(Writing::Idle);
                }
            }
            Ok(Drain::WouldBlock) => self.writing.set(Writing::Blocked),
            Err(e) => {
                tracing::debug!(socket_id = %self.socket_id, error = %e, "write failed");
                self.writing.set(Writing::Done);
                self.abort();
            }
        }
    }

    /// Sends `pusher:error` (when `message` is given) and a close frame with `code`, then stops sending anything
    /// else. The reader keeps running until the peer answers or goes away.
    pub fn close_with_error(&self, code: u16, message: &str, now: u32) {
        if self.is_open() {
            // Not through `send_control`: the close below counts this error once.
            let text = crate::protocol::messages::error(Some(code), message, None);
            self.push(Rc::new(ws::encode_text(text.as_bytes())), None);
        }
        self.close(code, message, now);
    }

    /// Queues a close frame and moves to `Closing`.
    pub fn close(&self, code: u16, reason: &str, now: u32) {
        if !self.is_open() {
            return;
        }
        self.metrics.error_sent(Some(code));
        self.shutdown_after_flush.set(true);
        self.push(Rc::new(ws::encode_close(code, reason)), None);
        self.state.set(ConnState::Closing);
        self.closing_since.set(now);
    }

    /// Answers the peer's close frame (echoing its code) and moves to `Closing`.
    pub fn acknowledge_close(&self, code: Option<u16>, now: u32) {
        if !self.is_open() {
            return;
        }
        let frame = match code {
            Some(c) => ws::encode_close(c, ""),
            None => Bytes::from_static(&[0x88, 0x00]),
        };
        self.shutdown_after_flush.set(true);
        self.peer_closed.set(true);
        self.push(Rc::new(frame), None);
        self.state.set(ConnState::Closing);
        self.closing_since.set(now);
    }

    /// After answering the peer's close frame: writes what is queued right now. True when all of it left, so
    /// the reader can end the connection at once (the socket closes with its last `Rc`) instead of shutting the
    /// write side and waiting for the peer's end-of-stream: two system calls and an io_uring poll less per
    /// client-initiated close. False when the socket is full or the handshake is not complete.
    pub fn finish_closing_handshake(self: &Rc<Self>) -> bool {
        if !self.peer_closed.get() || matches!(self.writing.get(), Writing::Blocked | Writing::Done)
        {
            return false;
        }
        let drained = self.drain();
        self.count_written();
        if matches!(drained, Ok(Drain::Empty)) {
            // The flusher skips a `Done` connection still on its list.
            self.writing.set(Writing::Done);
            return true;
        }
        self.after_drain(drained);
        if self.writing.get() == Writing::Blocked {
            glommio::spawn_local(write_loop(self.clone())).detach();
        }
        false
    }

    /// Marks the connection finished: nothing more is written, and the socket closes when the last `Rc` goes.
    /// A writer task waiting for a full socket is woken by cutting the socket.
    pub fn mark_closed(&self) {
        self.state.set(ConnState::Closed);
        if self.writing.get() == Writing::Blocked {
            self.abort();
        }
    }

    /// Cuts the socket in both directions so a reader blocked on a silent peer wakes up with end-of-file.
    pub fn abort(&self) {
        // SAFETY: shutdown on a descriptor this connection owns; errors (already closed) are irrelevant.
        unsafe {
            libc::shutdown(self.fd, libc::SHUT_RDWR);
        }
    }

    /// Writes what the socket takes now: plain frames with one `sendmsg`, TLS ones encrypted first (followed by
    /// close_notify once the close frame is out).
    fn drain(&self) -> std::io::Result<Drain> {
        if !self.tls {
            return self.out.borrow_mut().drain_into(self.fd);
        }
        let mut out = self.out.borrow_mut();
        match &mut *self.stream.borrow_mut() {
            Stream::Tls(s) => s.drain_queue(&mut out, self.shutdown_after_flush.get()),
            _ => out.drain_into(self.fd),
        }
    }

    /// Moves what the writer completed since the last call into the shard's counters: one add per `sendmsg`,
    /// not one per frame.
    fn count_written(&self) {
        let (frames, bytes) = self.out.borrow_mut().take_written();
        self.metrics.ws_messages_sent.add(frames);
        self.metrics.ws_bytes_sent.add(bytes);
    }

    /// Reads into `buf`, without holding the socket across the await.
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        use futures_lite::AsyncRead;
        poll_fn(|cx| Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, buf)).await
    }

    /// Reads into the shard's shared scratch buffer and hands the bytes to `consume` before any other task can
    /// touch the scratch buffer again: idle connections hold no read buffer of their own.
    pub async fn read_with<R>(
        &self,
        scratch: &RefCell<Box<[u8]>>,
        mut consume: impl FnMut(&[u8]) -> R,
    ) -> std::io::Result<R> {
        use futures_lite::AsyncRead;
        poll_fn(|cx| {
            let mut buf = scratch.borrow_mut();
            // The socket is released before `consume` runs: answering may write to it.
            let read = Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, &mut buf[..]);
            if self.tls && self.stream.borrow().tls_wants_write() {
                // rustls produced records of its own (an alert, a key update): the flusher sends them.
                self.schedule_write();
            }
            match read {
                Poll::Ready(Ok(n)) => {
                    self.metrics.ws_bytes_received.add(n as u64);
                    Poll::Ready(Ok(consume(&buf[..n])))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// Writes `conn`'s queue out while its socket is full: waits for writability, drains, and ends once the queue is
/// empty again (the flusher takes over) or the connection is closed.
async fn write_loop(conn: Rc<Connection>) {
    while conn.writing.get() == Writing::Blocked {
        if let Err(e) = wait_writable(&conn).await {
            tracing::debug!(socket_id = %conn.socket_id, error = %e, "write failed");
            conn.writing.set(Writing::Done);
            conn.abort();
            return;
        }
        if conn.state.get() == ConnState::Closed {
            return;
        }
        let drained = conn.drain();
        conn.count_written();
        conn.after_drain(drained);
    }
}

/// Waits until the socket takes more bytes, writing the front frame's rest through glommio so that the wait is
/// registered with the reactor.
async fn wait_writable(conn: &Connection) -> std::io::Result<()> {
    if conn.tls {
        // The records rustls holds are what waits; sending them registers with the reactor.
        return poll_fn(|cx| {
            if conn.state.get() == ConnState::Closed {
                return Poll::Ready(Ok(()));
            }
            match &mut *conn.stream.borrow_mut() {
                Stream::Tls(s) => s.poll_send_records(cx),
                _ => Poll::Ready(Ok(())),
            }
        })
        .await;
    }
    let written = poll_fn(|cx| {
        if conn.state.get() == ConnState::Closed {
            return Poll::Ready(Ok(0));
        }
        let out = conn.out.borrow();
        let Some(front) = out.front() else {
            return Poll::Ready(Ok(0));
        };
        Pin::new(&mut *conn.stream.borrow_mut()).poll_write(cx, front)
    })
    .await?;
    conn.out.borrow_mut().advance(written);
    conn.count_written();
    Ok(())
}
