//! Webhook events whose truth only the owner shard of a channel knows (sans-IO).
//!
//! `channel_occupied` / `channel_vacated`: every shard tells the channel's owner when it gains its first or loses
//! its last local subscriber; the owner keeps the set of occupied shards, so the events fire once per channel for
//! the whole process. `channel_vacated` and `member_removed` wait [`DELAY`]; a re-occupation (or the user's
//! rejoin) within that time cancels both the pending event and the one that would announce the return, so a
//! receiver sees a channel (or member) that simply stayed.

use sockudo_webhooks::{EventKind, WebhookEvent};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long `channel_vacated` and `member_removed` wait for a return before they are sent.
pub const DELAY: Duration = Duration::from_secs(3);

type ChannelKey = (u32, Box<str>);
type MemberKey = (u32, Box<str>, Box<str>);

/// Occupancy of one channel this shard owns.
#[derive(Debug, Default)]
struct Occupancy {
    /// Bit `s` set: shard `s` has local subscribers.
    shards: u64,
    /// Other nodes with subscribers (cluster).
    nodes: Vec<u64>,
    /// Generation of the `channel_vacated` waiting to be sent, if any.
    pending_vacate: Option<u64>,
}

#[derive(Debug)]
enum Pending {
    Vacate(ChannelKey),
    MemberRemoved(MemberKey),
}

#[derive(Debug)]
struct Delayed {
    due: Instant,
    generation: u64,
    what: Pending,
}

/// The owner-side state of delayed and once-per-process webhook events.
#[derive(Debug, Default)]
pub struct WebhookState {
    occupancy: HashMap<ChannelKey, Occupancy>,
    removals: HashMap<MemberKey, u64>,
    /// In due order: every event waits the same [`DELAY`].
    delayed: VecDeque<Delayed>,
    next_generation: u64,
}

/// Where subscribers of a channel are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A shard of this node.
    Shard(usize),
    /// Another node of the cluster.
    Node(u64),
}

impl Occupancy {
    fn is_empty(&self) -> bool {
        self.shards == 0 && self.nodes.is_empty()
    }

    fn set(&mut self, place: Place, occupied: bool) {
        match (place, occupied) {
            (Place::Shard(s), true) => self.shards |= 1 << s,
            (Place::Shard(s), false) => self.shards &= !(1 << s),
            (Place::Node(n), true) => {
                if !self.nodes.contains(&n) {
                    self.nodes.push(n);
                }
            }
            (Place::Node(n), false) => self.nodes.retain(|&x| x != n),
        }
    }
}

impl WebhookState {
    /// `place` gained its first subscriber of `channel`. True when `channel_occupied` is to be sent now.
    pub fn occupied(&mut self, app: u32, channel: &str, place: Place) -> bool {
        let entry = self.occupancy.entry((app, channel.into())).or_default();
        let was_empty = entry.is_empty();
        entry.set(place, true);
        // A pending vacate means receivers still think the channel is occupied: say nothing.
        was_empty && entry.pending_vacate.take().is_none()
    }

    /// True when a shard of this node has subscribers of `channel`.
    pub fn occupied_here(&self, app: u32, channel: &str) -> bool {
        self.occupancy
            .get(&(app, Box::<str>::from(channel)))
            .is_some_and(|o| o.shards != 0)
    }

