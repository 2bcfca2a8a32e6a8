//! Server (and self) resource readings from /proc: CPU time and resident memory.

use std::time::Instant;

fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of a process in microseconds (all threads), or None if unreadable.
pub fn cpu_us(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `)` closing the command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / clk_tck())
}

/// VmRSS in bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A point-in-time reading of the watched server processes and of the generator itself.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    pub at: Instant,
    /// Summed server CPU in µs (None without --server-pid or if a PID vanished).
    pub server_cpu_us: Option<u64>,
    pub server_rss: Option<u64>,
    /// Summed CPU of the cluster bus broker(s) (--bus-pid), kept apart from the server's.
    pub bus_cpu_us: Option<u64>,
    pub self_cpu_us: Option<u64>,
}

/// utime + stime summed over `pids` (None if there are none or one is unreadable).
fn sum_cpu_us(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_us(&p.to_string())).sum()
}

pub fn snapshot(common: &crate::cli::Common) -> Snapshot {
    let pids = &common.server_pid;
    let rss = if pids.is_empty() {
        None
    } else {
        pids.iter().map(|p| rss_bytes(&p.to_string())).sum()
    };
    Snapshot {
        at: Instant::now(),
        server_cpu_us: sum_cpu_us(pids),
        server_rss: rss,
        bus_cpu_us: sum_cpu_us(&common.bus_pid),
        self_cpu_us: cpu_us("self"),
    }
}

/// Server CPU µs between two snapshots.
pub fn server_cpu_delta(a: &Snapshot, b: &Snapshot) -> Option<u64> {
    Some(b.server_cpu_us?.saturating_sub(a.server_cpu_us?))
}

/// Bus broker CPU µs between two snapshots.
pub fn bus_cpu_delta(a: &Snapshot, b: &Snapshot) -> Option<u64> {
    Some(b.bus_cpu_us?.saturating_sub(a.bus_cpu_us?))
}

pub fn self_cpu_delta(a: &Snapshot, b: &Snapshot) -> Option<u64> {
    Some(b.self_cpu_us?.saturating_sub(a.self_cpu_us?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_self() {
        assert!(super::cpu_us("self").is_some());
        assert!(super::rss_bytes("self").unwrap() > 0);
    }
}
