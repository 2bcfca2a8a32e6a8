//! One channel's delta state on one shard, and the per-event [`Round`] that hands each subscriber the shared
//! full or delta frame.

use super::frames::{self, DeltaFrame};
use super::{Algorithm, DeltaSettings};
use crate::conn::outbound::Frame;
use crate::ws;
use bytes::Bytes;
use std::collections::HashMap;
use std::rc::Rc;

/// Delta state of one channel on one shard.
#[derive(Debug, Default)]
pub struct ChannelDeltas {
    /// Next sequence number; one counter for every key, never restarted while the channel state lives, so a
    /// client never sees a sequence number twice.
    next_seq: u32,
    /// Last tracked envelope per conflation key (`""` on channels without conflation).
    groups: HashMap<Box<str>, Group>,
    /// Delta-enabled subscribers on this shard, by connection id.
    sockets: HashMap<u64, SocketDelta>,
    /// Event counter, for least-recently-used eviction of groups.
    tick: u64,
}

#[derive(Debug)]
struct Group {
    base: Bytes,
    base_seq: u32,
    deltas_since_full: u32,
    stored_at: u32,
    last_used: u64,
}

/// A delta-enabled subscriber: its algorithm and the sequence numbers of the bases it holds (one per key).
#[derive(Debug, Clone, PartialEq)]
pub struct SocketDelta {
    /// Encoding of this socket's deltas.
    pub algorithm: Algorithm,
    held: HeldBases,
}

impl SocketDelta {
    /// The frame carrying sequence `seq` never reached the client (queue full): it does not hold that base.
    pub fn lost(&mut self, seq: u32) {
        self.held.remove(seq);
    }
}

/// Sequence numbers of the bases a socket holds, oldest first. The usual single base (a channel without
/// conflation, or one key) is kept inline, so a tracked socket costs no allocation of its own.
#[derive(Debug, Clone, PartialEq, Default)]
enum HeldBases {
    #[default]
    None,
    One(u32),
    // Boxed so the enum, and with it every socket's map entry, stays 16 bytes; only sockets holding bases of
    // several conflation keys pay for the vector.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<u32>>),
}

impl HeldBases {
    fn contains(&self, seq: u32) -> bool {
        match self {
            HeldBases::None => false,
            HeldBases::One(s) => *s == seq,
            HeldBases::Many(v) => v.contains(&seq),
        }
    }

    fn remove(&mut self, seq: u32) {
        match self {
            HeldBases::One(s) if *s == seq => *self = HeldBases::None,
            HeldBases::Many(v) => v.retain(|s| *s != seq),
            _ => {}
        }
    }

    /// Adds `seq`, dropping the oldest when more than `max` are held.
    fn push(&mut self, seq: u32, max: usize) {
        match self {
            HeldBases::None => *self = HeldBases::One(seq),
            HeldBases::One(_) if max <= 1 => *self = HeldBases::One(seq),
            HeldBases::One(s) => *self = HeldBases::Many(Box::new(vec![*s, seq])),
            HeldBases::Many(v) => {
                v.push(seq);
                if v.len() > max {
                    v.remove(0);
                }
            }
        }
    }
}

impl ChannelDeltas {
    /// Starts tracking `conn` (or changes its algorithm); a socket new here holds no base.
    pub fn add_socket(&mut self, conn: u64, algorithm: Algorithm) {
        self.sockets
            .entry(conn)
            .and_modify(|s| s.algorithm = algorithm)
            .or_insert(SocketDelta {
                algorithm,
                held: HeldBases::None,
            });
    }

    /// Stops tracking `conn`. True when no tracked socket is left (the state can go).
    pub fn remove_socket(&mut self, conn: u64) -> bool {
        self.sockets.remove(&conn);
        self.sockets.is_empty()
    }

