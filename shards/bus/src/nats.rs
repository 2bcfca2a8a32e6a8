//! NATS transport on `async-nats`, which keeps the connection itself: it reconnects (here with the bus
//! backoff, 100 ms doubling to 5 s, forever), re-sends every live subscription, and holds publishes in its
//! own queue while disconnected. Two tasks per bus: the publisher drains the outbox in order into the
//! client; the subscriber applies subscription changes and moves every inbound message to the consumer,
//! reading all subscriptions from one loop (per-topic order kept, no task per message).

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event, ServerAddr, Subscriber};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::StreamMap;
use tracing::{info, warn};

use crate::backoff::{Backoff, LogLimiter};
use crate::shared::{Shared, SubChange};
use crate::stats::BusStats;
use crate::subject::{check_prefix, subject};
use crate::{BusConfig, BusError, BusEvent};

const PUBLISH_BATCH: usize = 1024;

pub(crate) fn start(
    config: BusConfig,
    shared: Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>, BusError> {
    let BusConfig::Nats {
        servers,
        prefix,
        username,
        password,
        token,
        connect_timeout,
    } = config
    else {
        return Err(BusError::Config("not a NATS configuration".into()));
    };
    check_prefix(&prefix).map_err(BusError::Config)?;
    if servers.is_empty() {
        return Err(BusError::Config("no NATS servers given".into()));
    }
    let addresses = servers
        .iter()
        .map(|s| s.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BusError::Config(format!("invalid NATS server address: {e}")))?;
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let mut options = ConnectOptions::new()
        .connection_timeout(connect_timeout)
        // A silent connection (half-open TCP) is noticed after two unanswered pings.
        .ping_interval(Duration::from_secs(10))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(Backoff::delay_for_attempt)
        .event_callback(move |event| {
            let events_tx = events_tx.clone();
            async move {
                let _ = events_tx.send(event);
            }
        });
    match (username, password, token) {
        (Some(user), Some(pass), _) => options = options.user_and_password(user, pass),
        (None, None, Some(token)) => options = options.token(token),
        (None, None, None) => {}
        _ => {
            return Err(BusError::Config(
                "NATS credentials: give a username and a password together, or a token".into(),
            ))
        }
    }
    let (client_tx, client_rx) = tokio::sync::watch::channel::<Option<Client>>(None);
    let connect = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let connecting = options.connect(addresses);
            let client = tokio::select! {
                client = connecting => client,
                _ = shared.closed() => return,
            };
            match client {
                Ok(client) => {
                    client_tx.send_replace(Some(client));
                }
                Err(e) => warn!(error = %e, "NATS bus client could not be created"),
            }
            // Report Down if the first connection does not come within the timeout.
            tokio::select! {
                _ = tokio::time::sleep(connect_timeout) => {
                    if !shared.stats.is_up() && !shared.is_closing() {
                        shared.report(BusEvent::Down {
                            reason: format!("no NATS connection within {connect_timeout:?}; retrying"),
                        })
                        .await;
                    }
                }
                _ = shared.closed() => {}
            };
        })
    };
    let events = tokio::spawn(event_loop(shared.clone(), events_rx));
    let publisher = tokio::spawn(publish_loop(
        prefix.clone(),
        shared.clone(),
        client_rx.clone(),
    ));
    let subscriber = tokio::spawn(subscribe_loop(prefix, shared, client_rx));
    Ok(vec![connect, events, publisher, subscriber])
}

async fn wait_for_client(
    shared: &Shared,
    client_rx: &mut tokio::sync::watch::Receiver<Option<Client>>,
) -> Option<Client> {
    tokio::select! {
        client = client_rx.wait_for(Option::is_some) => client.ok().and_then(|c| c.clone()),
        _ = shared.closed() => None,
    }
}

