//! A TLS server connection over a glommio TCP stream, with rustls driven by hand.
//!
//! Two ways to write: [`TlsStream`] implements `AsyncRead`/`AsyncWrite` for the HTTP phase (requests, responses,
//! the upgrade), and [`TlsStream::drain_queue`] encrypts a WebSocket connection's queued frames and sends the
//! records with non-blocking `sendmsg` on the descriptor, as the shard's flusher does for plain sockets.
//! Small frames are coalesced into one record (up to [`MAX_RECORD_PLAINTEXT`]), so a burst of events costs one
//! encryption and one system call, not one per frame.
//!
//! Memory per connection stays bounded: rustls keeps at most [`CIPHERTEXT_LIMIT`] bytes of records waiting for
//! the socket, the queue itself keeps only references to shared frames, and an idle connection holds no
//! plaintext or ciphertext buffer.

use crate::conn::outbound::{Drain, OutQueue};
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::ServerConnection;
use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Most encrypted bytes one connection keeps waiting for its socket. Frames beyond it stay in the connection's
/// queue (counted against `websocket.max_messages`/`max_bytes`) as shared references.
pub const CIPHERTEXT_LIMIT: usize = 32 * 1024;

/// Most plaintext of one TLS record.
const MAX_RECORD_PLAINTEXT: usize = 16 * 1024;

thread_local! {
    // The shard's buffer for coalescing queued frames into one record before encryption.
    static COALESCE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(MAX_RECORD_PLAINTEXT));
}

/// An accepted TCP connection speaking TLS.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    close_notify_sent: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("fd", &self.tcp.as_raw_fd())
            .field("handshaking", &self.tls.is_handshaking())
            .finish()
    }
}

/// The glommio stream as blocking-style `Read`/`Write` for rustls, within one poll: `Pending` becomes
/// `WouldBlock`, with the waker registered.
struct Polled<'a, 'b> {
    tcp: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for Polled<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_read(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for Polled<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Non-blocking `sendmsg` on the descriptor, for the flusher (no task, no waker).
struct SendNow(RawFd);

impl Write for SendNow {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // SAFETY: `IoSlice` is ABI-compatible with `iovec`; the slices outlive the call; no address or control data.
        let sent = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
            msg.msg_iovlen = bufs.len().min(crate::conn::outbound::MAX_IOVECS) as _;
            libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsStream {
    /// Starts the server side of a handshake on an accepted socket.
    pub fn new(
        tcp: TcpStream,
        config: std::sync::Arc<rustls::ServerConfig>,
    ) -> io::Result<TlsStream> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        tls.set_buffer_limit(Some(CIPHERTEXT_LIMIT));
        Ok(TlsStream {
            tcp,
            tls,
            close_notify_sent: false,
        })
    }

    /// The descriptor of the TCP socket.
    pub fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// True while rustls holds records (handshake messages, alerts, data) not yet sent.
    pub fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Sends the records rustls holds, through glommio (registering for writability when the socket is full).
    pub fn poll_send_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let mut io = Polled {
                tcp: &mut self.tcp,
                cx,
            };
            match self.tls.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a close_notify alert (once).
    fn queue_close_notify(&mut self) {
        if !self.close_notify_sent {
            self.close_notify_sent = true;
            self.tls.send_close_notify();
        }
    }

    /// Writes a WebSocket connection's queued frames without waiting: records rustls already holds go first,
    /// then the queue is encrypted record by record while the socket takes them. With `finish` (the close frame
    /// is the last thing queued) a close_notify follows the queue.
    pub fn drain_queue(&mut self, out: &mut OutQueue, finish: bool) -> io::Result<Drain> {
        let fd = self.fd();
        loop {
            while self.tls.wants_write() {
                match self.tls.write_tls(&mut SendNow(fd)) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(Drain::WouldBlock)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            if out.is_empty() {
                if finish && !self.close_notify_sent {
                    self.queue_close_notify();
                    continue;
                }
                return Ok(Drain::Empty);
            }
            if self.encrypt_from(out)? == 0 {
                // Only possible before the handshake completed, which a WebSocket connection is past.
                return Err(io::Error::other("TLS connection takes no data"));
            }
        }
    }

    /// Encrypts up to one record of the queue's front frames (copied into the shard's coalescing buffer when
    /// more than one fits); returns the plaintext bytes taken.
    fn encrypt_from(&mut self, out: &mut OutQueue) -> io::Result<usize> {
        let Some(front) = out.front() else {
            return Ok(0);
        };
        if front.len() >= MAX_RECORD_PLAINTEXT || out.len() == 1 {
            let taken = self.tls.writer().write(front)?;
            out.advance(taken);
            return Ok(taken);
        }
        COALESCE.with(|buf| {
            let mut buf = buf.borrow_mut();
            buf.clear();
            out.copy_front(&mut buf, MAX_RECORD_PLAINTEXT);
            let taken = self.tls.writer().write(&buf)?;
            out.advance(taken);
            Ok(taken)
        })
    }

    /// Starts a close: queues close_notify and sends what can be sent, then shuts the TCP side `how`.
    pub async fn shutdown(&mut self, how: std::net::Shutdown) -> io::Result<()> {
        if how != std::net::Shutdown::Read {
            self.queue_close_notify();
            futures_lite::future::poll_fn(|cx| self.poll_send_records(cx)).await?;
        }
        self.tcp.shutdown(how).await.map_err(Into::into)
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.tls.reader().read(buf) {
                // Zero: the peer sent close_notify.
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Handshake replies: sent as the peer waits for them. A full socket is retried on the next poll.
            if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
                return Poll::Ready(Err(e));
            }
            let mut io = Polled {
                tcp: &mut this.tcp,
                cx,
            };
            match this.tls.read_tls(&mut io) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => {
                    if let Err(e) = this.tls.process_new_packets() {
                        // Tell the peer why (the alert rustls queued), as far as the socket takes it now.
                        let _ = this.poll_send_records(cx);
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    /// Takes plaintext once the records of earlier writes are sent; what it encrypts is sent as far as the socket
    /// takes it now, the rest by `poll_flush`/`poll_close`.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_send_records(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let taken = this.tls.writer().write(buf)?;
        if taken == 0 && !buf.is_empty() {
            return Poll::Ready(Err(io::Error::other("TLS handshake not complete")));
        }
        if let Poll::Ready(Err(e)) = this.poll_send_records(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_send_records(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_close_notify();
        match this.poll_send_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_close(cx),
            other => other,
        }
    }
}
