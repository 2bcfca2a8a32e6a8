//! What each subscriber of a channel event gets: tag filtering (DELTA-TAGS.md §6.8) and delta compression
//! (§3) hooked into a shard's local delivery.
//!
//! An [`Outgoing`] without [`EventDetails`] (presence member events, subscription counts) is delivered as before:
//! the same frame to every subscriber. A channel event carries its details; when no subscriber of the channel
//! on this shard has a filter or delta state, it takes that same fast path.

use super::Shard;
use crate::conn::Connection;
use crate::delta::{self, ChannelDeltas, SubscriptionDelta};
use crate::protocol::channel;
use crate::tags::{TagFilter, Tags};
use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

/// A channel event's routing details, shared by every shard it goes to.
#[derive(Debug)]
pub struct EventDetails {
    /// Event name (for `pusher:delta` frames).
    pub name: Box<str>,
    /// Publish tags; `None` for untagged events (client events, REST publishes without `tags`).
    pub tags: Option<Tags>,
    /// False when the publisher said `"delta": false`: plain frames, no base change.
    pub track: bool,
}

/// One channel's frame, as a shard delivers it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Channel name.
    pub channel: Box<str>,
    /// The encoded WebSocket frame plain subscribers get.
    pub frame: Bytes,
    /// Present on channel events.
    pub event: Option<Arc<EventDetails>>,
}

impl From<(String, Bytes)> for Outgoing {
    fn from((channel, frame): (String, Bytes)) -> Self {
        Outgoing {
            channel: channel.into_boxed_str(),
            frame,
            event: None,
        }
    }
}

/// The payload of a server (unmasked) frame: the envelope text, without a copy.
pub(super) fn frame_payload(frame: &Bytes) -> Bytes {
    let header = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        _ => 2,
    };
    frame.slice(header.min(frame.len())..)
}

/// Per-subscription options of one channel on one shard.
#[derive(Debug, Default)]
struct ChannelOptions {
    filters: HashMap<u64, Rc<TagFilter>>,
    settings: HashMap<u64, SubscriptionDelta>,
    deltas: ChannelDeltas,
}

impl ChannelOptions {
    fn is_empty(&self) -> bool {
        self.filters.is_empty() && self.settings.is_empty() && self.deltas.is_empty()
    }
}

/// Filters and delta state of this shard's subscribers.
#[derive(Debug, Default)]
pub struct Fanout {
    channels: HashMap<u32, HashMap<Box<str>, ChannelOptions>>,
    /// Sockets that sent `pusher:enable_delta_compression`.
    opted_in: HashSet<u64>,
    /// Channels with delta state per socket (`delta_compression.max_channel_states_per_socket`).
    tracked: HashMap<u64, usize>,
}

impl Fanout {
    fn options(&mut self, app: u32, channel: &str) -> &mut ChannelOptions {
        let per_app = self.channels.entry(app).or_default();
        if !per_app.contains_key(channel) {
            per_app.insert(channel.into(), ChannelOptions::default());
        }
        per_app.get_mut(channel).expect("inserted above")
    }

    fn drop_if_empty(&mut self, app: u32, channel: &str) {
        if let Some(per_app) = self.channels.get_mut(&app) {
            if per_app.get(channel).is_some_and(ChannelOptions::is_empty) {
                per_app.remove(channel);
            }
        }
    }
}

