//! The durable webhook queue on the I/O shard (`queue.driver` redis / redis-cluster / sqs).
//!
//! ```text
//! router ──signed Job──► DurableHandle::enqueue ──► local buffer (bounded, oldest dropped)
//!                                                     │ producer task: push in batches, backoff while down
//!                                                     ▼
//!                                                  backend (Redis Stream / SQS)
//!                                                     │ consumer task: fetch while it has room in hand
//!                                                     ▼
//!                      one task per message: deliver (retries as usual) ─► ack, or release
//!                      renewer task: extends the lease of every message in hand
//! ```
//! A message is acknowledged (removed) only once the receiver answered 2xx or the request was given up
//! (refused, retries exhausted); one this process cannot finish (shutdown, too many waiting) is released
//! for any node to take at once; one held by a process that died is taken over after the lease. Nothing
//! here blocks a worker shard: they only ever reach the router's queue.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sockudo_queue::backoff::Backoff;
use sockudo_queue::buffer::LocalBuffer;
use sockudo_queue::{Leased, Queue, QueueConfig, QueueError};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::deliver::{deliver, Job, Outcome, PendingGuard, Shared};
use crate::job_codec;
use crate::stats::IoStats;

/// Messages pushed to the backend in one call.
const PUSH_BATCH: usize = 100;
/// Messages acknowledged in one call at most.
const ACK_BATCH: usize = 100;
/// Acknowledgement calls out at once.
const ACKS_IN_FLIGHT: usize = 8;
/// Messages taken from the backend in one call (at most; the room in hand decides).
const FETCH_BATCH: usize = 32;
/// Longest wait of one fetch for new messages.
const FETCH_WAIT: Duration = Duration::from_secs(2);
/// Longest the release of unfinished messages may take at shutdown.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(1);

/// Default capacity of the local buffer in front of the backend.
pub const DEFAULT_BUFFER_CAPACITY: usize = 10_000;
/// Default number of messages one process works on at once.
pub const DEFAULT_MAX_IN_HAND: usize = 256;

/// A durable queue for webhook requests.
#[derive(Debug, Clone)]
pub struct DurableConfig {
    pub queue: QueueConfig,
    /// Requests waiting locally for the backend; beyond it the oldest is dropped and counted.
    pub buffer_capacity: usize,
    /// How often the lease of the messages in hand is renewed (well below the lease).
    pub renew_every: Duration,
    /// Messages this process works on at once (in flight or waiting for a retry).
    pub max_in_hand: usize,
}

/// The durable queue's counters (`sockudo_queue_*`).
#[derive(Debug, Default)]
pub struct QueueStats {
    /// 1 while the durable queue is configured.
    pub enabled: AtomicU64,
    /// 1 while the last call to the backend succeeded.
    pub backend_up: AtomicU64,
    /// Requests stored in the backend.
    pub enqueued: AtomicU64,
    /// Gauge: requests in the local buffer, waiting for the backend.
    pub buffered: AtomicU64,
    /// Requests dropped from the local buffer (full while the backend was down, or left at shutdown).
    pub dropped: AtomicU64,
    /// Requests too large for the backend (SQS: 256 KiB), delivered from memory instead.
    pub oversize: AtomicU64,
    /// Calls to the backend that failed.
    pub backend_errors: AtomicU64,
    /// Messages taken from the backend.
    pub fetched: AtomicU64,
    /// Of those, taken over from a holder whose lease ran out (a redelivery).
    pub redelivered: AtomicU64,
    /// Messages acknowledged (delivered or given up).
    pub acked: AtomicU64,
    /// Messages handed back unfinished.
    pub released: AtomicU64,
    /// Messages that are not webhook requests of a known format (acknowledged and dropped).
    pub invalid: AtomicU64,
    /// Gauge: messages this process works on.
    pub in_hand: AtomicU64,
}

impl QueueStats {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn set(counter: &AtomicU64, n: usize) {
        counter.store(n as u64, Ordering::Relaxed);
    }
}

/// Requests on their way to the backend.
#[derive(Debug)]
struct Outbox {
    buffer: Mutex<LocalBuffer<Bytes>>,
    ready: Notify,
    closed: AtomicBool,
}

impl Outbox {
    fn take(&self, max: usize) -> Vec<Bytes> {
        self.buffer
            .lock()
            .map(|mut b| b.take(max))
            .unwrap_or_default()
    }