/// Reports the client's connection events to the consumer, in order.
async fn event_loop(shared: Arc<Shared>, mut events: mpsc::UnboundedReceiver<Event>) {
    let mut connected_before = false;
    let log = LogLimiter::new(Duration::from_secs(30));
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            _ = shared.closed() => None,
        };
        let Some(event) = event else { return };
        match event {
            Event::Connected => {
                if connected_before {
                    BusStats::add(&shared.stats.reconnects, 1);
                }
                connected_before = true;
                info!(transport = "nats", "bus connected");
                shared.report(BusEvent::Up).await;
            }
            Event::Disconnected => {
                BusStats::add(&shared.stats.errors, 1);
                warn!(transport = "nats", "bus connection lost; reconnecting");
                shared
                    .report(BusEvent::Down {
                        reason: "disconnected from NATS".into(),
                    })
                    .await;
            }
            Event::SlowConsumer(sid) => {
                if log.allow() {
                    warn!(
                        subscription = sid,
                        "NATS dropped bus messages: the bus reads too slowly"
                    );
                }
            }
            other => {
                if log.allow() {
                    warn!(transport = "nats", event = %other, "NATS bus event");
                }
            }
        }
    }
}

async fn publish_loop(
    prefix: String,
    shared: Arc<Shared>,
    mut client_rx: tokio::sync::watch::Receiver<Option<Client>>,
) {
    let Some(client) = wait_for_client(&shared, &mut client_rx).await else {
        return;
    };
    let error_log = LogLimiter::new(Duration::from_secs(10));
    loop {
        loop {
            let batch = shared.take_outgoing(PUBLISH_BATCH);
            if batch.is_empty() {
                break;
            }
            for message in batch {
                // Waits only while the client's own queue is full (disconnected): the outbox bounds the rest.
                match client
                    .publish(subject(&prefix, &message.topic), message.payload)
                    .await
                {
                    Ok(()) => BusStats::add(&shared.stats.published, 1),
                    Err(e) => {
                        shared.count_outbound_drops(1);
                        if error_log.allow() {
                            warn!(error = %e, topic = %message.topic, "NATS refused a bus message; dropped");
                        }
                    }
                }
            }
        }
        if shared.is_closing() {
            let _ = tokio::time::timeout(crate::SHUTDOWN_FLUSH_BOUND, client.flush()).await;
            return;
        }
        tokio::select! {
            _ = shared.outbox_ready.notified() => {}
            _ = shared.closed() => {}
        }
    }
}

async fn subscribe_loop(
    prefix: String,
    shared: Arc<Shared>,
    mut client_rx: tokio::sync::watch::Receiver<Option<Client>>,
) {
    let Some(client) = wait_for_client(&shared, &mut client_rx).await else {
        return;
    };
    let mut streams: StreamMap<String, Subscriber> = StreamMap::new();
    // Changes made before the client existed are in the full topic list.
    for topic in shared.take_all_topics() {
        add_subscription(&client, &prefix, &shared, &mut streams, topic).await;
    }
    loop {
        tokio::select! {
            biased;
            _ = shared.closed() => return,
            _ = shared.subs_changed.notified() => {
                for change in shared.take_changes() {
                    match change {
                        SubChange::Subscribe(topic) => {
                            add_subscription(&client, &prefix, &shared, &mut streams, topic).await;
                        }
                        SubChange::Unsubscribe(topic) => {
                            // Dropping the subscriber sends UNSUB.
                            streams.remove(&topic);
                        }
                    }
                }
            }
            Some((topic, message)) = streams.next() => shared.deliver(topic, message.payload),
        }
    }
}

async fn add_subscription(
    client: &Client,
    prefix: &str,
    shared: &Shared,
    streams: &mut StreamMap<String, Subscriber>,
    topic: String,
) {
    match client.subscribe(subject(prefix, &topic)).await {
        Ok(subscriber) => {
            streams.insert(topic, subscriber);
        }
        Err(e) => {
            BusStats::add(&shared.stats.errors, 1);
            warn!(error = %e, %topic, "NATS bus subscription failed");
        }
    }
}
