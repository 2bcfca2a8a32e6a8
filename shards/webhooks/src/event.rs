//! The events worker shards hand to the I/O shard.

/// The Pusher webhook event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// First subscriber of a channel anywhere in the process.
    ChannelOccupied,
    /// Last subscriber of a channel gone (sent after a delay, unless re-occupied meanwhile).
    ChannelVacated,
    /// A user's first socket joined a presence channel.
    MemberAdded,
    /// A user's last socket left a presence channel (sent after a delay, unless the user came back).
    MemberRemoved,
    /// A `client-*` event sent by a connection.
    ClientEvent,
    /// A subscriber of a cache channel found no cached event.
    CacheMiss,
    /// The number of subscriptions of a non-presence channel changed.
    SubscriptionCount,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [EventKind; 7] = [
        EventKind::ChannelOccupied,
        EventKind::ChannelVacated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::ClientEvent,
        EventKind::CacheMiss,
        EventKind::SubscriptionCount,
    ];

    /// The `name` the event carries on the wire (and in `event_types`).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ChannelOccupied => "channel_occupied",
            EventKind::ChannelVacated => "channel_vacated",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::ClientEvent => "client_event",
            EventKind::CacheMiss => "cache_miss",
            EventKind::SubscriptionCount => "subscription_count",
        }
    }

    /// The kind named `name`, if it is one.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of event kinds: what an app's webhooks want, checked by worker shards before building an event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindSet(u8);

impl KindSet {
    /// The empty set.
    pub const EMPTY: KindSet = KindSet(0);

    /// Adds `kind`.
    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= kind.bit();
    }

    /// True when `kind` is in the set.
    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    /// True when no kind is in the set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One webhook event of one app, as a worker shard reports it. Fields a kind does not use are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// The app's index in the configuration's app list (the same on every shard).
    pub app: u32,
    /// Which event.
    pub kind: EventKind,
    /// The channel it concerns.
    pub channel: Box<str>,
    /// `member_added` / `member_removed`; `client_event` on presence channels.
    pub user_id: Option<Box<str>>,
    /// `client_event`: the event name.
    pub event: Option<Box<str>>,
    /// `client_event`: the event's `data`, as a string (JSON text when the client sent an object).
    pub data: Option<Box<str>>,
    /// `client_event`: the sender's socket id.
    pub socket_id: Option<Box<str>>,
    /// `subscription_count`: the new total.
    pub subscription_count: Option<u64>,
}

impl WebhookEvent {
    /// An event of `kind` on `channel` with no optional field set.
    pub fn new(app: u32, kind: EventKind, channel: &str) -> WebhookEvent {
        WebhookEvent {
            app,
            kind,
            channel: channel.into(),
            user_id: None,
            event: None,
            data: None,
            socket_id: None,
            subscription_count: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_each_kind() {
        let mut set = KindSet::EMPTY;
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.name()), Some(kind));
            assert!(!set.contains(kind));
            set.insert(kind);
            assert!(set.contains(kind));
        }
        assert_eq!(EventKind::from_name("channel_occupied "), None);
    }
}