    /// Forgets the bases `conn` holds (`pusher:delta_sync_error`): its next message of every key is full.
    pub fn reset_socket(&mut self, conn: u64) {
        if let Some(s) = self.sockets.get_mut(&conn) {
            s.held = HeldBases::None;
        }
    }

    /// The state of a tracked socket.
    pub fn socket_mut(&mut self, conn: u64) -> Option<&mut SocketDelta> {
        self.sockets.get_mut(&conn)
    }

    /// True when `conn` is tracked.
    pub fn tracks(&self, conn: u64) -> bool {
        self.sockets.contains_key(&conn)
    }

    /// Tracked sockets.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    /// True when no socket is tracked.
    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Starts delivering one event: assigns its sequence number. `key` is `Some` on conflation channels.
    pub fn begin(&mut self, event: EventInput<'_>, now: u32, settings: &DeltaSettings) -> Round {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.tick += 1;
        let group_key = event.key.unwrap_or("");
        let (prev_seq, base) = match self.groups.get_mut(group_key) {
            Some(g) => {
                g.last_used = self.tick;
                let fresh = now.saturating_sub(g.stored_at) < settings.max_state_age_secs;
                let due_full = g.deltas_since_full >= settings.full_message_interval;
                let base = (fresh && !due_full).then(|| g.base.clone());
                (Some(g.base_seq), base)
            }
            None => (None, None),
        };
        Round {
            seq,
            prev_seq,
            base,
            envelope: event.envelope.clone(),
            event: event.event.into(),
            channel: event.channel.into(),
            key: event.key.map(Into::into),
            announced: settings.algorithm,
            omit_algorithm: settings.omit_delta_algorithm,
            max_held: settings.max_conflation_states_per_channel.max(1),
            full: None,
            deltas: [None, None],
            delta_sent: false,
        }
    }

    /// Ends an event: its envelope becomes the key's base.
    pub fn finish(&mut self, round: Round, now: u32, settings: &DeltaSettings) {
        let key: Box<str> = round.key.unwrap_or_default();
        let tick = self.tick;
        let group = self.groups.entry(key).or_insert_with(|| Group {
            base: Bytes::new(),
            base_seq: 0,
            deltas_since_full: 0,
            stored_at: now,
            last_used: tick,
        });
        group.base = round.envelope;
        group.base_seq = round.seq;
        group.stored_at = now;
        group.last_used = tick;
        group.deltas_since_full = if round.delta_sent {
            group.deltas_since_full + 1
        } else {
            0
        };
        let cap = settings.max_conflation_states_per_channel.max(1);
        while self.groups.len() > cap {
            let oldest = self
                .groups
                .iter()
                .min_by_key(|(_, g)| g.last_used)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.groups.remove(&k),
                None => break,
            };
        }
    }
}

/// What [`ChannelDeltas::begin`] needs to know about an event.
#[derive(Debug)]
pub struct EventInput<'a> {
    /// The envelope exactly as delivered to plain subscribers (the delta target and the next base).
    pub envelope: &'a Bytes,
    /// Event name.
    pub event: &'a str,
    /// Channel name.
    pub channel: &'a str,
    /// Conflation key on conflation channels.
    pub key: Option<&'a str>,
}

/// One event on one channel of one shard: the shared frames, built on first use.
#[derive(Debug)]
pub struct Round {
    seq: u32,
    /// Sequence of the key's current base, if any.
    prev_seq: Option<u32>,
    /// That base, when a delta against it is allowed (fresh, interval not reached).
    base: Option<Bytes>,
    envelope: Bytes,
    event: Box<str>,
    channel: Box<str>,
    key: Option<Box<str>>,
    announced: Algorithm,
    omit_algorithm: bool,
    max_held: usize,
    full: Option<Frame>,
    /// Per algorithm (fossil, xdelta3): not computed yet / not worth it / the frame.
    deltas: [Option<Option<Frame>>; 2],
    delta_sent: bool,
}

