//! App lookups for the worker shards: a shard that misses its cache asks here (`IoRequest::FindApp`) and
//! awaits the answer. Concurrent lookups for the same key or id share one database query, and at most
//! [`MAX_LOOKUPS_IN_FLIGHT`] distinct lookups wait for the database at once (beyond that the answer is
//! [`SourceError::Busy`] at once), so a flood of unknown keys cannot pile up queries. While the database
//! fails, a lookup that found an app before is answered with that app's last record.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sockudo_apps::{AppRecord, AppSource, FindResult, Lookup, SourceError};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::stats::{IoStats, SOURCE_DOWN, SOURCE_UP};

/// Distinct lookups waiting for the database at most.
pub const MAX_LOOKUPS_IN_FLIGHT: usize = 256;

/// How long one lookup may take, connection included.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A finished query, handed back to the router.
pub(crate) type Done = (Lookup, FindResult);

/// The I/O shard's side of app lookups.
pub(crate) struct AppResolver {
    source: Option<Arc<dyn AppSource>>,
    waiting: HashMap<Lookup, Vec<oneshot::Sender<FindResult>>>,
    /// The last record each lookup found, answered instead of an error while the database is down, so that
    /// an app any shard knew keeps working on every shard.
    last_good: HashMap<Lookup, AppRecord>,
    done: mpsc::UnboundedSender<Done>,
    stats: Arc<IoStats>,
}

impl AppResolver {
    pub(crate) fn new(
        source: Option<Arc<dyn AppSource>>,
        stats: Arc<IoStats>,
    ) -> (AppResolver, mpsc::UnboundedReceiver<Done>) {
        let (done, done_rx) = mpsc::unbounded_channel();
        (
            AppResolver {
                source,
                waiting: HashMap::new(),
                last_good: HashMap::new(),
                done,
                stats,
            },
            done_rx,
        )
    }

    /// Answers `reply` with the app `by` names: joins the query already running for it, or starts one.
    pub(crate) fn find(&mut self, by: Lookup, reply: oneshot::Sender<FindResult>) {
        let Some(source) = &self.source else {
            let _ = reply.send(Err(SourceError::NotConfigured));
            return;
        };
        if let Some(waiters) = self.waiting.get_mut(&by) {
            waiters.push(reply);
            return;
        }
        if self.waiting.len() >= MAX_LOOKUPS_IN_FLIGHT {
            IoStats::add(&self.stats.app_lookups_refused);
            let _ = reply.send(Err(SourceError::Busy));
            return;
        }
        self.waiting.insert(by.clone(), vec![reply]);
        IoStats::add(&self.stats.app_queries);
        let source = Arc::clone(source);
        let done = self.done.clone();
        let stats = Arc::clone(&self.stats);
        tokio::spawn(async move {
            let result = match tokio::time::timeout(LOOKUP_TIMEOUT, source.find(&by)).await {
                Ok(result) => result,
                Err(_) => Err(SourceError::Timeout(LOOKUP_TIMEOUT)),
            };
            let state = if result.is_ok() {
                SOURCE_UP
            } else {
                SOURCE_DOWN
            };
            let before = stats.app_source_state.swap(state, Ordering::Relaxed);
            if let Err(e) = &result {
                IoStats::add(&stats.app_query_errors);
                if before != SOURCE_DOWN {
                    warn!(driver = source.driver(), error = %e, "app lookups fail: cached apps keep working");
                }
            } else if before == SOURCE_DOWN {
                tracing::info!(driver = source.driver(), "app database answers again");
            }
            let _ = done.send((by, result));
        });
    }

    /// Hands a finished query's answer to everyone who asked for it.
    pub(crate) fn answer(&mut self, (by, result): Done) {
        let result = match result {
            Ok(Some(record)) => {
                self.last_good.insert(by.clone(), record.clone());
                Ok(Some(record))
            }
            Ok(None) => {
                self.last_good.remove(&by);
                Ok(None)
            }
            Err(e) => match self.last_good.get(&by) {
                Some(record) => Ok(Some(record.clone())),
                None => Err(e),
            },
        };
        for reply in self.waiting.remove(&by).unwrap_or_default() {
            let _ = reply.send(result.clone());
        }
    }
}
