//! One webhook request, from first attempt to success or giving up. Each runs as its own task: a request
//! waiting for its retry holds no connection slot and never delays the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sockudo_webhooks::http::HttpSender;
use sockudo_webhooks::payload::SignedRequest;
use sockudo_webhooks::{ClientInitError, DeliveryError, RetryPolicy, WebhookTarget};
use tokio::sync::{watch, Semaphore};
use tracing::{debug, warn};

use crate::stats::IoStats;
use crate::waiting::Waiting;

/// Requests in flight at once; the others wait for a slot.
pub(crate) const MAX_IN_FLIGHT: usize = 64;

/// The clients of every kind of target.
#[derive(Debug)]
pub(crate) struct Transport {
    http: HttpSender,
    #[cfg(feature = "lambda")]
    lambda: sockudo_webhooks::lambda::LambdaSender,
}

impl Transport {
    pub(crate) fn new() -> Result<Transport, ClientInitError> {
        Ok(Transport {
            http: HttpSender::new()?,
            #[cfg(feature = "lambda")]
            lambda: sockudo_webhooks::lambda::LambdaSender::new(),
        })
    }

    async fn send(
        &self,
        target: &WebhookTarget,
        request: &SignedRequest,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        match target {
            WebhookTarget::Http { url } => self.http.post(url, request, timeout).await,
            #[cfg(feature = "lambda")]
            WebhookTarget::Lambda {
                function_name,
                region,
            } => {
                let body = request.body.clone();
                self.lambda
                    .invoke(function_name, region.as_deref(), body, timeout)
                    .await
            }
            #[cfg(not(feature = "lambda"))]
            WebhookTarget::Lambda { .. } => Err(DeliveryError::Unsupported("lambda")),
        }
    }
}

/// What every delivery task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) transport: Transport,
    pub(crate) slots: Semaphore,
    pub(crate) waiting: Arc<Waiting>,
    pub(crate) stats: Arc<IoStats>,
    /// Set once shutdown begins: no attempt starts after this instant.
    pub(crate) shutdown: watch::Receiver<Option<Instant>>,
}

/// One signed request and where and how to send it.
#[derive(Debug)]
pub(crate) struct Job {
    /// Stable for the life of the request, through retries and redeliveries (`X-Sockudo-Webhook-Id`).
    pub(crate) id: String,
    pub(crate) app_id: Arc<str>,
    pub(crate) target: WebhookTarget,
    pub(crate) retry: RetryPolicy,
    pub(crate) timeout: Duration,
    pub(crate) request: SignedRequest,
}

/// Counts a request in `webhooks_pending` while it lives; one dropped unfinished (task aborted at the end
/// of shutdown) counts as failed.
#[derive(Debug)]
pub(crate) struct PendingGuard {
    stats: Arc<IoStats>,
    finished: bool,
}

impl PendingGuard {
    pub(crate) fn new(stats: &Arc<IoStats>) -> PendingGuard {
        IoStats::add(&stats.webhooks_pending);
        PendingGuard {
            stats: Arc::clone(stats),
            finished: false,
        }
    }

    fn finish(mut self, sent: bool) -> Outcome {
        self.finished = true;
        IoStats::add(if sent {
            &self.stats.webhooks_sent
        } else {
            &self.stats.webhooks_failed
        });
        if sent {
            Outcome::Delivered
        } else {
            Outcome::GaveUp
        }
    }
}

/// How a delivery ended; a durable queue acknowledges the first two and hands the others back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Refused, or retries exhausted.
    GaveUp,
    /// Dropped because too many requests were waiting (`max_pending_deliveries`).
    Evicted,
    /// Its next attempt would fall after the shutdown deadline.
    ShutDown,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        IoStats::sub(&self.stats.webhooks_pending);
        if !self.finished {
            IoStats::add(&self.stats.webhooks_failed);
        }
    }
}

/// Why a delivery stopped waiting.
enum Wake {
    Ready,
    Evicted,
    ShuttingDown,
}

/// Runs `job` to success or giving up.
pub(crate) async fn deliver(shared: Arc<Shared>, job: Job, guard: PendingGuard) -> Outcome {
    let target = job.target.display_safe();
    let first_attempt = Instant::now();
    let mut attempts = 0u32;
    loop {
        let permit = {
            let mut ticket = shared.waiting.register();
            tokio::select! {
                permit = shared.slots.acquire() => permit,
                _ = ticket.evicted() => return dropped(&shared, &job, &target, guard),
            }
        };
        attempts += 1;
        let result = shared
            .transport
            .send(&job.target, &job.request, job.timeout)
            .await;
        drop(permit);
        let error = match result {
            Ok(()) => {
                debug!(app_id = %job.app_id, id = %job.id, target = %target, attempts, "webhook delivered");
                return guard.finish(true);
            }
            Err(error) => error,
        };
        if !error.is_retryable() {
            warn!(app_id = %job.app_id, id = %job.id, target = %target, error = %error, attempts,
                "webhook refused; not retried");
            return guard.finish(false);
        }
        let Some(delay) = job
            .retry
            .delay_before_retry(attempts, first_attempt.elapsed())
        else {
            warn!(app_id = %job.app_id, id = %job.id, target = %target, error = %error, attempts,
                "webhook failed; retries exhausted");
            return guard.finish(false);
        };
        debug!(app_id = %job.app_id, target = %target, error = %error, attempts,
            retry_in_ms = delay.as_millis() as u64, "webhook failed; will retry");
        match wait_for_retry(&shared, Instant::now() + delay).await {
            Wake::Ready => IoStats::add(&shared.stats.webhook_retries),
            Wake::Evicted => return dropped(&shared, &job, &target, guard),
            Wake::ShuttingDown => {
                warn!(app_id = %job.app_id, id = %job.id, target = %target, error = %error, attempts,
                    "webhook failed; retry would fall after the shutdown deadline");
                guard.finish(false);
                return Outcome::ShutDown;
            }
        }
    }
}

/// Sleeps until `at` unless evicted, or shutdown puts its deadline before `at`.
async fn wait_for_retry(shared: &Shared, at: Instant) -> Wake {
    let mut ticket = shared.waiting.register();
    let mut shutdown = shared.shutdown.clone();
    let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(at));
    tokio::pin!(sleep);
    loop {
        if shutdown
            .borrow_and_update()
            .is_some_and(|deadline| at > deadline)
        {
            return Wake::ShuttingDown;
        }
        tokio::select! {
            _ = &mut sleep => return Wake::Ready,
            _ = ticket.evicted() => return Wake::Evicted,
            changed = shutdown.changed() => {
                if changed.is_err() {
                    // The shard is gone: nobody will wait for this retry.
                    return Wake::ShuttingDown;
                }
            }
        }
    }
}

fn dropped(shared: &Shared, job: &Job, target: &str, guard: PendingGuard) -> Outcome {
    IoStats::add(&shared.stats.webhooks_dropped_pending);
    warn!(app_id = %job.app_id, id = %job.id, target = %target,
        "webhook dropped: too many requests waiting (max_pending_deliveries)");
    guard.finish(false);
    Outcome::Evicted
}