impl Round {
    /// Sequence number of this event.
    pub fn seq(&self) -> u32 {
        self.seq
    }

    /// The frame for one tracked socket, recording that it now holds this event as its base for the key.
    pub fn frame_for(&mut self, socket: &mut SocketDelta) -> Frame {
        let holds_base = self.prev_seq.is_some_and(|prev| socket.held.contains(prev));
        let delta = if holds_base {
            self.delta_frame(socket.algorithm)
        } else {
            None
        };
        if let Some(prev) = self.prev_seq {
            socket.held.remove(prev);
        }
        socket.held.push(self.seq, self.max_held);
        match delta {
            Some(frame) => {
                self.delta_sent = true;
                frame
            }
            None => self.full_frame(),
        }
    }

    fn full_frame(&mut self) -> Frame {
        let (envelope, seq, key) = (&self.envelope, self.seq, self.key.as_deref());
        self.full
            .get_or_insert_with(|| {
                Rc::new(ws::encode_text(&frames::full_message(envelope, seq, key)))
            })
            .clone()
    }

    fn delta_frame(&mut self, algorithm: Algorithm) -> Option<Frame> {
        let slot = match algorithm {
            Algorithm::Fossil => 0,
            Algorithm::Xdelta3 => 1,
        };
        if let Some(done) = &self.deltas[slot] {
            return done.clone();
        }
        let frame = self.build_delta(algorithm);
        self.deltas[slot] = Some(frame.clone());
        frame
    }

