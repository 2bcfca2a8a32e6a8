//! Rate-limited reporting of `accept` failures: when file descriptors run out, `accept` fails on every retry, and
//! one warning per retry would flood the log at the moment an operator needs it most.

use std::time::{Duration, Instant};

/// Least time between two warnings about failing accepts.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// What to log about the accept loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Report {
    /// Nothing now.
    Quiet,
    /// Warn: accepts are failing; `suppressed` failures were not reported since the last warning.
    Failing { suppressed: u64 },
    /// Accepting again after `failures` failed attempts.
    Recovered { failures: u64 },
}

/// The state of one listener's accept loop.
#[derive(Debug, Default)]
pub struct AcceptErrors {
    last_warning: Option<Instant>,
    suppressed: u64,
    failures: u64,
}

impl AcceptErrors {
    /// An accept failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Report {
        self.failures += 1;
        match self.last_warning {
            Some(at) if now.duration_since(at) < WARN_EVERY => {
                self.suppressed += 1;
                Report::Quiet
            }
            _ => {
                self.last_warning = Some(now);
                Report::Failing {
                    suppressed: std::mem::take(&mut self.suppressed),
                }
            }
        }
    }

    /// An accept succeeded.
    pub fn accepted(&mut self) -> Report {
        if self.failures == 0 {
            return Report::Quiet;
        }
        let failures = std::mem::take(&mut self.failures);
        self.suppressed = 0;
        self.last_warning = None;
        Report::Recovered { failures }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_period_and_reports_recovery() {
        let mut e = AcceptErrors::default();
        let t0 = Instant::now();
        assert_eq!(e.accepted(), Report::Quiet);
        assert_eq!(e.failed(t0), Report::Failing { suppressed: 0 });
        for i in 1..100 {
            assert_eq!(e.failed(t0 + Duration::from_millis(i * 50)), Report::Quiet);
        }
        assert_eq!(
            e.failed(t0 + WARN_EVERY + Duration::from_millis(1)),
            Report::Failing { suppressed: 99 }
        );
        assert_eq!(e.accepted(), Report::Recovered { failures: 101 });
        assert_eq!(e.accepted(), Report::Quiet);
        assert_eq!(e.failed(t0), Report::Failing { suppressed: 0 });
    }
}
