//! The systemd notify protocol over the real binary, with a fake `NOTIFY_SOCKET` listener: READY=1 once every
//! shard listens, STATUS= with the connection count, WATCHDOG=1 pings that stop when a shard is wedged (debug
//! builds have a hook for that), STOPPING=1 on SIGTERM; both the path and the abstract `@name` socket forms.

mod common;

use common::{Server, ServerOptions};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// A fake service manager: a datagram socket collecting what the server sends.
struct FakeSystemd {
    socket: UnixDatagram,
    address: String,
    dir: std::path::PathBuf,
}

impl FakeSystemd {
    fn on_path(tag: &str) -> FakeSystemd {
        let dir = std::env::temp_dir().join(format!("sockudo-notify-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let socket = UnixDatagram::bind(&path).expect("bind fake NOTIFY_SOCKET");
        FakeSystemd {
            socket,
            address: path.to_str().unwrap().to_string(),
            dir,
        }
    }

    fn abstract_name(tag: &str) -> FakeSystemd {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("sockudo-test-{tag}-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).expect("bind abstract socket");
        FakeSystemd {
            socket,
            address: format!("@{name}"),
            dir: std::env::temp_dir(),
        }
    }

    fn env(&self, watchdog_usec: Option<u64>) -> Vec<(String, String)> {
        let mut env = vec![("NOTIFY_SOCKET".to_string(), self.address.clone())];
        if let Some(usec) = watchdog_usec {
            env.push(("WATCHDOG_USEC".into(), usec.to_string()));
        }
        env
    }

    /// Every message received within `wait`.
    fn collect(&self, wait: Duration) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return out;
            }
            self.socket.set_read_timeout(Some(left)).unwrap();
            match self.socket.recv(&mut buf) {
                Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).to_string()),
                Err(_) => return out,
            }
        }
    }

    /// Waits up to `wait` for a message satisfying `pred`; returns the messages seen up to and including it.
    fn wait_for(&self, wait: Duration, pred: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + wait;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            self.socket.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.socket.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).to_string();
                let done = pred(&msg);
                seen.push(msg);
                if done {
                    return seen;
                }
            }
        }
        panic!("expected message not received; got {seen:?}");
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        if self.dir != std::env::temp_dir() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn ready_status_watchdog_and_stopping_on_a_path_socket() {
    let systemd = FakeSystemd::on_path("path");
    let mut server = Server::start_with(ServerOptions {
        env: systemd.env(Some(400_000)),
        ..Default::default()
    });
    // The harness saw /up answer, so READY=1 was sent already (it is sent only after every shard listens).
    let first = systemd.wait_for(Duration::from_secs(5), |m| m == "READY=1");
    assert_eq!(first, vec!["READY=1"], "READY=1 comes first");
    let _client = server.client();
    systemd.wait_for(Duration::from_secs(5), |m| {
        m == "STATUS=serving: 1 connections"
    });
    let later = systemd.collect(Duration::from_millis(1000));
    let pings = later.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        pings >= 3,
        "watchdog pings every 200 ms expected: {later:?}"
    );

    unsafe {
        libc::kill(server.pid() as i32, libc::SIGHUP);
    }
    let reload = systemd.wait_for(Duration::from_secs(5), |m| m == "READY=1");
    assert!(
        reload
            .iter()
            .any(|m| m.starts_with("RELOADING=1\nMONOTONIC_USEC=")),
        "RELOADING=1 before READY=1: {reload:?}"
    );

    unsafe {
        libc::kill(server.pid() as i32, libc::SIGTERM);
    }
    systemd.wait_for(Duration::from_secs(5), |m| m == "STOPPING=1");
    systemd.wait_for(Duration::from_secs(5), |m| m.starts_with("STATUS=draining"));
    assert!(server.terminate(Duration::from_secs(15)).is_some());
}

#[test]
fn abstract_notify_socket_gets_ready() {
    let systemd = FakeSystemd::abstract_name("abstract");
    let _server = Server::start_with(ServerOptions {
        shards: 1,
        env: systemd.env(None),
        ..Default::default()
    });
    let seen = systemd.wait_for(Duration::from_secs(5), |m| m == "READY=1");
    assert_eq!(seen, vec!["READY=1"]);
    let more = systemd.collect(Duration::from_millis(500));
    assert!(
        more.iter().all(|m| m != "WATCHDOG=1"),
        "no watchdog configured, no pings: {more:?}"
    );
}

#[test]
fn watchdog_pings_stop_when_a_shard_is_wedged() {
    let systemd = FakeSystemd::on_path("wedge");
    let mut env = systemd.env(Some(400_000));
    env.push(("SOCKUDO_TEST_WEDGE_SHARD".into(), "1:1500".into()));
    let _server = Server::start_with(ServerOptions {
        shards: 2,
        env,
        ..Default::default()
    });
    systemd.wait_for(Duration::from_secs(5), |m| m == "READY=1");
    let before = systemd.collect(Duration::from_millis(1000));
    assert!(
        before.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "pings while every shard answers: {before:?}"
    );
    // Wedged at 1.5 s; its last heartbeat is at most 1 s older; it counts as stuck 3 s after that.
    let _ = systemd.collect(Duration::from_millis(5000));
    let after = systemd.collect(Duration::from_millis(2000));
    assert!(
        after.iter().all(|m| m != "WATCHDOG=1"),
        "pings must stop while a shard is wedged: {after:?}"
    );
}

#[test]
fn shipped_units_use_notify_watchdog_hardening_and_limits() {
    for unit in ["systemd/sockudo.service", "systemd/sockudo@.service"] {
        let text =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(unit))
                .expect("unit file");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for directive in [
            "Type=notify",
            "NotifyAccess=main",
            "WatchdogSec=30",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "LimitNOFILE=1048576",
            "LimitMEMLOCK=infinity",
        ] {
            assert!(lines.contains(&directive), "{unit} lacks {directive}");
        }
    }
}
