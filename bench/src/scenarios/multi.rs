//! Coordination of several generator processes in one fan-out through files: each process holds at most
//! ~20,000 sockets (the fd limit), so 100,000 connections take several. A file is written under a temporary
//! name and renamed, so a reader that sees it sees all of it.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::time::{sleep, Instant};

/// Write `value` as JSON to `path` atomically (temporary file + rename).
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, value.to_string())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Wait until `path` exists (no deadline: the global --timeout bounds it).
pub async fn wait_for(path: &Path) {
    while !path.exists() {
        sleep(Duration::from_millis(10)).await;
    }
}

/// Wait until every file in `paths` exists or `limit` has passed; returns the ones still missing.
pub async fn wait_for_all(paths: &[PathBuf], limit: Duration) -> Vec<PathBuf> {
    let deadline = Instant::now() + limit;
    loop {
        let missing: Vec<PathBuf> = paths.iter().filter(|p| !p.exists()).cloned().collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        sleep(Duration::from_millis(10)).await;
    }
}

/// Events of `total` (event s on channel s % channels) that fall on each channel.
pub fn events_per_channel(total: u64, channels: usize) -> Vec<u64> {
    let c = channels.max(1) as u64;
    (0..c)
        .map(|ch| total / c + u64::from(ch < total % c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_spread_round_robin() {
        assert_eq!(events_per_channel(10, 3), vec![4, 3, 3]);
        assert_eq!(events_per_channel(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(events_per_channel(5, 1), vec![5]);
        assert_eq!(events_per_channel(7, 0), vec![7]);
    }

    #[test]
    fn written_file_is_complete_json() {
        let dir = std::env::temp_dir().join(format!("sockudo-bench-multi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("ready");
        write_json(&p, &serde_json::json!({"subscribed": 3})).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["subscribed"], 3);
        assert!(!p.with_extension("tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
