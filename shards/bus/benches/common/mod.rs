//! Helpers shared by the bus benches: the brokers started by `scripts/services/*.sh` (from the
//! `SOCKUDO_TEST_*` variables; a missing one stops the bench), their CPU time and memory from /proc, and this
//! process's or thread's CPU time.
#![allow(dead_code)]

use std::time::Duration;

use sockudo_bus::{BusConfig, BusEvent};
use tokio::sync::mpsc;

pub fn env(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: source the scripts/services/ script first"))
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

/// User + system CPU time of this process.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    timeval(usage.ru_utime) + timeval(usage.ru_stime)
}

/// CPU time of the calling thread (nanosecond resolution; getrusage's is the scheduler tick).
pub fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime only writes the struct we pass.
    let ts = unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A broker to measure: how to configure a bus for it and the pid files of its process(es).
pub struct Broker {
    pub name: &'static str,
    config: Box<dyn Fn(&str) -> BusConfig>,
    pub pid_files: Vec<String>,
}

impl Broker {
    /// A bus configuration with this prefix.
    pub fn config(&self, prefix: &str) -> BusConfig {
        (self.config)(prefix)
    }

    fn pids(&self) -> Vec<String> {
        self.pid_files
            .iter()
            .filter_map(|file| std::fs::read_to_string(file).ok())
            .map(|pid| pid.trim().to_string())
            .collect()
    }

    /// CPU time of the broker process(es): every thread's run time from /proc/<pid>/task/*/schedstat
    /// (nanoseconds; /proc/<pid>/stat counts in clock ticks of 10 ms).
    pub fn cpu(&self) -> Duration {
        let mut total = 0u64;
        for pid in self.pids() {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) else {
                    continue;
                };
                total += schedstat
                    .split_whitespace()
                    .next()
                    .and_then(|ns| ns.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        Duration::from_nanos(total)
    }

    /// Resident memory of the broker process(es), in bytes.
    pub fn rss(&self) -> u64 {
        let mut total = 0;
        for pid in self.pids() {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let kib: u64 = status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            total += kib * 1024;
        }
        total
    }
}

fn services_dir() -> String {
    format!("{}/../../target/services", env!("CARGO_MANIFEST_DIR"))
}

/// Every broker compiled in, configured from the `SOCKUDO_TEST_*` variables.
pub fn brokers() -> Vec<Broker> {
    let mut brokers = Vec::new();
    #[cfg(feature = "redis")]
    {
        let url = env("SOCKUDO_TEST_REDIS_URL");
        brokers.push(Broker {
            name: "redis",
            config: Box::new(move |prefix| BusConfig::Redis {
                url: url.clone(),
                prefix: prefix.into(),
            }),
            pid_files: vec![format!("{}/redis/redis.pid", services_dir())],
        });
    }
    #[cfg(feature = "redis-cluster")]
    {
        let nodes: Vec<String> = env("SOCKUDO_TEST_REDIS_CLUSTER_NODES")
            .split(',')
            .map(String::from)
            .collect();
        let pid_files = nodes
            .iter()
            .filter_map(|n| n.rsplit(':').next())
            .map(|port| format!("{}/redis-cluster/{port}/redis.pid", services_dir()))
            .collect();
        brokers.push(Broker {
            name: "redis-cluster",
            config: Box::new(move |prefix| BusConfig::RedisCluster {
                nodes: nodes.clone(),
                prefix: prefix.into(),
            }),
            pid_files,
        });
    }
    #[cfg(feature = "nats")]
    {
        let url = env("SOCKUDO_TEST_NATS_URL");
        brokers.push(Broker {
            name: "nats",
            config: Box::new(move |prefix| BusConfig::Nats {
                servers: vec![url.clone()],
                prefix: prefix.into(),
                username: None,
                password: None,
                token: None,
                connect_timeout: Duration::from_secs(2),
            }),
            pid_files: vec![format!("{}/nats/nats.pid", services_dir())],
        });
    }
    brokers
}

/// Waits for the bus's first `Up`.
pub async fn wait_up(rx: &mut mpsc::Receiver<BusEvent>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Some(BusEvent::Up)) => return,
            Ok(Some(_)) => {}
            _ => panic!("bus did not come up"),
        }
    }
}