    fn put_back(&self, items: Vec<Bytes>) -> usize {
        self.buffer
            .lock()
            .map(|mut b| b.put_back(items))
            .unwrap_or(0)
    }

    fn len(&self) -> usize {
        self.buffer.lock().map(|b| b.len()).unwrap_or(0)
    }
}

/// The router's side: hands signed requests to the queue. Dropping it tells the producer that nothing
/// more will come.
#[derive(Debug)]
pub(crate) struct DurableHandle {
    outbox: Arc<Outbox>,
    max_payload: usize,
    stats: Arc<IoStats>,
}

impl DurableHandle {
    /// Queues `job`; gives it back when it is too large for the backend (deliver it from memory).
    pub(crate) fn enqueue(&self, job: Job) -> Option<Job> {
        let bytes = job_codec::encode(&job);
        let q = &self.stats.queue;
        if bytes.len() > self.max_payload {
            QueueStats::add(&q.oversize, 1);
            warn!(app_id = %job.app_id, id = %job.id, bytes = bytes.len(), max = self.max_payload,
                "webhook request too large for the queue backend; delivered without it");
            return Some(job);
        }
        let (dropped, len) = match self.outbox.buffer.lock() {
            Ok(mut buffer) => (buffer.push(bytes), buffer.len()),
            Err(_) => return Some(job),
        };
        if dropped > 0 {
            QueueStats::add(&q.dropped, dropped);
            debug!(
                dropped,
                "queue buffer full; oldest webhook requests dropped"
            );
        }
        QueueStats::set(&q.buffered, len);
        self.outbox.ready.notify_one();
        None
    }
}

impl Drop for DurableHandle {
    fn drop(&mut self) {
        self.outbox.closed.store(true, Ordering::Release);
        self.outbox.ready.notify_one();
    }
}

/// Opens the queue (without contacting the backend) and returns the router's handle and the tasks' future.
pub(crate) async fn start(
    config: DurableConfig,
    shared: Arc<Shared>,
) -> Result<(DurableHandle, impl std::future::Future<Output = ()>), QueueError> {
    let driver = config.queue.backend.name();
    let queue = Arc::new(Queue::open(config.queue.clone()).await?);
    let stats = Arc::clone(&shared.stats);
    QueueStats::set(&stats.queue.enabled, 1);
    let outbox = Arc::new(Outbox {
        buffer: Mutex::new(LocalBuffer::new(config.buffer_capacity)),
        ready: Notify::new(),
        closed: AtomicBool::new(false),
    });
    let handle = DurableHandle {
        outbox: Arc::clone(&outbox),
        max_payload: queue.max_payload(),
        stats,
    };
    info!(
        driver,
        lease_ms = config.queue.lease.as_millis() as u64,
        "webhook queue: durable"
    );
    let tasks = async move {
        let in_hand = Arc::new(Mutex::new(HashSet::new()));
        let producer = tokio::spawn(produce(Arc::clone(&queue), outbox, Arc::clone(&shared)));
        let renewer = tokio::spawn(renew(
            Arc::clone(&queue),
            Arc::clone(&in_hand),
            Arc::clone(&shared),
            config.renew_every,
        ));
        consume(queue, in_hand, shared, config.max_in_hand).await;
        renewer.abort();
        let _ = producer.await;
    };
    Ok((handle, tasks))
}

/// Logs a backend failure at most every 10 s (the counter has them all).
struct FailureLog {
    last: Option<Instant>,
}

impl FailureLog {
    fn failed(&mut self, stats: &QueueStats, what: &str, error: &QueueError) {
        QueueStats::add(&stats.backend_errors, 1);
        QueueStats::set(&stats.backend_up, 0);
        let now = Instant::now();
        if self
            .last
            .is_none_or(|last| now.duration_since(last) >= Duration::from_secs(10))
        {
            self.last = Some(now);
            warn!(error = %error, "webhook queue: {what} failed; retrying with backoff");
        }
    }
}

/// The shutdown deadline, once shutdown began.
fn deadline(shared: &Shared) -> Option<Instant> {
    *shared.shutdown.borrow()
}

/// Sleeps `delay`, cut short at the shutdown deadline; false once the deadline has passed.
async fn pause(shared: &Shared, delay: Duration) -> bool {
    let mut shutdown = shared.shutdown.clone();
    let wake = tokio::time::sleep(delay);
    tokio::pin!(wake);
    loop {
        let current = *shutdown.borrow_and_update();
        if let Some(deadline) = current {
            let until = deadline.min(Instant::now() + delay);
            tokio::time::sleep_until(until.into()).await;
            return Instant::now() < deadline;
        }
        tokio::select! {
            _ = &mut wake => return true,
            changed = shutdown.changed() => if changed.is_err() { return false },
        }
    }
}

