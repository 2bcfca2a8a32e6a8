//! When to try a webhook request again (sans-IO): exponential backoff from `initial_backoff`, doubling up to
//! `max_backoff`, given up once the next attempt would start after `max_elapsed` (or after `max_attempts`).

use std::time::Duration;

/// Default first backoff (Pusher / Sockudo: 1 s).
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Default backoff cap (60 s).
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Default give-up time, counted from the first attempt (Pusher retries for 5 minutes).
pub const DEFAULT_MAX_ELAPSED: Duration = Duration::from_secs(300);
/// Default timeout of one request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How one webhook retries a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// False: a single attempt, never retried.
    pub enabled: bool,
    /// Total attempts including the first; `None`: limited by `max_elapsed` only.
    pub max_attempts: Option<u32>,
    /// No attempt starts later than this after the first one.
    pub max_elapsed: Duration,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            enabled: true,
            max_attempts: None,
            max_elapsed: DEFAULT_MAX_ELAPSED,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt, after `attempts_made` failed retryable attempts, the first of which
    /// started `elapsed` ago; `None` when the request is to be given up.
    pub fn delay_before_retry(&self, attempts_made: u32, elapsed: Duration) -> Option<Duration> {
        if !self.enabled || attempts_made == 0 {
            return None;
        }
        if self.max_attempts.is_some_and(|max| attempts_made >= max) {
            return None;
        }
        let doublings = attempts_made.saturating_sub(1).min(31);
        let delay = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        (elapsed.saturating_add(delay) <= self.max_elapsed).then_some(delay)
    }
}

/// True for HTTP statuses worth retrying: 5xx, 408 (request timeout) and 429 (too many requests). Any other
/// 4xx is the receiver refusing this request: sending it again would not change the answer.
pub fn status_is_retryable(status: u16) -> bool {
    (500..600).contains(&status) || status == 408 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn default_backoff_doubles_from_one_second_up_to_sixty() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (1..=8).map(|n| p.delay_before_retry(n, S(0))).collect();
        let want = [1, 2, 4, 8, 16, 32, 60, 60].map(|s| Some(S(s)));
        assert_eq!(delays, want);
        assert_eq!(
            p.delay_before_retry(40, S(0)),
            Some(S(60)),
            "no overflow on many attempts"
        );
    }

    #[test]
    fn default_gives_up_when_the_next_attempt_would_start_after_five_minutes() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_before_retry(10, S(240)), Some(S(60)));
        assert_eq!(p.delay_before_retry(10, S(241)), None);
        assert_eq!(p.delay_before_retry(1, S(299)), Some(S(1)));
        assert_eq!(p.delay_before_retry(1, S(300)), None);
    }

    #[test]
    fn disabled_means_a_single_attempt() {
        let p = RetryPolicy {
            enabled: false,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_before_retry(1, S(0)), None);
    }

    #[test]
    fn max_attempts_counts_the_first_attempt() {
        let p = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay_before_retry(1, S(0)), Some(S(1)));
        assert_eq!(p.delay_before_retry(2, S(1)), Some(S(2)));
        assert_eq!(p.delay_before_retry(3, S(3)), None);
    }

    #[test]
    fn overrides_apply() {
        let p = RetryPolicy {
            enabled: true,
            max_attempts: None,
            max_elapsed: Duration::from_millis(100),
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(25),
        };
        let ms = Duration::from_millis;
        assert_eq!(p.delay_before_retry(1, ms(0)), Some(ms(10)));
        assert_eq!(p.delay_before_retry(2, ms(10)), Some(ms(20)));
        assert_eq!(p.delay_before_retry(3, ms(30)), Some(ms(25)));
        assert_eq!(p.delay_before_retry(4, ms(80)), None);
    }

    #[test]
    fn retryable_statuses() {
        for s in [500, 502, 503, 504, 599, 408, 429] {
            assert!(status_is_retryable(s), "{s}");
        }
        for s in [200, 301, 400, 401, 403, 404, 409, 410, 413, 422, 600] {
            assert!(!status_is_retryable(s), "{s}");
        }
    }
}
