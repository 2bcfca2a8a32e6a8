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

/// Two generator processes share one fan-out through files: one publishes, the other only listens; both count
/// their own connections' deliveries exactly.
#[test]
fn two_generator_processes_share_one_fanout() {
    let (_floor, port) = start_floor();
    let dir = std::env::temp_dir().join(format!("sockudo-bench-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let url = format!("ws://127.0.0.1:{port}");
    let generator = |extra: &[String]| {
        Command::new(env!("CARGO_BIN_EXE_sockudo-bench"))
            .args(["--url", &url, "--json", "--quiet", "--timeout", "120"])
            .args([
                "-n", "30", "-c", "3", "fanout", "--events", "12", "--drain", "30",
            ])
            .args(["--start-file", &file("start")])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockudo-bench")
    };
    let listener = generator(&[
        "--listen-only".into(),
        "--ready-file".into(),
        file("ready1"),
        "--done-file".into(),
        file("done1"),
    ]);
    let publisher = generator(&[
        "--ready-file".into(),
        file("ready0"),
        "--wait-done".into(),
        file("done1"),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !(dir.join("ready0").exists() && dir.join("ready1").exists()) {
        assert!(
            std::time::Instant::now() < deadline,
            "generators never got ready"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Nothing is published before the start file exists.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!dir.join("done1").exists());
    std::fs::write(dir.join("start"), b"").expect("start file");
    let report = |child: Child| {
        let out = child.wait_with_output().expect("generator output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "generator failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str::<serde_json::Value>(&stdout).expect("JSON report")
    };
    let (l, p) = (report(listener), report(publisher));
    assert_eq!(p["events_sent"], 12);
    assert!(l["events_sent"].is_null());
    for r in [&l, &p] {
        assert_eq!(r["subscribed"], 30);
        assert_eq!(r["expected_deliveries"], 30 * 12 / 3);
        assert_eq!(r["delivered"], r["expected_deliveries"]);
        assert_eq!(r["ok"], true);
    }
    let ready: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ready1")).unwrap()).unwrap();
    assert_eq!(ready["subscribed"], 30);
    // Both stamp on the system-wide monotonic clock: the listener's last delivery follows the first publish.
    assert!(l["last_delivery_ns"].as_u64().unwrap() > p["first_event_ns"].as_u64().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}