/// Moves the local buffer into the backend until the router is gone and the buffer empty, or the shutdown
/// deadline passes (what is left then is counted as dropped).
async fn produce(queue: Arc<Queue>, outbox: Arc<Outbox>, shared: Arc<Shared>) {
    let stats = &shared.stats.queue;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut log = FailureLog { last: None };
    loop {
        if deadline(&shared).is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let batch = outbox.take(PUSH_BATCH);
        if batch.is_empty() {
            QueueStats::set(&stats.buffered, 0);
            if outbox.closed.load(Ordering::Acquire) {
                return;
            }
            outbox.ready.notified().await;
            continue;
        }
        let n = batch.len();
        match queue.push(&batch).await {
            Ok(failed) if failed.is_empty() => {
                QueueStats::add(&stats.enqueued, n);
                QueueStats::set(&stats.backend_up, 1);
                backoff.reset();
            }
            result => {
                let (retry, error) = match result {
                    Ok(failed) => {
                        QueueStats::add(&stats.enqueued, n - failed.len());
                        let retry: Vec<Bytes> = failed
                            .into_iter()
                            .filter_map(|i| batch.get(i).cloned())
                            .collect();
                        let error =
                            QueueError::Backend(format!("{} of {n} messages refused", retry.len()));
                        (retry, error)
                    }
                    Err(e) => (batch, e),
                };
                log.failed(stats, "storing webhook requests", &error);
                let dropped = outbox.put_back(retry);
                QueueStats::add(&stats.dropped, dropped);
                QueueStats::set(&stats.buffered, outbox.len());
                if !pause(&shared, backoff.next_delay()).await {
                    break;
                }
            }
        }
        QueueStats::set(&stats.buffered, outbox.len());
    }
    let left = outbox.len();
    if left > 0 {
        QueueStats::add(&stats.dropped, left);
        warn!(
            left,
            "shutdown: webhook requests never reached the queue backend; dropped"
        );
    }
}

type InHand = Arc<Mutex<HashSet<String>>>;

