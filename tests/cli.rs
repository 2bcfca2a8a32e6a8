//! The command line of the real binary: `--help`, `--version`, `--check-config`, and log output without ANSI
//! escapes when stderr is not a terminal.

mod common;

use std::process::{Command, Output};

fn sockudo(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockudo"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(std::env::temp_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run sockudo")
}

#[test]
fn help_lists_every_flag_with_its_environment_variable() {
    let out = sockudo(&["--help"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--config",
        "CONFIG_FILE",
        "--port",
        "PORT",
        "--host",
        "HOST",
        "--shards",
        "SHARDS",
        "--debug",
        "DEBUG",
        "--check-config",
        "SHUTDOWN_GRACE_PERIOD",
        "NOTIFY_SOCKET",
    ] {
        assert!(text.contains(needle), "--help lacks {needle}:\n{text}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let out = sockudo(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sockudo {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_prints_the_effective_configuration_with_secrets_masked() {
    let dir = std::env::temp_dir().join(format!("sockudo-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        r#"{"port": 7005, "app_manager": {"array": {"apps": [{"id": "1", "key": "k", "secret": "hunter2"}]}}}"#,
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let out = sockudo(&["--check-config", "--config", path], &[("SHARDS", "3")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("\"port\": 7005"), "file value shown: {text}");
    assert!(
        text.contains("\"shards\": 3"),
        "environment applied: {text}"
    );
    assert!(text.contains("********"), "{text}");
    assert!(!text.contains("hunter2"), "secret leaked: {text}");

    let bad = sockudo(&["--check-config", "--config", path], &[("PORT", "abc")]);
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("PORT: \"abc\" is not a valid port"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    use std::io::Read;
    let port = common::free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockudo"))
        .env_clear()
        .env("PORT", &port)
        .env("HOST", "127.0.0.1")
        .env("SHARDS", "1")
        .env("METRICS_ENABLED", "false")
        .env("LOG_COLORS_ENABLED", "true")
        .env("RUST_LOG", "info")
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut chunk) {
            if n == 0 {
                break;
            }
            log.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&log).contains("sockudo ready") {
                break;
            }
        }
        log
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !reader.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = String::from_utf8_lossy(&reader.join().expect("reader")).to_string();
    assert!(log.contains("sockudo ready"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape in piped log: {log:?}");
}
