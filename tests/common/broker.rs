//! Throwaway message brokers for cluster tests: a Redis or NATS server of the test's own on a free loopback
//! port (stopped when dropped, restartable on the same port), or the shared Redis Cluster that
//! `scripts/services/redis-cluster.sh` starts. A missing server binary or variable fails the test loudly.

use super::free_port;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which bus a cluster test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    Redis,
    RedisCluster,
    Nats,
}

/// A running broker.
pub struct Broker {
    pub driver: Driver,
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Broker {
    /// Starts a broker of its own for `driver` (Redis Cluster: the shared one).
    pub fn start(driver: Driver) -> Broker {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("sockudo-broker-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut broker = Broker {
            driver,
            port,
            child: None,
            dir,
        };
        if driver != Driver::RedisCluster {
            broker.spawn();
        }
        broker
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut cmd = match self.driver {
            Driver::Redis => {
                let mut c = Command::new("redis-server");
                c.args([
                    "--port",
                    &port,
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]);
                c
            }
            Driver::Nats => {
                let mut c = Command::new("nats-server");
                c.args(["-a", "127.0.0.1", "-p", &port]);
                c
            }
            Driver::RedisCluster => return,
        };
        cmd.current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start the {:?} broker ({e}): install redis-server and nats-server \
                 (scripts/test.sh does)",
                self.driver
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{:?} broker did not start",
                self.driver
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the broker (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): connections stay open but nothing answers.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a paused broker (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("a broker of this test's own");
        // SAFETY: kill(2) on the pid of our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Environment for a sockudo node on this broker.
    pub fn node_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("ADAPTER_DRIVER".to_string(), self.driver_name().to_string()),
            ("CLUSTER_HEALTH_HEARTBEAT_INTERVAL_MS".into(), "300".into()),
            ("CLUSTER_HEALTH_NODE_TIMEOUT_MS".into(), "2000".into()),
            ("ADAPTER_REQUESTS_TIMEOUT".into(), "1500".into()),
        ];
        match self.driver {
            Driver::Redis => env.push(("REDIS_URL".into(), format!("redis://127.0.0.1:{}", self.port))),
            Driver::Nats => env.push(("NATS_SERVERS".into(), format!("nats://127.0.0.1:{}", self.port))),
            Driver::RedisCluster => env.push((
                "REDIS_CLUSTER_NODES".into(),
                std::env::var("SOCKUDO_TEST_REDIS_CLUSTER_NODES").expect(
                    "SOCKUDO_TEST_REDIS_CLUSTER_NODES is not set: start the test Redis Cluster with \
                     scripts/services/redis-cluster.sh (scripts/test.sh does)",
                ),
            )),
        }
        env
    }

    /// `adapter` config giving every bus topic a prefix of this broker's own, so tests sharing a broker
    /// never hear each other.
    pub fn adapter_config(&self) -> serde_json::Value {
        let prefix = format!("t{}-{}:", std::process::id(), self.port);
        serde_json::json!({
            "redis": { "prefix": prefix },
            "cluster": { "prefix": prefix },
            "nats": { "prefix": prefix },
        })
    }

    pub fn driver_name(&self) -> &'static str {
        match self.driver {
            Driver::Redis => "redis",
            Driver::RedisCluster => "redis-cluster",
            Driver::Nats => "nats",
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