    /// Channels with subscribers on this node (a state sync).
    pub fn occupied_channels(&self) -> Vec<(u32, Box<str>)> {
        self.occupancy
            .iter()
            .filter(|(_, o)| o.shards != 0)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Node `node` is gone: the channels only it occupied are vacated. Returns how many were scheduled.
    pub fn drop_node(&mut self, node: u64, now: Instant) -> usize {
        let keys: Vec<ChannelKey> = self
            .occupancy
            .iter()
            .filter(|(_, o)| o.nodes.contains(&node))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter(|(app, channel)| self.vacated(*app, channel, Place::Node(node), now))
            .count()
    }

    /// `place` lost its last subscriber of `channel`. True when a `channel_vacated` was scheduled.
    pub fn vacated(&mut self, app: u32, channel: &str, place: Place, now: Instant) -> bool {
        let key: ChannelKey = (app, channel.into());
        let Some(entry) = self.occupancy.get_mut(&key) else {
            return false;
        };
        entry.set(place, false);
        if !entry.is_empty() || entry.pending_vacate.is_some() {
            return false;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        entry.pending_vacate = Some(generation);
        self.delayed.push_back(Delayed {
            due: now + DELAY,
            generation,
            what: Pending::Vacate(key),
        });
        true
    }

    /// A user's first socket joined presence channel `channel`. True when `member_added` is to be sent now
    /// (false when it cancels the user's pending `member_removed`).
    pub fn member_added(&mut self, app: u32, channel: &str, user: &str) -> bool {
        self.removals
            .remove(&(app, channel.into(), user.into()))
            .is_none()
    }

    /// A user's last socket left presence channel `channel`: schedules `member_removed`.
    pub fn member_removed(&mut self, app: u32, channel: &str, user: &str, now: Instant) {
        let key: MemberKey = (app, channel.into(), user.into());
        let generation = self.next_generation;
        self.next_generation += 1;
        self.removals.insert(key.clone(), generation);
        self.delayed.push_back(Delayed {
            due: now + DELAY,
            generation,
            what: Pending::MemberRemoved(key),
        });
    }

    /// When the next delayed event is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.front().map(|d| d.due)
    }

    /// The delayed events due at `now` that were not cancelled meanwhile.
    pub fn take_due(&mut self, now: Instant) -> Vec<WebhookEvent> {
        let mut out = Vec::new();
        while self.delayed.front().is_some_and(|d| d.due <= now) {
            if let Some(d) = self.delayed.pop_front() {
                out.extend(self.resolve(d));
            }
        }
        out
    }

    /// Every delayed event still pending, due or not (shutdown: nobody will come back).
    pub fn take_all(&mut self) -> Vec<WebhookEvent> {
        let pending: Vec<Delayed> = self.delayed.drain(..).collect();
        pending
            .into_iter()
            .filter_map(|d| self.resolve(d))
            .collect()
    }

    fn resolve(&mut self, delayed: Delayed) -> Option<WebhookEvent> {
        match delayed.what {
            Pending::Vacate(key) => {
                let entry = self.occupancy.get(&key)?;
                if entry.pending_vacate != Some(delayed.generation) || !entry.is_empty() {
                    return None;
                }
                self.occupancy.remove(&key);
                Some(WebhookEvent::new(key.0, EventKind::ChannelVacated, &key.1))
            }
            Pending::MemberRemoved(key) => {
                if self.removals.get(&key) != Some(&delayed.generation) {
                    return None;
                }
                self.removals.remove(&key);
                let mut event = WebhookEvent::new(key.0, EventKind::MemberRemoved, &key.1);
                event.user_id = Some(key.2);
                Some(event)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(events: &[WebhookEvent]) -> Vec<(EventKind, &str)> {
        events.iter().map(|e| (e.kind, &*e.channel)).collect()
    }

    #[test]
    fn other_nodes_keep_a_channel_occupied_until_they_are_gone() {
        let t0 = Instant::now();
        let mut s = WebhookState::default();
        assert!(
            s.occupied(0, "a", Place::Node(9)),
            "first subscriber anywhere"
        );
        assert!(!s.occupied(0, "a", Place::Shard(0)));
        assert!(
            !s.vacated(0, "a", Place::Shard(0), t0),
            "node 9 still has subscribers"
        );
        assert!(s.occupied_channels().is_empty());
        assert_eq!(s.drop_node(9, t0), 1);
        let due = s.take_due(t0 + DELAY);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].kind, EventKind::ChannelVacated);
    }

    #[test]
    fn occupied_once_for_all_shards_and_vacated_after_the_delay() {
        let t0 = Instant::now();
        let mut s = WebhookState::default();
        assert!(s.occupied(0, "a", Place::Shard(0)));
        assert!(
            !s.occupied(0, "a", Place::Shard(1)),
            "second shard: still the same occupation"
        );
        assert!(
            !s.vacated(0, "a", Place::Shard(0), t0),
            "shard 1 still has subscribers"
        );
        assert!(s.vacated(0, "a", Place::Shard(1), t0));
        assert!(s.take_due(t0 + DELAY - Duration::from_millis(1)).is_empty());
        let due = s.take_due(t0 + DELAY);
        assert_eq!(kinds(&due), vec![(EventKind::ChannelVacated, "a")]);
        assert!(
            s.occupied(0, "a", Place::Shard(1)),
            "a new occupation after the vacate was sent"
        );
    }

    #[test]
    fn reoccupying_within_the_delay_suppresses_both_events() {
        let t0 = Instant::now();
        let mut s = WebhookState::default();
        assert!(s.occupied(3, "a", Place::Shard(0)));
        assert!(s.vacated(3, "a", Place::Shard(0), t0));
        assert!(
            !s.occupied(3, "a", Place::Shard(1)),
            "suppressed: the vacate was never sent"
        );
        assert!(s.take_due(t0 + DELAY).is_empty());
        // Leaving again schedules a fresh vacate that does fire.
        assert!(s.vacated(3, "a", Place::Shard(1), t0 + DELAY));
        let due = s.take_due(t0 + DELAY * 2);
        assert_eq!(kinds(&due), vec![(EventKind::ChannelVacated, "a")]);
        assert_eq!(due[0].app, 3);
    }

    #[test]
    fn a_vacate_from_a_shard_that_never_announced_is_ignored() {
        let mut s = WebhookState::default();
        assert!(!s.vacated(0, "a", Place::Shard(1), Instant::now()));
        assert!(s.take_all().is_empty());
    }

    #[test]
    fn member_removed_waits_and_a_rejoin_cancels_it() {
        let t0 = Instant::now();
        let mut s = WebhookState::default();
        assert!(s.member_added(0, "presence-a", "u1"));
        s.member_removed(0, "presence-a", "u1", t0);
        assert!(
            !s.member_added(0, "presence-a", "u1"),
            "rejoin within the delay"
        );
        assert!(s.take_due(t0 + DELAY).is_empty());

        s.member_removed(0, "presence-a", "u2", t0);
        let due = s.take_due(t0 + DELAY);
        assert_eq!(kinds(&due), vec![(EventKind::MemberRemoved, "presence-a")]);
        assert_eq!(due[0].user_id.as_deref(), Some("u2"));
        assert!(
            s.member_added(0, "presence-a", "u2"),
            "a later join is news again"
        );
    }

    #[test]
    fn a_leave_rejoin_leave_sends_one_removal_at_the_second_deadline() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(1);
        let mut s = WebhookState::default();
        s.member_removed(0, "presence-a", "u", t0);
        assert!(!s.member_added(0, "presence-a", "u"));
        s.member_removed(0, "presence-a", "u", t1);
        assert!(
            s.take_due(t0 + DELAY).is_empty(),
            "the first deadline was cancelled"
        );
        assert_eq!(s.take_due(t1 + DELAY).len(), 1);
    }

    #[test]
    fn shutdown_takes_every_pending_event() {
        let t0 = Instant::now();
        let mut s = WebhookState::default();
        s.occupied(0, "a", Place::Shard(0));
        s.vacated(0, "a", Place::Shard(0), t0);
        s.member_removed(0, "presence-b", "u", t0);
        let all = s.take_all();
        assert_eq!(
            kinds(&all),
            vec![
                (EventKind::ChannelVacated, "a"),
                (EventKind::MemberRemoved, "presence-b")
            ]
        );
        assert_eq!(s.next_due(), None);
    }
}
