//! Proof that every worker shard's executor still runs tasks, for the systemd watchdog.
//!
//! Each shard's sweeper (a task that already wakes once a second) stamps its slot; a stamp older than
//! [`STALE_AFTER`] means the executor has not run that task since, so the shard is stuck (a blocking call, a busy
//! loop). A shard that finished (shutdown) counts as alive. One relaxed store per shard per second: nothing on the
//! message path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How old a shard's last stamp may be before it counts as stuck (the sweeper stamps every second).
pub const STALE_AFTER: Duration = Duration::from_secs(3);

/// Marks a finished shard's slot.
const FINISHED: u64 = u64::MAX;

/// One heartbeat slot per shard: milliseconds since `epoch` of its last stamp.
#[derive(Debug)]
pub struct Liveness {
    epoch: Instant,
    beats: Vec<AtomicU64>,
}

impl Liveness {
    /// Slots for `nr_shards` shards, all stamped now.
    pub fn new(nr_shards: usize) -> Self {
        Liveness {
            epoch: Instant::now(),
            beats: (0..nr_shards).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Shard `shard` ran a task at `at`.
    pub fn beat(&self, shard: usize, at: Instant) {
        if let Some(slot) = self.beats.get(shard) {
            if slot.load(Ordering::Relaxed) != FINISHED {
                slot.store(self.millis(at), Ordering::Relaxed);
            }
        }
    }

    /// Shard `shard` stopped on purpose: it no longer stamps and must not count as stuck.
    pub fn finished(&self, shard: usize) {
        if let Some(slot) = self.beats.get(shard) {
            slot.store(FINISHED, Ordering::Relaxed);
        }
    }

    /// The shards whose last stamp is older than `stale` at `now`.
    pub fn stuck(&self, now: Instant, stale: Duration) -> Vec<usize> {
        let now = self.millis(now);
        let stale = stale.as_millis() as u64;
        self.beats
            .iter()
            .enumerate()
            .filter(|(_, slot)| {
                let last = slot.load(Ordering::Relaxed);
                last != FINISHED && now.saturating_sub(last) > stale
            })
            .map(|(shard, _)| shard)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_that_stops_stamping_is_stuck_a_finished_one_is_not() {
        let live = Liveness::new(3);
        let t0 = live.epoch;
        let stale = Duration::from_secs(3);
        assert!(live.stuck(t0 + Duration::from_secs(2), stale).is_empty());
        live.beat(0, t0 + Duration::from_secs(4));
        live.beat(1, t0 + Duration::from_secs(4));
        live.finished(2);
        assert!(live.stuck(t0 + Duration::from_secs(6), stale).is_empty());
        live.beat(0, t0 + Duration::from_secs(7));
        assert_eq!(live.stuck(t0 + Duration::from_secs(8), stale), vec![1]);
        live.beat(2, t0 + Duration::from_secs(8));
        assert_eq!(
            live.stuck(t0 + Duration::from_secs(20), stale),
            vec![0, 1],
            "a finished shard stays finished"
        );
    }
}
