//! The Unix domain socket listener (`unix_socket.*`), for a reverse proxy on the same host.
//!
//! Unix sockets have no `SO_REUSEPORT` balancing, so one acceptor thread blocks in `accept4` on the single
//! listening socket and hands each accepted descriptor to the worker shards in turn
//! ([`ShardControl::ServeUnix`]); from there a connection is served exactly like one from the TCP port.
//! A stale socket file (nobody listening) is replaced at start; the file is removed at stop.

use crate::config::UnixSocketConfig;
use crate::shard::ShardControl;
use anyhow::{anyhow, bail, Context};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc::UnboundedSender;

/// Listening backlog of the socket.
const BACKLOG: i32 = 4096;

/// A bound, listening Unix socket and, once started, the thread accepting on it.
#[derive(Debug)]
pub struct UnixAcceptor {
    path: PathBuf,
    listener: OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Makes `path` free for binding: nothing there, or a socket file nobody listens on (removed). A live server or
/// a file that is not a socket is an error.
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(anyhow!("unix_socket.path {}: {e}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "unix_socket.path {} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "unix_socket.path {}: another server is listening on it",
            path.display()
        ),
        Err(_) => {
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))
        }
    }
}

impl UnixAcceptor {
    /// Binds and listens on `config.path` with `config.permission_mode`.
    pub fn bind(config: &UnixSocketConfig) -> anyhow::Result<UnixAcceptor> {
        use socket2::{Domain, SockAddr, Socket, Type};
        let path = PathBuf::from(&config.path);
        let mode = config
            .mode()
            .map_err(|m| anyhow!("unix_socket.permission_mode: {m}"))?;
        clear_stale(&path)?;
        let socket =
            Socket::new(Domain::UNIX, Type::STREAM, None).context("cannot create a Unix socket")?;
        let addr = SockAddr::unix(&path)
            .with_context(|| format!("unix_socket.path {}", path.display()))?;
        socket
            .bind(&addr)
            .with_context(|| format!("cannot bind unix socket {}", path.display()))?;
        let acceptor = UnixAcceptor {
            path,
            listener: socket.into(),
            thread: None,
        };
        std::fs::set_permissions(&acceptor.path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", acceptor.path.display()))?;
        // SAFETY: listen on the socket this acceptor owns.
        if unsafe { libc::listen(acceptor.listener.as_raw_fd(), BACKLOG) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot listen on {}", acceptor.path.display()));
        }
        Ok(acceptor)
    }

    /// The socket file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts accepting: each connection goes to the next shard whose control channel is open.
    pub fn start(&mut self, shards: Vec<UnboundedSender<ShardControl>>) -> anyhow::Result<()> {
        let fd = self.listener.as_raw_fd();
        let thread = std::thread::Builder::new()
            .name("unix-accept".into())
            .spawn(move || accept_loop(fd, shards))
            .context("cannot start the unix socket acceptor")?;
        self.thread = Some(thread);
        Ok(())
    }

    /// Stops accepting and removes the socket file.
    pub fn stop(mut self) {
        // SAFETY: shutting down our listening socket wakes the acceptor blocked in accept4 (EINVAL).
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for UnixAcceptor {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the socket file");
            }
        }
    }
}

fn accept_loop(listener: i32, shards: Vec<UnboundedSender<ShardControl>>) {
    let mut next = 0usize;
    loop {
        // SAFETY: accept4 on the listening socket, which outlives this thread (joined before it is closed).
        let fd = unsafe {
            libc::accept4(
                listener,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) | Some(libc::ECONNABORTED) => continue,
                Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS)
                | Some(libc::ENOMEM) => {
                    tracing::warn!(error = %err, "unix socket accept failed");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
                // EINVAL after shutdown: stopping.
                _ => return,
            }
        }
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let mut conn = Some(unsafe { OwnedFd::from_raw_fd(fd) });
        for _ in 0..shards.len() {
            let shard = &shards[next % shards.len()];
            next = next.wrapping_add(1);
            match shard.send(ShardControl::ServeUnix(
                conn.take().expect("one connection"),
            )) {
                Ok(()) => break,
                Err(refused) => {
                    if let ShardControl::ServeUnix(fd) = refused.0 {
                        conn = Some(fd);
                    }
                }
            }
        }
        if conn.is_some() {
            // Every shard stopped: dropping the descriptor closes the connection.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: &Path, mode: &str) -> UnixSocketConfig {
        UnixSocketConfig {
            enabled: true,
            path: path.to_str().unwrap().into(),
            permission_mode: mode.into(),
        }
    }

    #[test]
    fn binds_with_the_mode_replaces_a_stale_file_refuses_a_live_one_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("sockudo-uds-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        // A stale socket file: bound once, nobody listening any more.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = UnixAcceptor::bind(&config(&path, "600")).expect("stale file replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = UnixAcceptor::bind(&config(&path, "600"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("another server is listening"), "{err}");
        live.stop();
        assert!(!path.exists(), "removed at stop");

        std::fs::write(&path, "not a socket").unwrap();
        let err = UnixAcceptor::bind(&config(&path, "660"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a socket"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
