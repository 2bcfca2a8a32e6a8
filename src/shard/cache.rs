//! The last HTTP-published event of each cache channel (`cache-`, `private-cache-`, `private-encrypted-cache-`,
//! `presence-cache-`) this shard owns, replayed to new subscribers until it expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
struct Cached {
    /// The channel event exactly as subscribers received it.
    text: Box<str>,
    expires: Instant,
}

/// Cached events by (app index, channel).
#[derive(Debug, Default)]
pub struct ChannelCache {
    entries: HashMap<(u32, Box<str>), Cached>,
}

impl ChannelCache {
    /// Keeps `text` as the channel's last event for `ttl`.
    pub fn store(&mut self, app: u32, channel: &str, text: &str, ttl: Duration, now: Instant) {
        if self.entries.len() > 1024 && self.entries.len().is_power_of_two() {
            self.entries.retain(|_, c| c.expires > now);
        }
        self.entries.insert(
            (app, channel.into()),
            Cached {
                text: text.into(),
                expires: now + ttl,
            },
        );
    }

    /// The channel's last event and its remaining lifetime in seconds, if it has not expired.
    pub fn get(&mut self, app: u32, channel: &str, now: Instant) -> Option<(String, u64)> {
        let key = (app, Box::<str>::from(channel));
        let cached = self.entries.get(&key)?;
        if cached.expires <= now {
            self.entries.remove(&key);
            return None;
        }
        Some((cached.text.to_string(), (cached.expires - now).as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_event_until_it_expires() {
        let mut c = ChannelCache::default();
        let t0 = Instant::now();
        c.store(0, "cache-a", "one", Duration::from_secs(10), t0);
        c.store(0, "cache-a", "two", Duration::from_secs(10), t0);
        assert_eq!(
            c.get(0, "cache-a", t0).map(|(t, _)| t),
            Some("two".to_string())
        );
        assert_eq!(c.get(1, "cache-a", t0), None);
        assert_eq!(c.get(0, "cache-a", t0 + Duration::from_secs(11)), None);
    }
}
