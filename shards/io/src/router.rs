//! The I/O shard's main loop: takes events off the queue, hands each to every matching webhook of its app
//! (through the batcher), starts one delivery task per request, and on shutdown flushes within the bound.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockudo_webhooks::batch::Batcher;
use sockudo_webhooks::payload;
use sockudo_webhooks::{AppWebhooks, WebhookEvent};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tracing::debug;

use crate::apps::{AppResolver, Done};
use crate::deliver::{deliver, Job, PendingGuard, Shared};
use crate::durable::DurableHandle;
use crate::job_codec::{JobIds, ID_HEADER};
use crate::IoRequest;

/// (app slot, webhook index within the app).
type HookKey = (u32, usize);

/// Routes events to webhooks and owns the delivery tasks.
pub(crate) struct Router {
    /// By app slot.
    apps: HashMap<u32, App>,
    resolver: AppResolver,
    batcher: Batcher<HookKey, String>,
    tasks: JoinSet<()>,
    shared: Arc<Shared>,
    /// The durable queue, when `queue.driver` is not `memory`: requests go there instead of straight to a
    /// delivery task.
    durable: Option<DurableHandle>,
    ids: JobIds,
    /// Redis cache and rate limiter (when configured).
    state: sockudo_state::State,
    /// The cluster link's outbound queue, when this node is part of a cluster.
    pub(crate) cluster: Option<mpsc::UnboundedSender<crate::cluster::ClusterOut>>,
}

/// An app, with its id shared by its deliveries' log lines.
struct App {
    id: Arc<str>,
    hooks: AppWebhooks,
}

impl App {
    fn new(hooks: AppWebhooks) -> App {
        App {
            id: hooks.app_id.as_str().into(),
            hooks,
        }
    }
}

impl Router {
    pub(crate) fn new(
        apps: Vec<AppWebhooks>,
        batching: Option<Duration>,
        batch_size: usize,
        shared: Arc<Shared>,
        resolver: AppResolver,
        durable: Option<DurableHandle>,
        state: sockudo_state::State,
    ) -> Router {
        let apps = apps
            .into_iter()
            .enumerate()
            .map(|(slot, hooks)| (slot as u32, App::new(hooks)))
            .collect();
        Router {
            apps,
            resolver,
            batcher: Batcher::with_max(batching, batch_size),
            tasks: JoinSet::new(),
            shared,
            durable,
            ids: JobIds::new(),
            state,
            cluster: None,
        }
    }

    /// Runs until `shutdown` gives the deadline (or its sender is dropped: deadline now), then flushes.
    pub(crate) async fn run(
        mut self,
        mut requests: mpsc::Receiver<IoRequest>,
        mut resolved: mpsc::UnboundedReceiver<Done>,
        mut shutdown: oneshot::Receiver<Instant>,
        deadline_tx: watch::Sender<Option<Instant>>,
    ) {
        let mut requests_open = true;
        let deadline = loop {
            let due = self
                .batcher
                .next_due()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                deadline = &mut shutdown => break deadline.unwrap_or_else(|_| Instant::now()),
                request = requests.recv(), if requests_open => match request {
                    Some(request) => self.handle(request, Instant::now()),
                    None => requests_open = false,
                },
                Some(done) = resolved.recv() => self.resolver.answer(done),
                _ = tokio::time::sleep_until(due.into()) => {
                    for (key, events) in self.batcher.take_due(Instant::now()) {
                        self.start(key, events);
                    }
                }
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        };
        let _ = deadline_tx.send(Some(deadline));
        self.finish(requests, deadline).await;
    }

    /// Shutdown: takes what is still queued, sends every open batch, waits for deliveries until `deadline`,
    /// then abandons the rest (counted as failed).
    async fn finish(mut self, mut requests: mpsc::Receiver<IoRequest>, deadline: Instant) {
        let until = tokio::time::Instant::from_std(deadline);
        while let Ok(Some(request)) = tokio::time::timeout_at(until, requests.recv()).await {
            self.handle(request, Instant::now());
        }
        for (key, events) in self.batcher.take_all() {
            self.start(key, events);
        }
        // Nothing more for the durable queue: its producer stores what it holds and ends.
        drop(self.durable.take());
        let tasks = &mut self.tasks;
        let _ =
            tokio::time::timeout_at(until, async { while tasks.join_next().await.is_some() {} })
                .await;
        if !self.tasks.is_empty() {
            debug!(
                left = self.tasks.len(),
                "shutdown deadline reached; abandoning webhook deliveries"
            );
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }

    fn handle(&mut self, request: IoRequest, now: Instant) {
        match request {
            IoRequest::Webhook(event) => self.route(&event, now),
            IoRequest::Cluster(out) => {
                if let Some(cluster) = &self.cluster {
                    let _ = cluster.send(out);
                }
            }
            IoRequest::FindApp { by, reply } => self.resolver.find(by, reply),
            IoRequest::State(request) => self.state.handle(request),
            IoRequest::AppWebhooks { slot, hooks } => match hooks {
                Some(hooks) => {
                    self.apps.insert(slot, App::new(hooks));
                }
                None => {
                    self.apps.remove(&slot);
                }
            },
        }
    }

    /// Hands `event` to every webhook of its app that wants it.
    fn route(&mut self, event: &WebhookEvent, now: Instant) {
        let Some(app) = self.apps.get(&event.app) else {
            debug!(
                app = event.app,
                "webhook event for an unknown app slot; dropped"
            );
            return;
        };
        let mut json: Option<String> = None;
        let mut ready = Vec::new();
        for (index, hook) in app.hooks.webhooks.iter().enumerate() {
            if !hook.matches(event) {
                continue;
            }
            let text = json
                .get_or_insert_with(|| payload::event_json(event))
                .clone();
            if let Some(events) = self.batcher.push((event.app, index), text, now) {
                ready.push(((event.app, index), events));
            }
        }
        for (key, events) in ready {
            self.start(key, events);
        }
    }

    /// Signs `events` for the webhook `key` and starts delivering them.
    fn start(&mut self, (app, index): HookKey, events: Vec<String>) {
        let Some(app) = self.apps.get(&app) else {
            return;
        };
        let Some(hook) = app.hooks.webhooks.get(index) else {
            return;
        };
        let mut request = payload::signed_request(&app.hooks, hook, &events, payload::now_ms());
        let id = self.ids.next();
        request.headers.push((ID_HEADER.to_string(), id.clone()));
        let job = Job {
            id,
            app_id: Arc::clone(&app.id),
            target: hook.target.clone(),
            retry: hook.retry,
            timeout: hook.request_timeout,
            request,
        };
        let job = match &self.durable {
            Some(durable) => match durable.enqueue(job) {
                None => return,
                Some(job) => job,
            },
            None => job,
        };
        let guard = PendingGuard::new(&self.shared.stats);
        let shared = Arc::clone(&self.shared);
        self.tasks.spawn(async move {
            deliver(shared, job, guard).await;
        });
    }
}