impl Shard {
    /// Records a subscription's filter and `delta` setting (before it joins, so its first event is routed right).
    pub fn set_subscription_options(
        &self,
        conn: &Connection,
        channel: &str,
        filter: Option<TagFilter>,
        delta: SubscriptionDelta,
    ) {
        {
            let mut fanout = self.fanout.borrow_mut();
            let plain = filter.is_none()
                && delta == SubscriptionDelta::Unspecified
                && !fanout.opted_in.contains(&conn.id);
            let known = fanout
                .channels
                .get(&conn.app.index)
                .is_some_and(|a| a.contains_key(channel));
            if plain && !known {
                // The common case: nothing to record, and no map entry made and dropped on every subscribe.
                return;
            }
            let options = fanout.options(conn.app.index, channel);
            match filter {
                Some(f) => options.filters.insert(conn.id, Rc::new(f)),
                None => options.filters.remove(&conn.id),
            };
            if delta == SubscriptionDelta::Unspecified {
                options.settings.remove(&conn.id);
            } else {
                options.settings.insert(conn.id, delta);
            }
        }
        self.resolve_delta(conn, channel);
        self.fanout
            .borrow_mut()
            .drop_if_empty(conn.app.index, channel);
        // With `omit_delta_algorithm`, a client that opted in only through subscriptions must still learn the
        // algorithm that frames without one use (never another: that would mislead its other channels).
        let settings = &self.delta_settings;
        if settings.enabled
            && settings.omit_delta_algorithm
            && matches!(delta, SubscriptionDelta::On(_))
            && !self.fanout.borrow().opted_in.contains(&conn.id)
        {
            conn.send_control(&delta::frames::channel_enabled_message(
                channel,
                settings.algorithm,
            ));
        }
    }

    /// `pusher:enable_delta_compression`: opts every channel of the socket in that its subscription did not
    /// turn off, now and for later subscriptions. Answers `pusher:delta_compression_enabled`.
    pub fn enable_delta(&self, conn: &Connection) {
        self.fanout.borrow_mut().opted_in.insert(conn.id);
        let names: Vec<Box<str>> = conn
            .channels
            .borrow()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        for name in &names {
            self.resolve_delta(conn, name);
        }
        conn.send_control(&delta::frames::enabled_message(
            self.delta_settings.enabled,
            self.delta_settings.algorithm,
        ));
    }

    /// `pusher:delta_sync_error`: the client lost its bases on `channel`; its next message of every key is full.
    pub fn delta_sync_error(&self, conn: &Connection, channel: &str) {
        let mut fanout = self.fanout.borrow_mut();
        if let Some(options) = fanout
            .channels
            .get_mut(&conn.app.index)
            .and_then(|a| a.get_mut(channel))
        {
            options.deltas.reset_socket(conn.id);
        }
    }

    /// Starts or stops delta tracking of (conn, channel) after a change of its inputs.
    fn resolve_delta(&self, conn: &Connection, channel: &str) {
        let app = conn.app.index;
        let rule = conn.app.delta_rules.for_channel(channel);
        let encrypted = channel::classify(channel).kind == channel::ChannelKind::PrivateEncrypted;
        let mut fanout = self.fanout.borrow_mut();
        let opted_in = fanout.opted_in.contains(&conn.id);
        let tracked = fanout.tracked.get(&conn.id).copied().unwrap_or(0);
        let options = fanout.options(app, channel);
        let setting = options.settings.get(&conn.id).copied().unwrap_or_default();
        let was_tracked = options.deltas.tracks(conn.id);
        let wanted =
            delta::rules::resolve(&self.delta_settings, rule, encrypted, setting, opted_in);
        match wanted {
            Some(algorithm) if was_tracked => options.deltas.add_socket(conn.id, algorithm),
            Some(_) if tracked >= self.delta_settings.max_channel_states_per_socket => {
                tracing::debug!(socket_id = %conn.socket_id, channel, "delta channel limit reached: plain frames");
            }
            Some(algorithm) => {
                options.deltas.add_socket(conn.id, algorithm);
                *fanout.tracked.entry(conn.id).or_default() += 1;
            }
            None if was_tracked => {
                options.deltas.remove_socket(conn.id);
                fanout.untrack(conn.id);
            }
            None => {}
        }
    }

    /// Forgets (conn, channel): unsubscribe, refused join, disconnect.
    pub fn forget_subscription(&self, conn_id: u64, app: u32, channel: &str) {
        let mut fanout = self.fanout.borrow_mut();
        let Some(options) = fanout
            .channels
            .get_mut(&app)
            .and_then(|a| a.get_mut(channel))
        else {
            return;
        };
        options.filters.remove(&conn_id);
        options.settings.remove(&conn_id);
        let was_tracked = options.deltas.tracks(conn_id);
        options.deltas.remove_socket(conn_id);
        if was_tracked {
            fanout.untrack(conn_id);
        }
        fanout.drop_if_empty(app, channel);
    }

