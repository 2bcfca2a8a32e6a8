//! The worker side of the shared-state backends (`cache.driver`, `rate_limiter.driver` = redis /
//! redis-cluster): requests to the I/O shard, each bounded by [`STATE_WAIT`]. Nothing here is on the path of a
//! delivery: cache writes are fire-and-forget, and a REST request waits for at most one limiter answer.

use super::Shard;
use sockudo_io_shard::{CacheEntry, IoRequest, RateKind, StateError, StateRequest, StateStats};
use std::sync::atomic::AtomicU64;
use std::time::Duration;

/// Longest a worker waits for the I/O shard's answer (its own Redis timeout is shorter; this also covers
/// the queue). Past it, the limiter fails open and the cache misses.
pub const STATE_WAIT: Duration = Duration::from_millis(250);

/// True when `driver` keeps state in Redis or Redis Cluster.
pub fn is_redis_driver(driver: &str) -> bool {
    matches!(driver, "redis" | "redis-cluster" | "redis_cluster")
}

impl Shard {
    /// True when cache channels' last events are shared through Redis.
    pub fn cache_shared(&self) -> bool {
        is_redis_driver(&self.config.cache.driver)
    }

    /// Writes a cache channel's last event to the shared cache, without waiting (a full I/O queue loses it,
    /// counted as a cache error).
    pub(super) fn persist_cached(&self, app: u32, channel: &str, text: &str, ttl: Duration) {
        if !self.cache_shared() {
            return;
        }
        let (Some(io), Some(app_id)) = (&self.io, self.app_id(app)) else {
            return;
        };
        let sent = io.send(IoRequest::State(StateRequest::CacheSet {
            app_id,
            channel: channel.into(),
            value: text.into(),
            ttl,
        }));
        if !sent {
            StateStats::add(&io.stats().state.cache_errors);
        }
    }

    /// The shared cache's entry for `channel`, or `None` (none stored, expired, or the backend is
    /// unavailable: a miss).
    pub async fn shared_cached(&self, app: u32, channel: &str) -> Option<CacheEntry> {
        if !self.cache_shared() {
            return None;
        }
        let app_id = self.app_id(app)?;
        let channel = channel.to_string();
        let answer = self
            .ask_state(
                |s| &s.cache_errors,
                |reply| StateRequest::CacheGet {
                    app_id,
                    channel,
                    reply,
                },
            )
            .await;
        // An error answer was counted by the I/O shard.
        answer.and_then(Result::ok).flatten()
    }

    /// Takes `n` units of app `app`'s REST limit `kind` (`limit` per second, 0 = unlimited): from `window`
    /// (this process) with the memory driver, else from the cluster-wide window in Redis. A limiter that
    /// cannot answer in time lets the request through (fail open), counted in
    /// `sockudo_rate_limiter_errors_total`.
    pub async fn rate_take(
        &self,
        app: &crate::app::App,
        kind: RateKind,
        n: u64,
        limit: u64,
    ) -> bool {
        if limit == 0 {
            return true;
        }
        let window = match kind {
            RateKind::BackendEvents => &app.backend_events,
            RateKind::ReadRequests => &app.read_requests,
        };
        if !is_redis_driver(&self.config.rate_limiter.driver) {
            return window.try_take(crate::rest::unix_now(), n, limit);
        }
        let answer = self
            .ask_state(
                |s| &s.rate_limiter_errors,
                |reply| StateRequest::RateTake {
                    app_id: app.id.clone(),
                    kind,
                    n,
                    limit,
                    reply,
                },
            )
            .await;
        // No answer, or an error (counted by the I/O shard): fail open.
        answer.and_then(Result::ok).unwrap_or(true)
    }

    /// Sends the request `build` makes around its reply channel to the I/O shard and waits for the answer.
    /// `None` when it could not be queued or did not come within [`STATE_WAIT`], counted in `errors`.
    async fn ask_state<T>(
        &self,
        errors: fn(&StateStats) -> &AtomicU64,
        build: impl FnOnce(Reply<T>) -> StateRequest,
    ) -> Option<Result<T, StateError>> {
        let io = self.io.as_ref()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let answer = if io.send(IoRequest::State(build(reply))) {
            wait(answer).await
        } else {
            None
        };
        if answer.is_none() {
            StateStats::add(errors(&io.stats().state));
        }
        answer
    }
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StateError>>;

/// The I/O shard's answer, or `None` when it does not come within [`STATE_WAIT`].
async fn wait<T>(answer: tokio::sync::oneshot::Receiver<T>) -> Option<T> {
    glommio::timer::timeout(STATE_WAIT, async {
        answer
            .await
            .map_err(|_| glommio::GlommioError::<()>::IoError(std::io::Error::other("gone")))
    })
    .await
    .ok()
}
