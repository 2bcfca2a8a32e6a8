//! The Docker image. The Dockerfile's promises are checked always; the image is built and started only where a
//! Docker daemon answers (`docker info`), and the test says plainly when it was not run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn dockerfile() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile"))
        .expect("Dockerfile")
}

#[test]
fn dockerfile_is_multi_stage_non_root_healthchecked_and_uses_its_config() {
    let text = dockerfile();
    let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert!(stages >= 2, "multi-stage build expected");
    let user = text
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER line");
    assert_ne!(user.trim(), "root");
    assert_ne!(user.trim(), "0");
    assert!(
        text.contains("HEALTHCHECK") && text.contains("GET /up"),
        "HEALTHCHECK on /up"
    );
    // The config copied into the image is the one the server is pointed at.
    let copied = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("COPY config/")
                .and_then(|rest| rest.split_whitespace().nth(1))
        })
        .expect("a COPY of the config into the image");
    assert!(copied.starts_with("/etc/sockudo/"), "{copied}");
    assert!(
        text.contains(&format!("CONFIG_FILE={copied}")),
        "CONFIG_FILE must point at {copied}"
    );
    let dockerignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .expect(".dockerignore");
    assert!(dockerignore.lines().any(|l| l.trim() == "target"));
}

fn docker(args: &[&str]) -> Option<std::process::Output> {
    Command::new("docker").args(args).output().ok()
}

#[test]
fn image_builds_starts_and_turns_healthy_where_docker_runs() {
    let available = docker(&["info"]).is_some_and(|o| o.status.success());
    if !available {
        eprintln!(
            "NOT RUN: image_builds_starts_and_turns_healthy_where_docker_runs: no Docker daemon \
             (`docker info` failed); the Dockerfile checks above still ran"
        );
        return;
    }
    let tag = format!("sockudo-test:{}", std::process::id());
    let root = env!("CARGO_MANIFEST_DIR");
    let build = docker(&["build", "-t", &tag, root]).expect("docker build");
    assert!(
        build.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&build.stderr)
    );
    let name = format!("sockudo-test-{}", std::process::id());
    let run = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--ulimit",
        "memlock=-1",
        "--security-opt",
        "seccomp=unconfined",
        "-e",
        "SHARDS=1",
        &tag,
    ])
    .expect("docker run");
    assert!(
        run.status.success(),
        "docker run failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut health = String::new();
    while Instant::now() < deadline {
        let out = docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]).expect("inspect");
        health = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if health == "healthy" {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let user = docker(&["exec", &name, "id", "-u"]).expect("docker exec");
    let logs = docker(&["logs", &name]).expect("docker logs");
    let _ = docker(&["rm", "-f", &name]);
    let _ = docker(&["rmi", "-f", &tag]);
    assert_eq!(
        health,
        "healthy",
        "{}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_ne!(String::from_utf8_lossy(&user.stdout).trim(), "0");
    assert!(
        String::from_utf8_lossy(&logs.stderr).contains("/etc/sockudo/config.toml"),
        "the server read the image's config file"
    );
}