    /// Forgets a socket that went away (after [`Shard::forget_subscription`] for each of its channels).
    pub fn forget_socket(&self, conn_id: u64) {
        let mut fanout = self.fanout.borrow_mut();
        fanout.opted_in.remove(&conn_id);
        fanout.tracked.remove(&conn_id);
    }

    /// Delivers `item` to `subscribers` of this shard, skipping `except` (a socket id).
    /// Queues `item` for the local subscribers in `entry`, except `except` and those still waiting for their
    /// presence snapshot ([`ChannelEntry::pending`](super::channels::ChannelEntry::pending)).
    pub(super) fn deliver_local(
        &self,
        app: u32,
        entry: &super::channels::ChannelEntry,
        item: &Outgoing,
        except: Option<&str>,
    ) {
        let pending = &entry.pending;
        let held_back = |conn: &Rc<Connection>| {
            except.is_some_and(|s| *conn.socket_id == *s)
                || (!pending.is_empty() && pending.contains(&conn.id))
        };
        let subscribers = &entry.local;
        let now = self.now();
        let plain = Rc::new(item.frame.clone());
        let mut fanout = self.fanout.borrow_mut();
        let options = match &item.event {
            Some(_) => fanout
                .channels
                .get_mut(&app)
                .and_then(|a| a.get_mut(&*item.channel)),
            None => None,
        };
        let (Some(details), Some(options)) = (&item.event, options) else {
            drop(fanout);
            for conn in subscribers {
                if held_back(conn) {
                    continue;
                }
                conn.send_event(&plain, &self.slow_consumer, now);
            }
            return;
        };
        let filtering = self.config.tag_filtering.enabled;
        let envelope = frame_payload(&item.frame);
        let settings = &self.delta_settings;
        let track = details.track
            && !options.deltas.is_empty()
            && envelope.len() >= settings.min_message_size;
        let mut round = None;
        for conn in subscribers {
            if held_back(conn) {
                continue;
            }
            if filtering {
                if let Some(filter) = options.filters.get(&conn.id) {
                    // Untagged events reach only subscribers without a filter.
                    match &details.tags {
                        Some(tags) if filter.matches(tags) => {}
                        _ => continue,
                    }
                }
            }
            if track && options.deltas.tracks(conn.id) {
                let round = round.get_or_insert_with(|| {
                    let key = conflation_key(self, app, &item.channel, &envelope);
                    options.deltas.begin(
                        delta::channel::EventInput {
                            envelope: &envelope,
                            event: &details.name,
                            channel: &item.channel,
                            key: key.as_deref(),
                        },
                        now,
                        settings,
                    )
                });
                if let Some(socket) = options.deltas.socket_mut(conn.id) {
                    let frame = round.frame_for(socket);
                    let dropped = conn.dropped.get();
                    conn.send_event(&frame, &self.slow_consumer, now);
                    if conn.dropped.get() != dropped {
                        socket.lost(round.seq());
                    }
                    continue;
                }
            }
            conn.send_event(&plain, &self.slow_consumer, now);
        }
        if let Some(round) = round {
            options.deltas.finish(round, now, settings);
        }
    }
}

impl Fanout {
    fn untrack(&mut self, conn: u64) {
        if let Some(n) = self.tracked.get_mut(&conn) {
            *n = n.saturating_sub(1);
        }
    }
}

/// The conflation key of an event on `channel`, when the channel (or the server) names a key path.
fn conflation_key(shard: &Shard, app: u32, channel: &str, envelope: &[u8]) -> Option<String> {
    let path = shard
        .apps
        .by_index(app)
        .and_then(|a| {
            a.delta_rules
                .for_channel(channel)
                .and_then(|r| r.conflation_key.clone())
        })
        .or_else(|| shard.delta_settings.conflation_key_path.clone())?;
    Some(delta::conflation::extract(envelope, &path))
}
