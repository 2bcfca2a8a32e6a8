//! Out of file descriptors: silent connections are cut by the header timeout, the accept loop warns at most every
//! 10 s instead of on every retry, and the server serves new clients again once descriptors come back.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// File descriptors the server process may hold.
const FD_LIMIT: u64 = 64;

fn up(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

#[test]
fn running_out_of_descriptors_is_survived_with_few_warnings() {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("sockudo-fd-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockudo"));
    cmd.current_dir(&dir)
        .env_clear()
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "1")
        .env("METRICS_ENABLED", "false")
        .env("HTTP_API_HEADER_TIMEOUT", "1")
        .env("RUST_LOG", "warn")
        .env("LOG_COLORS_ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: only async-signal-safe setrlimit between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: FD_LIMIT,
                rlim_max: FD_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn sockudo");
    let deadline = Instant::now() + Duration::from_secs(20);
    while up(port).is_none() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Twice as many silent connections as the server has descriptors.
    let silent: Vec<TcpStream> = (0..2 * FD_LIMIT)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // Each silent connection is answered 408 and closed after the header timeout, the ones waiting in the
    // backlog once they are accepted; then the server is reachable again.
    let started = Instant::now();
    let answer = loop {
        if let Some(text) = up(port) {
            if text.starts_with("HTTP/1.1 200") {
                break text;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "not serving again after the silent connections timed out"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(answer.contains("OK"), "{answer}");
    drop(silent);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    let warnings = log.matches("accept failed").count();
    assert!(
        warnings >= 1,
        "the descriptor shortage was not reported: {log}"
    );
    assert!(warnings <= 3, "{warnings} accept warnings: {log}");
    assert!(log.contains("accepting connections again"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
