//! The systemd service manager protocol (`sd_notify`), written out: one datagram per state change to the Unix
//! socket named by `NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace), and the watchdog interval
//! from `WATCHDOG_USEC` / `WATCHDOG_PID`. Without `NOTIFY_SOCKET` (not under `Type=notify`) nothing is sent.

use crate::metrics::MetricsRegistry;
use crate::shard::liveness::{Liveness, STALE_AFTER};
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where `NOTIFY_SOCKET` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    /// A socket file.
    Path(std::path::PathBuf),
    /// A name in the abstract namespace (`@name` in the variable, without the `@` here).
    Abstract(Vec<u8>),
}

impl NotifyTarget {
    /// Parses the value of `NOTIFY_SOCKET`; `None` when it names nothing usable.
    pub fn parse(value: &str) -> Option<NotifyTarget> {
        if let Some(name) = value.strip_prefix('@') {
            return (!name.is_empty()).then(|| NotifyTarget::Abstract(name.as_bytes().to_vec()));
        }
        value
            .starts_with('/')
            .then(|| NotifyTarget::Path(value.into()))
    }

    fn address(&self) -> io::Result<SocketAddr> {
        match self {
            NotifyTarget::Path(path) => SocketAddr::from_pathname(path),
            NotifyTarget::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)
            }
        }
    }
}

/// A connection to the service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier for `NOTIFY_SOCKET`, or `None` when it is unset or unusable (logged).
    pub fn from_env() -> Option<Notifier> {
        let value = std::env::var("NOTIFY_SOCKET").ok()?;
        let Some(target) = NotifyTarget::parse(&value) else {
            tracing::warn!(NOTIFY_SOCKET = %value, "NOTIFY_SOCKET is not a socket path or @name: not notifying systemd");
            return None;
        };
        match Notifier::connect(&target) {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!(NOTIFY_SOCKET = %value, error = %e, "cannot use NOTIFY_SOCKET: not notifying systemd");
                None
            }
        }
    }

    /// A notifier sending to `target`.
    pub fn connect(target: &NotifyTarget) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        // A manager that does not read (its queue holds only `net.unix.max_dgram_qlen` datagrams) must never
        // stall the server, least of all its shutdown: a message that does not fit is dropped.
        socket.set_nonblocking(true)?;
        Ok(Notifier {
            socket,
            addr: target.address()?,
        })
    }

    /// Sends one state message (`READY=1`, `STATUS=...`, several separated by newlines), without waiting.
    pub fn notify(&self, state: &str) {
        match self.socket.send_to_addr(state.as_bytes(), &self.addr) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tracing::debug!(state, "systemd's notify queue is full: message dropped");
            }
            Err(e) => tracing::warn!(error = %e, "cannot notify systemd"),
        }
    }
}

/// Half the watchdog timeout systemd asked for (it expects a ping at least that often), or `None` when
/// `WATCHDOG_USEC` is unset/invalid or `WATCHDOG_PID` names another process.
pub fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    Some(Duration::from_micros(usec / 2))
}

/// `RELOADING=1` with the `CLOCK_MONOTONIC` time systemd asks for (`Type=notify-reload`); `READY=1` follows once
/// the reload is done, whether it was applied or refused.
pub fn reloading_message() -> String {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
    }
    let usec = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// The `STATUS=` text for the current state.
pub fn status_line(draining: bool, connections: u64) -> String {
    let state = if draining { "draining" } else { "serving" };
    format!("STATUS={state}: {connections} connections")
}

/// Keeps systemd informed while the server runs: `STATUS=` with the connection count and, when a watchdog is
/// configured, `WATCHDOG=1`, sent only while every worker shard's executor is responsive (see [`Liveness`]).
#[derive(Debug)]
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    /// Starts the supervising thread.
    pub fn start(
        notifier: Arc<Notifier>,
        watchdog: Option<Duration>,
        liveness: Arc<Liveness>,
        metrics: Arc<MetricsRegistry>,
    ) -> io::Result<Supervisor> {
        let stop = Arc::new(AtomicBool::new(false));
        let draining = Arc::new(AtomicBool::new(false));
        let tick = watchdog
            .unwrap_or(Duration::from_secs(2))
            .min(Duration::from_secs(2));
        let (stop_flag, draining_flag) = (stop.clone(), draining.clone());
        let thread = std::thread::Builder::new()
            .name("systemd-notify".into())
            .spawn(move || {
                let mut last_status = String::new();
                let mut reported_stuck: Vec<usize> = Vec::new();
                while !stop_flag.load(Ordering::Relaxed) {
                    let status =
                        status_line(draining_flag.load(Ordering::Relaxed), metrics.connected());
                    if status != last_status {
                        notifier.notify(&status);
                        last_status = status;
                    }
                    if watchdog.is_some() {
                        let stuck = liveness.stuck(Instant::now(), STALE_AFTER);
                        if stuck.is_empty() {
                            notifier.notify("WATCHDOG=1");
                        } else if stuck != reported_stuck {
                            tracing::error!(
                                shards = ?stuck,
                                "worker shards are not responding: withholding the systemd watchdog ping"
                            );
                        }
                        reported_stuck = stuck;
                    }
                    std::thread::sleep(tick);
                }
            })?;
        Ok(Supervisor {
            stop,
            draining,
            thread: Some(thread),
        })
    }

    /// The status from now on says `draining`.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Stops the thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_forms() {
        assert_eq!(
            NotifyTarget::parse("/run/systemd/notify"),
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            NotifyTarget::parse("@sd-notify"),
            Some(NotifyTarget::Abstract(b"sd-notify".to_vec()))
        );
        assert_eq!(NotifyTarget::parse("@"), None);
        assert_eq!(NotifyTarget::parse("relative/path"), None);
    }

    #[test]
    fn watchdog_interval_is_half_the_timeout_and_only_for_this_process() {
        assert_eq!(
            watchdog_interval(Some("10000000"), None, 7),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            watchdog_interval(Some("10000000"), Some("7"), 7),
            Some(Duration::from_secs(5))
        );
        assert_eq!(watchdog_interval(Some("10000000"), Some("8"), 7), None);
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("x"), None, 7), None);
        assert_eq!(watchdog_interval(None, None, 7), None);
    }

    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("sockudo-notify-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(&NotifyTarget::Path(path.clone())).unwrap();
        notifier.notify("READY=1");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