/// Takes messages while there is room in hand and delivers each; at shutdown stops taking, lets deliveries
/// run until the deadline and releases whatever is unfinished.
async fn consume(queue: Arc<Queue>, in_hand: InHand, shared: Arc<Shared>, max_in_hand: usize) {
    let stats = &shared.stats.queue;
    let room = Arc::new(Semaphore::new(max_in_hand.max(1)));
    let (acks, done) = mpsc::unbounded_channel();
    let acker = tokio::spawn(acknowledge(Arc::clone(&queue), Arc::clone(&shared), done));
    let mut tasks = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut log = FailureLog { last: None };
    let mut shutdown = shared.shutdown.clone();
    while shutdown.borrow_and_update().is_none() {
        let first = tokio::select! {
            permit = Arc::clone(&room).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = shutdown.changed() => continue,
        };
        let mut permits = vec![first];
        while permits.len() < FETCH_BATCH {
            match Arc::clone(&room).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        match queue.fetch(permits.len(), FETCH_WAIT).await {
            Ok(messages) => {
                QueueStats::set(&stats.backend_up, 1);
                backoff.reset();
                QueueStats::add(&stats.fetched, messages.len());
                for message in messages {
                    let permit = permits.pop();
                    tasks.spawn(work(
                        Arc::clone(&queue),
                        Arc::clone(&in_hand),
                        Arc::clone(&shared),
                        acks.clone(),
                        message,
                        permit,
                    ));
                }
            }
            Err(e) => {
                log.failed(stats, "taking webhook requests", &e);
                drop(permits);
                pause(&shared, backoff.next_delay()).await;
            }
        }
        while tasks.try_join_next().is_some() {}
    }
    if let Some(deadline) = deadline(&shared) {
        let until = tokio::time::Instant::from_std(deadline);
        let _ =
            tokio::time::timeout_at(until, async { while tasks.join_next().await.is_some() {} })
                .await;
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // The acknowledgements still queued go out (until the deadline) before anything is handed back.
    drop(acks);
    let _ = acker.await;
    let left: Vec<String> = in_hand
        .lock()
        .map(|mut h| h.drain().collect())
        .unwrap_or_default();
    if !left.is_empty() {
        QueueStats::set(&stats.in_hand, 0);
        match tokio::time::timeout(RELEASE_TIMEOUT, queue.release(&left)).await {
            Ok(Ok(())) => QueueStats::add(&stats.released, left.len()),
            _ => debug!(
                left = left.len(),
                "could not release unfinished webhook requests; they return after their lease"
            ),
        }
    }
}

/// Delivers one message, then acknowledges or releases it.
async fn work(
    queue: Arc<Queue>,
    in_hand: InHand,
    shared: Arc<Shared>,
    acks: Acks,
    message: Leased,
    _room: Option<OwnedSemaphorePermit>,
) {
    let stats = &shared.stats.queue;
    let handle = message.handle;
    let job = match job_codec::decode(&message.payload) {
        Ok(job) => job,
        Err(e) => {
            QueueStats::add(&stats.invalid, 1);
            warn!(error = %e, "webhook queue: dropping a message that is not a webhook request");
            let _ = acks.send(handle);
            return;
        }
    };
    if message.reclaimed {
        QueueStats::add(&stats.redelivered, 1);
        debug!(app_id = %job.app_id, id = %job.id, "webhook request taken over after its lease ran out");
    }
    let held = in_hand
        .lock()
        .map(|mut h| {
            h.insert(handle.clone());
            h.len()
        })
        .unwrap_or(0);
    QueueStats::set(&stats.in_hand, held);
    let guard = PendingGuard::new(&shared.stats);
    let outcome = deliver(Arc::clone(&shared), job, guard).await;
    let held = in_hand
        .lock()
        .map(|mut h| {
            h.remove(&handle);
            h.len()
        })
        .unwrap_or(0);
    QueueStats::set(&stats.in_hand, held);
    match outcome {
        Outcome::Delivered | Outcome::GaveUp => {
            let _ = acks.send(handle);
        }
        Outcome::Evicted | Outcome::ShutDown => {
            if queue.release(std::slice::from_ref(&handle)).await.is_ok() {
                QueueStats::add(&stats.released, 1);
            }
        }
    }
}

/// Where finished messages go to be acknowledged.
type Acks = mpsc::UnboundedSender<String>;

/// Acknowledges finished messages: those that finished while earlier calls were out go together (up to
/// [`ACK_BATCH`] per call, at most [`ACKS_IN_FLIGHT`] calls at once), each retried a few times; a message
/// whose ack is lost is delivered again after its lease (at least once). Ends once every sender is gone,
/// the queue is empty and the calls are done.
async fn acknowledge(
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    mut done: mpsc::UnboundedReceiver<String>,
) {
    let slots = Arc::new(Semaphore::new(ACKS_IN_FLIGHT));
    let mut calls = JoinSet::new();
    while let Some(first) = done.recv().await {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let mut handles = vec![first];
        while handles.len() < ACK_BATCH {
            match done.try_recv() {
                Ok(handle) => handles.push(handle),
                Err(_) => break,
            }
        }
        calls.spawn(ack_batch(
            Arc::clone(&queue),
            Arc::clone(&shared),
            handles,
            slot,
        ));
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

async fn ack_batch(
    queue: Arc<Queue>,
    shared: Arc<Shared>,
    handles: Vec<String>,
    _slot: OwnedSemaphorePermit,
) {
    let stats = &shared.stats.queue;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    for _ in 0..3 {
        match queue.ack(&handles).await {
            Ok(()) => {
                QueueStats::add(&stats.acked, handles.len());
                return;
            }
            Err(e) => {
                QueueStats::add(&stats.backend_errors, 1);
                debug!(error = %e, "webhook queue: acknowledging failed");
                if !pause(&shared, backoff.next_delay()).await {
                    break;
                }
            }
        }
    }
    warn!(
        count = handles.len(),
        "webhook queue: could not acknowledge delivered requests; they may be delivered again"
    );
}

/// Keeps the lease of the messages in hand.
async fn renew(queue: Arc<Queue>, in_hand: InHand, shared: Arc<Shared>, every: Duration) {
    let stats = &shared.stats.queue;
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut log = FailureLog { last: None };
    loop {
        tick.tick().await;
        let handles: Vec<String> = in_hand
            .lock()
            .map(|h| h.iter().cloned().collect())
            .unwrap_or_default();
        for chunk in handles.chunks(PUSH_BATCH) {
            if let Err(e) = queue.renew(chunk).await {
                log.failed(stats, "renewing leases", &e);
                break;
            }
        }
    }
}
