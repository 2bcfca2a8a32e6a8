//! Smoke test: run the generator against the floor server and check every delivery arrived.
//! No timing assertions: only counts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Floor(Child);

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start the floor on a free port; returns the process guard and the port.
fn start_floor() -> (Floor, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockudo-floor"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sockudo-floor");
    let stdout = child.stdout.take().expect("floor stdout");
    let guard = Floor(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read floor banner");
    let port = line
        .split_whitespace()
        .find_map(|w| w.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()))
        .unwrap_or_else(|| panic!("no port in floor banner {line:?}"));
    (guard, port)
}

fn bench(port: u16, args: &[&str]) -> serde_json::Value {
    let url = format!("ws://127.0.0.1:{port}");
    let out = Command::new(env!("CARGO_BIN_EXE_sockudo-bench"))
        .args(["--url", &url, "--json", "--quiet", "--timeout", "120"])
        .args(args)
        .output()
        .expect("run sockudo-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sockudo-bench failed ({:?}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("JSON report")
}

#[test]
fn fanout_smoke_every_delivery_arrives() {
    let (_floor, port) = start_floor();
    let r = bench(
        port,
        &[
            "-n",
            "200",
            "-c",
            "4",
            "fanout",
            "--events",
            "50",
            "--in-flight",
            "2",
        ],
    );
    assert_eq!(r["subscribed"], 200);
    assert_eq!(r["events_sent"], 50);
    assert_eq!(r["expected_deliveries"], 200 * 50 / 4);
    assert_eq!(r["delivered"], r["expected_deliveries"]);
    assert_eq!(r["missing"], 0);
    assert_eq!(r["ok"], true);
}

#[test]
fn private_fanout_and_client_events_smoke() {
    let (_floor, port) = start_floor();
    let r = bench(
        port,
        &[
            "-n",
            "40",
            "-c",
            "2",
            "--private",
            "fanout",
            "--events",
            "20",
        ],
    );
    assert_eq!(r["delivered"], 40 * 20 / 2);
    let r = bench(
        port,
        &[
            "-n",
            "40",
            "-c",
            "4",
            "client-events",
            "--events",
            "8",
            "--rate",
            "40",
        ],
    );
    // one sender per channel, 9 receivers each: 8 events x 9 receivers
    assert_eq!(r["expected_deliveries"], 8 * 9);
    assert_eq!(r["delivered"], r["expected_deliveries"]);
}

#[test]
fn refuses_non_loopback_target() {
    let out = Command::new(env!("CARGO_BIN_EXE_sockudo-bench"))
        .args(["--url", "ws://192.0.2.1:6001", "--timeout", "5", "idle"])
        .output()
        .expect("run sockudo-bench");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("non-loopback"));
}
