//! Key names in Redis.

/// Which per-app REST limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKind {
    /// `max_backend_events_per_second` (events published over REST).
    BackendEvents,
    /// `max_read_requests_per_second` (REST GETs).
    ReadRequests,
}

impl RateKind {
    fn name(self) -> &'static str {
        match self {
            RateKind::BackendEvents => "backend_events",
            RateKind::ReadRequests => "read_requests",
        }
    }
}

/// Sockudo's cache key of a cache channel's last event: `{prefix}app:{id}:channel:{channel}:cache_miss`.
pub fn cache_key(prefix: &str, app_id: &str, channel: &str) -> String {
    format!("{prefix}app:{app_id}:channel:{channel}:cache_miss")
}

/// The limiter hash of one app and limit. The whole name is a Redis Cluster hash tag, so the script's one key
/// decides the slot.
pub fn rate_key(prefix: &str, app_id: &str, kind: RateKind) -> String {
    format!("{{{prefix}app:{app_id}:{}}}", kind.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_sockudo_and_keep_one_slot() {
        assert_eq!(
            cache_key("sockudo_cache:", "1", "cache-a"),
            "sockudo_cache:app:1:channel:cache-a:cache_miss"
        );
        assert_eq!(
            rate_key("sockudo_rl:", "1", RateKind::ReadRequests),
            "{sockudo_rl:app:1:read_requests}"
        );
    }
}
