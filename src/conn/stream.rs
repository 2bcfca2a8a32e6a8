//! The socket under an HTTP/WebSocket connection: TCP (the shared port), TLS over TCP (`ssl.enabled`) or a Unix
//! domain socket (a reverse proxy on the same host). TCP and Unix are glommio streams over a plain file
//! descriptor, so the flusher's `sendmsg` on the raw fd works the same for either; a TLS connection's queue is
//! encrypted first ([`crate::tls::TlsStream::drain_queue`]).

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::{TcpStream, UnixStream};
use std::io;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::tls::TlsStream;

/// An accepted client socket.
#[derive(Debug)]
pub enum Stream {
    /// From the TCP listener.
    Tcp(TcpStream),
    /// From the Unix socket listener, with its descriptor (glommio's `UnixStream` does not expose it).
    Unix(UnixStream, RawFd),
    /// From the TCP listener with TLS on (boxed: rustls' state is large, plain connections stay small).
    Tls(Box<TlsStream>),
}

impl Stream {
    /// Takes ownership of an accepted Unix stream socket.
    ///
    /// # Safety
    /// `fd` must be an open, connected `AF_UNIX` stream socket that nothing else owns.
    pub unsafe fn unix_from_raw_fd(fd: RawFd) -> Stream {
        use std::os::fd::FromRawFd;
        Stream::Unix(UnixStream::from_raw_fd(fd), fd)
    }

    /// Shuts down one or both directions.
    pub async fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(how).await.map_err(Into::into),
            Stream::Unix(s, _) => s.shutdown(how).await.map_err(Into::into),
            Stream::Tls(s) => s.shutdown(how).await,
        }
    }

    /// True when this is a TLS connection whose records (an alert, a handshake reply) wait to be sent.
    pub fn tls_wants_write(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.wants_write())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(_, fd) => *fd,
            Stream::Tls(s) => s.fd(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s, _) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s, _) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s, _) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_close(cx),
            Stream::Unix(s, _) => Pin::new(s).poll_close(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}
