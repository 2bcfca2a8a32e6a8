//! Process memory and CPU, for `/usage` and the `process_*` metrics.

use super::MetricsRegistry;

/// A snapshot of the process's resource use.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Usage {
    /// Resident set size (`VmRSS`).
    pub rss_bytes: u64,
    /// Virtual memory size (`VmSize`).
    pub virtual_bytes: u64,
    /// User CPU time.
    pub cpu_user_seconds: f64,
    /// System CPU time.
    pub cpu_system_seconds: f64,
    /// Seconds since the server started.
    pub uptime_seconds: f64,
    /// Open WebSocket connections over all shards.
    pub connections: u64,
    /// Worker shards.
    pub shards: usize,
}

/// `VmRSS` and `VmSize` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_status(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmSize:"))
}

fn cpu_times() -> (f64, f64) {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

impl Usage {
    /// Reads the current values.
    pub fn now(r: &MetricsRegistry) -> Usage {
        let (rss_bytes, virtual_bytes) = std::fs::read_to_string("/proc/self/status")
            .map(|s| parse_status(&s))
            .unwrap_or_default();
        let (cpu_user_seconds, cpu_system_seconds) = cpu_times();
        Usage {
            rss_bytes,
            virtual_bytes,
            cpu_user_seconds,
            cpu_system_seconds,
            uptime_seconds: r.started.elapsed().as_secs_f64(),
            connections: r.connected(),
            shards: r.shards.len(),
        }
    }

    /// The `/usage` body.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "memory": { "rss": self.rss_bytes, "virtual": self.virtual_bytes },
            "cpu": {
                "user_seconds": self.cpu_user_seconds,
                "system_seconds": self.cpu_system_seconds,
                "total_seconds": self.cpu_user_seconds + self.cpu_system_seconds,
            },
            "uptime_seconds": self.uptime_seconds,
            "connections": self.connections,
            "shards": self.shards,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_from_proc_status() {
        let status = "Name:\tsockudo\nVmSize:\t  204800 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(parse_status(status), (1024 * 1024, 204800 * 1024));
        assert_eq!(parse_status(""), (0, 0));
    }

    #[test]
    fn live_usage_has_memory() {
        let r = MetricsRegistry::new(1, Default::default(), "sockudo_");
        let u = Usage::now(&r);
        assert!(u.rss_bytes > 0 && u.virtual_bytes >= u.rss_bytes, "{u:?}");
        let v: serde_json::Value = serde_json::from_str(&u.to_json()).unwrap();
        assert!(v["memory"]["rss"].as_u64().unwrap() > 0);
    }
}
