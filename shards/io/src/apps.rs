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
                // Under both names: an app a socket connected to by key keeps answering REST calls by id
                // (and the other way round) on every shard while the database is down.
                for name in [
                    Lookup::Id(text_of(&record, "id")),
                    Lookup::Key(text_of(&record, "key")),
                ] {
                    if !matches!(&name, Lookup::Id(s) | Lookup::Key(s) if s.is_empty()) {
                        self.last_good.insert(name, record.clone());
                    }
                }
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

/// A record's column as text (ids may be stored as numbers); empty when missing.
fn text_of(record: &AppRecord, column: &str) -> String {
    match record.get(column) {
        Some(v) if v.is_string() => v.as_str().unwrap_or_default().to_owned(),
        Some(v) if v.is_number() => v.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sockudo_apps::FindFuture;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    #[derive(Default)]
    struct Fake {
        calls: AtomicUsize,
        fail: AtomicBool,
    }

    impl AppSource for Fake {
        fn find<'a>(&'a self, by: &'a Lookup) -> FindFuture<'a> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = self.fail.load(Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                if fail {
                    return Err(SourceError::Unavailable("down".into()));
                }
                let mut record = AppRecord::new();
                record.insert("id".into(), "1".into());
                Ok((by.value() == "k").then_some(record))
            })
        }

        fn driver(&self) -> &'static str {
            "fake"
        }
    }

    async fn ask(
        r: &mut AppResolver,
        done: &mut mpsc::UnboundedReceiver<Done>,
        keys: &[&str],
    ) -> Vec<FindResult> {
        let replies: Vec<_> = keys
            .iter()
            .map(|k| {
                let (tx, rx) = oneshot::channel();
                r.find(Lookup::Key(k.to_string()), tx);
                rx
            })
            .collect();
        let distinct: std::collections::HashSet<_> = keys.iter().collect();
        for _ in 0..distinct.len() {
            r.answer(done.recv().await.expect("a finished query"));
        }
        let mut out = Vec::new();
        for rx in replies {
            out.push(rx.await.expect("answered"));
        }
        out
    }

    #[tokio::test(flavor = "current_thread")]
    async fn lookups_share_queries_and_failures_serve_the_last_record() {
        let fake = Arc::new(Fake::default());
        let stats = Arc::new(IoStats::default());
        let (mut r, mut done) = AppResolver::new(Some(fake.clone()), stats.clone());

        let answers = ask(&mut r, &mut done, &["k", "k", "k", "nope"]).await;
        assert_eq!(
            fake.calls.load(Ordering::SeqCst),
            2,
            "one query per distinct key"
        );
        assert!(answers[..3].iter().all(|a| matches!(a, Ok(Some(_)))));
        assert!(matches!(answers[3], Ok(None)));
        assert!(!stats.app_source_down());

        fake.fail.store(true, Ordering::SeqCst);
        let answers = ask(&mut r, &mut done, &["k", "other"]).await;
        assert!(
            matches!(answers[0], Ok(Some(_))),
            "the last good record while down"
        );
        assert!(matches!(answers[1], Err(SourceError::Unavailable(_))));
        assert!(stats.app_source_down());
        // Found by key before the outage: a REST lookup by its id is answered too.
        let (tx, rx) = oneshot::channel();
        r.find(Lookup::Id("1".into()), tx);
        r.answer(done.recv().await.expect("a finished query"));
        assert!(matches!(rx.await.expect("answered"), Ok(Some(_))));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn too_many_waiting_lookups_are_refused_at_once() {
        let (mut r, _done) = AppResolver::new(Some(Arc::new(Fake::default())), Arc::default());
        let mut replies = Vec::new();
        for i in 0..=MAX_LOOKUPS_IN_FLIGHT {
            let (tx, rx) = oneshot::channel();
            r.find(Lookup::Key(format!("key-{i}")), tx);
            replies.push(rx);
        }
        let last = replies.pop().expect("one more than the cap");
        assert_eq!(last.await.expect("answered"), Err(SourceError::Busy));
        let (tx, rx) = oneshot::channel();
        AppResolver::new(None, Arc::default())
            .0
            .find(Lookup::Id("1".into()), tx);
        assert_eq!(rx.await.expect("answered"), Err(SourceError::NotConfigured));
    }
}