    fn build_delta(&mut self, algorithm: Algorithm) -> Option<Frame> {
        let base = self.base.as_ref()?;
        let prev = self.prev_seq?;
        let delta = algorithm.encode(base, &self.envelope)?;
        let text = frames::delta_message(&DeltaFrame {
            channel: &self.channel,
            event: &self.event,
            delta: &delta,
            seq: self.seq,
            algorithm: (!self.omit_algorithm || algorithm != self.announced).then_some(algorithm),
            conflation_key: self.key.as_deref(),
            base_index: prev,
        });
        let frame = ws::encode_text(text.as_bytes());
        // Only worth it when the frame on the wire is smaller than the full message.
        if frame.len() >= self.full_frame().len() {
            return None;
        }
        Some(Rc::new(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn envelope(price: u32) -> Bytes {
        Bytes::from(format!(
            r#"{{"event":"tick","channel":"ticker","data":"{{\"asset\":\"BTC\",\"price\":\"{price}\",\"exchange\":\"binance\",\"padding\":\"{}\"}}"}}"#,
            "x".repeat(300)
        ))
    }

    fn payload(frame: &Frame) -> serde_json::Value {
        // Server frames are unmasked text frames: 2 or 4 header bytes for these sizes.
        let header = if frame[1] == 126 { 4 } else { 2 };
        serde_json::from_slice(&frame[header..]).unwrap()
    }

    /// A client per DELTA-TAGS.md §4, non-conflation mode: returns the reconstructed envelope.
    fn client_apply(base: &mut Option<String>, frame: &Frame) -> String {
        let v = payload(frame);
        if v["event"] == "pusher:delta" {
            let b = base.as_ref().expect("a delta without a base");
            let d = base64::engine::general_purpose::STANDARD
                .decode(v["data"]["delta"].as_str().unwrap())
                .unwrap();
            let out = String::from_utf8(fossil_delta::apply(b.as_bytes(), &d).unwrap()).unwrap();
            *base = Some(out.clone());
            out
        } else {
            let header = if frame[1] == 126 { 4 } else { 2 };
            let text = std::str::from_utf8(&frame[header..]).unwrap();
            let seq = v["__delta_seq"].as_u64().unwrap();
            let stripped = text.replace(&format!(",\"__delta_seq\":{seq}"), "");
            *base = Some(stripped.clone());
            stripped
        }
    }

    #[test]
    fn held_bases_keep_the_newest_up_to_the_cap() {
        let mut held = HeldBases::default();
        held.push(1, 1);
        held.push(2, 1);
        assert_eq!(
            held,
            HeldBases::One(2),
            "cap 1: the new base replaces the old"
        );
        held.push(3, 3);
        held.push(4, 3);
        held.push(5, 3);
        assert_eq!(
            held,
            HeldBases::Many(Box::new(vec![3, 4, 5])),
            "cap 3: the oldest (2) went"
        );
        held.remove(4);
        assert!(held.contains(3) && held.contains(5) && !held.contains(4));
        let mut one = HeldBases::One(7);
        one.remove(8);
        assert!(one.contains(7));
        one.remove(7);
        assert_eq!(one, HeldBases::None);
    }

    #[test]
    fn shared_stream_late_joiner_and_interval() {
        let settings = DeltaSettings {
            full_message_interval: 3,
            ..Default::default()
        };
        let mut ch = ChannelDeltas::default();
        ch.add_socket(1, Algorithm::Fossil);
        let mut bases: HashMap<u64, Option<String>> = HashMap::new();
        let mut kinds = Vec::new();
        for i in 0..12u32 {
            if i == 5 {
                ch.add_socket(2, Algorithm::Fossil);
            }
            let env = envelope(100 + i);
            let mut round = ch.begin(
                EventInput {
                    envelope: &env,
                    event: "tick",
                    channel: "ticker",
                    key: None,
                },
                0,
                &settings,
            );
            let mut frames = Vec::new();
            for id in [1u64, 2] {
                if let Some(s) = ch.socket_mut(id) {
                    let f = round.frame_for(s);
                    let got = client_apply(bases.entry(id).or_default(), &f);
                    assert_eq!(got.as_bytes(), &env[..], "socket {id} event {i}");
                    frames.push(f);
                }
            }
            if frames.len() == 2 && payload(&frames[0])["event"] == payload(&frames[1])["event"] {
                assert!(
                    Rc::ptr_eq(&frames[0], &frames[1]),
                    "same frame is shared, not rebuilt"
                );
            }
            kinds.push(payload(&frames[0])["event"] == "pusher:delta");
            ch.finish(round, 0, &settings);
        }
        // socket 1: F D D D F D D D F D D D (a full after 3 deltas).
        assert_eq!(
            kinds,
            [false, true, true, true, false, true, true, true, false, true, true, true]
        );
    }

    #[test]
    fn sync_error_and_missed_messages_get_a_full_frame() {
        let settings = DeltaSettings::default();
        let mut ch = ChannelDeltas::default();
        ch.add_socket(1, Algorithm::Fossil);
        let mut base = None;
        let send = |ch: &mut ChannelDeltas, i: u32, deliver: bool, base: &mut Option<String>| {
            let env = envelope(i);
            let mut round = ch.begin(
                EventInput {
                    envelope: &env,
                    event: "tick",
                    channel: "ticker",
                    key: None,
                },
                0,
                &settings,
            );
            let kind = if deliver {
                let f = round.frame_for(ch.socket_mut(1).unwrap());
                assert_eq!(client_apply(base, &f).as_bytes(), &env[..]);
                Some(payload(&f)["event"] == "pusher:delta")
            } else {
                None
            };
            ch.finish(round, 0, &settings);
            kind
        };
        assert_eq!(send(&mut ch, 1, true, &mut base), Some(false));
        assert_eq!(send(&mut ch, 2, true, &mut base), Some(true));
        assert_eq!(send(&mut ch, 3, false, &mut base), None); // filtered out
        assert_eq!(send(&mut ch, 4, true, &mut base), Some(false));
        assert_eq!(send(&mut ch, 5, true, &mut base), Some(true));
        ch.reset_socket(1);
        assert_eq!(send(&mut ch, 6, true, &mut base), Some(false));
    }

    #[test]
    fn a_frame_lost_to_a_full_queue_is_not_a_base() {
        let settings = DeltaSettings::default();
        let mut ch = ChannelDeltas::default();
        ch.add_socket(1, Algorithm::Fossil);
        let mut kinds = Vec::new();
        for i in 0..3 {
            let env = envelope(i);
            let mut r = ch.begin(
                EventInput {
                    envelope: &env,
                    event: "tick",
                    channel: "ticker",
                    key: None,
                },
                0,
                &settings,
            );
            let socket = ch.socket_mut(1).unwrap();
            let f = r.frame_for(socket);
            if i == 1 {
                socket.lost(r.seq());
            }
            kinds.push(payload(&f)["event"] == "pusher:delta");
            ch.finish(r, 0, &settings);
        }
        assert_eq!(kinds, [false, true, false]);
    }

    #[test]
    fn stale_base_and_small_gain_give_full_frames() {
        let settings = DeltaSettings {
            max_state_age_secs: 10,
            ..Default::default()
        };
        let mut ch = ChannelDeltas::default();
        ch.add_socket(1, Algorithm::Xdelta3);
        let env = envelope(1);
        let mut r = ch.begin(
            EventInput {
                envelope: &env,
                event: "tick",
                channel: "ticker",
                key: None,
            },
            0,
            &settings,
        );
        r.frame_for(ch.socket_mut(1).unwrap());
        ch.finish(r, 0, &settings);
        let env2 = envelope(2);
        let mut r = ch.begin(
            EventInput {
                envelope: &env2,
                event: "tick",
                channel: "ticker",
                key: None,
            },
            11,
            &settings,
        );
        let f = r.frame_for(ch.socket_mut(1).unwrap());
        assert_eq!(payload(&f)["__delta_seq"], 1, "an old base is not used");
        ch.finish(r, 11, &settings);
        // A tiny envelope: a delta frame would be bigger than the full frame.
        let tiny = Bytes::from_static(br#"{"event":"t","channel":"ticker","data":"1"}"#);
        let mut r = ch.begin(
            EventInput {
                envelope: &tiny,
                event: "t",
                channel: "ticker",
                key: None,
            },
            11,
            &settings,
        );
        let f = r.frame_for(ch.socket_mut(1).unwrap());
        assert_eq!(payload(&f)["__delta_seq"], 2);
    }

    #[test]
    fn conflation_keys_have_their_own_bases_and_one_sequence() {
        let settings = DeltaSettings {
            max_conflation_states_per_channel: 2,
            ..Default::default()
        };
        let mut ch = ChannelDeltas::default();
        ch.add_socket(1, Algorithm::Fossil);
        let mut seen = Vec::new();
        for (i, key) in ["BTC", "ETH", "BTC", "ETH", "SOL", "BTC"]
            .iter()
            .enumerate()
        {
            let env = envelope(i as u32);
            let mut r = ch.begin(
                EventInput {
                    envelope: &env,
                    event: "tick",
                    channel: "ticker",
                    key: Some(key),
                },
                0,
                &settings,
            );
            let v = payload(&r.frame_for(ch.socket_mut(1).unwrap()));
            ch.finish(r, 0, &settings);
            if v["event"] == "pusher:delta" {
                assert_eq!(v["data"]["conflation_key"], *key);
                seen.push((
                    "D",
                    v["data"]["seq"].as_u64().unwrap(),
                    v["data"]["base_index"].as_u64(),
                ));
            } else {
                assert_eq!(v["__conflation_key"], *key);
                seen.push(("F", v["__delta_seq"].as_u64().unwrap(), None));
            }
        }
        assert_eq!(
            seen,
            [
                ("F", 0, None),
                ("F", 1, None),
                ("D", 2, Some(0)),
                ("D", 3, Some(1)),
                ("F", 4, None),
                ("F", 5, None)
            ],
            "BTC was evicted when SOL arrived (cap 2)"
        );
    }
}
