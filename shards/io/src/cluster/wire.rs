//! The cross-node message format: what one node tells the others over the bus, serialised once.
//!
//! A bus message is an envelope the I/O shard writes (magic, format version, origin node, per-origin sequence;
//! see `sockudo_io_shard::cluster`) around a body encoded here: one kind byte, then the kind's fields. Strings
//! are UTF-8 with a `u16` length, byte blobs (WebSocket frames) a `u32` length, all little-endian. Apps are
//! named by their **id** (stable across processes), never by a process-local index, and nothing here refers
//! to a shard, a connection index or a reply channel of the sending process.
//!
//! Decoding never panics on hostile or truncated input: every read is checked and a bad body is an error.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Why a body could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The body ended inside a field.
    #[error("truncated message")]
    Truncated,
    /// A kind byte this version does not know.
    #[error("unknown message kind {0}")]
    UnknownKind(u8),
    /// A string field is not UTF-8.
    #[error("a string field is not UTF-8")]
    NotUtf8,
    /// Bytes left after the last field.
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// A question one node asks the others about their local state (REST reads for the whole cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteQuery {
    /// Channels with local subscribers (optionally by prefix), with their local subscription counts.
    Channels {
        /// `filter_by_prefix`.
        prefix: Option<String>,
    },
    /// Local subscriptions of one channel.
    SubscriptionCount {
        /// The channel.
        channel: String,
    },
}

/// A node's answer to a [`RemoteQuery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteAnswer {
    /// `(channel, count)` pairs.
    Counts(Vec<(String, u64)>),
    /// One count.
    Count(u64),
}

/// A presence member as carried between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireMember {
    /// The user id.
    pub user_id: String,
    /// `user_info` JSON text, when given.
    pub info: Option<String>,
}

/// One channel's members on the sending node, in a state sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMembers {
    /// The app id.
    pub app_id: String,
    /// The presence channel.
    pub channel: String,
    /// The users present on the sending node.
    pub members: Vec<WireMember>,
}

/// An event's name, publish tags and delta setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDetails {
    /// Event name.
    pub name: String,
    /// Publish tags, sorted by key; `None` for untagged events.
    pub tags: Option<Vec<(String, String)>>,
    /// False when the publisher said `"delta": false`.
    pub track: bool,
}

/// Everything nodes say to each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterMsg {
    /// A channel event for the receiving node's local subscribers: the encoded WebSocket frame, sent on as
    /// is; `except` is a socket id left out (the publisher's own socket). The sending node receives it too:
    /// with a non-zero `token` it delivers its own subscribers from that copy (one bus-defined order for the
    /// channel on every node), with 0 it already delivered them.
    Event {
        /// The app id.
        app_id: String,
        /// The channel.
        channel: String,
        /// The WebSocket frame.
        frame: Bytes,
        /// What delta compression and tag filtering need; `None` for events that get neither.
        details: Option<EventDetails>,
        /// Socket id excluded from delivery.
        except: Option<String>,
        /// The publishing shard's wait token (0: delivered on the publishing node already).
        token: u64,
    },
    /// A user became present on (or left) the sending node in a presence channel: the node-level first
    /// socket / last socket, whatever the number of sockets behind it.
    Presence {
        /// The app id.
        app_id: String,
        /// The presence channel.
        channel: String,
        /// The member.
        member: WireMember,
        /// Present now.
        present: bool,
    },
    /// The sending node's presence members of some channels, replacing what the receiver knew of that node
    /// in exactly those channels. Part `part` of `parts` of one sync.
    Sync {
        /// Which part of the sync this is (0-based).
        part: u16,
        /// How many parts the sync has (one per shard of the sender).
        parts: u16,
        /// The channels of this part, with their members on the sender.
        channels: Vec<ChannelMembers>,
    },
    /// The sending node just started (or lost the bus for a while): every node answers with a full [`Sync`].
    ///
    /// [`Sync`]: ClusterMsg::Sync
    Hello,
    /// The sending node stops: forget its members now rather than after the heartbeat timeout.
    Bye,
    /// The sending node is alive.
    Heartbeat,
    /// The sending node gained its first (`online`) or lost its last socket signed in as `user`.
    Online {
        /// The app id.
        app_id: String,
        /// The user id.
        user: String,
        /// Online on the sending node now.
        online: bool,
    },
    /// Close every socket signed in as `user` (`terminate_connections`).
    TerminateUser {
        /// The app id.
        app_id: String,
        /// The user id.
        user: String,
    },
    /// A question for every other node; answers go to the asking node.
    Query {
        /// The asker's request number.
        request: u64,
        /// The app id.
        app_id: String,
        /// The question.
        query: RemoteQuery,
    },
    /// The sending node's number of subscriptions of a channel changed to `count`.
    Count {
        /// The app id.
        app_id: String,
        /// The channel.
        channel: String,
        /// Subscriptions on the sending node.
        count: u64,
    },
    /// Marks a point in the bus's order for a presence channel: when the sending node receives it back, every
    /// presence announcement for the channel published before it has been applied there (a joining socket's
    /// snapshot is taken then).
    Barrier {
        /// The app id.
        app_id: String,
        /// The presence channel.
        channel: String,
        /// The joining socket's token.
        token: u64,
    },
    /// The sending node's number of open connections of an app changed to `count`.
    Connections {
        /// The app id.
        app_id: String,
        /// Open connections on the sending node.
        count: u64,
    },
    /// The sending node gained its first (`occupied`) or lost its last subscriber of a channel.
    Occupancy {
        /// The app id.
        app_id: String,
        /// The channel.
        channel: String,
        /// Has subscribers on the sending node now.
        occupied: bool,
    },
    /// An answer to the `Query` numbered `request` of node `to`.
    Answer {
        /// The node that asked.
        to: u64,
        /// Its request number.
        request: u64,
        /// The answer.
        answer: RemoteAnswer,
    },
}

mod kind {
    pub const EVENT: u8 = 1;
    pub const PRESENCE: u8 = 2;
    pub const SYNC: u8 = 3;
    pub const HELLO: u8 = 4;
    pub const BYE: u8 = 5;
    pub const HEARTBEAT: u8 = 6;
    // 7 was a cache store of format 1's first drafts: every node now keeps cache channels' events as it
    // receives them.
    pub const ONLINE: u8 = 8;
    pub const TERMINATE_USER: u8 = 9;
    pub const QUERY: u8 = 10;
    pub const ANSWER: u8 = 11;
    pub const COUNT: u8 = 12;
    pub const OCCUPANCY: u8 = 13;
    pub const CONNECTIONS: u8 = 14;
    pub const BARRIER: u8 = 15;
}

impl ClusterMsg {
    /// The body bytes.
    pub fn encode(&self) -> Bytes {
        let mut w = Writer(BytesMut::with_capacity(self.size_hint()));
        match self {
            ClusterMsg::Event {
                app_id,
                channel,
                frame,
                details,
                except,
                token,
            } => {
                w.u8(kind::EVENT);
                w.str(app_id);
                w.str(channel);
                w.opt_str(except.as_deref());
                w.u64(*token);
                match details {
                    None => w.u8(0),
                    Some(d) => {
                        w.u8(1);
                        w.str(&d.name);
                        w.u8(u8::from(d.track));
                        match &d.tags {
                            None => w.u8(0),
                            Some(tags) => {
                                w.u8(1);
                                w.u16(tags.len() as u16);
                                for (k, v) in tags {
                                    w.str(k);
                                    w.str(v);
                                }
                            }
                        }
                    }
                }
                w.blob(frame);
            }
            ClusterMsg::Presence {
                app_id,
                channel,
                member,
                present,
            } => {
                w.u8(kind::PRESENCE);
                w.str(app_id);
                w.str(channel);
                w.member(member);
                w.u8(u8::from(*present));
            }
            ClusterMsg::Sync {
                part,
                parts,
                channels,
            } => {
                w.u8(kind::SYNC);
                w.u16(*part);
                w.u16(*parts);
                w.u32(channels.len() as u32);
                for c in channels {
                    w.str(&c.app_id);
                    w.str(&c.channel);
                    w.u32(c.members.len() as u32);
                    for m in &c.members {
                        w.member(m);
                    }
                }
            }
            ClusterMsg::Hello => w.u8(kind::HELLO),
            ClusterMsg::Bye => w.u8(kind::BYE),
            ClusterMsg::Heartbeat => w.u8(kind::HEARTBEAT),
            ClusterMsg::Online {
                app_id,
                user,
                online,
            } => {
                w.u8(kind::ONLINE);
                w.str(app_id);
                w.str(user);
                w.u8(u8::from(*online));
            }
            ClusterMsg::TerminateUser { app_id, user } => {
                w.u8(kind::TERMINATE_USER);
                w.str(app_id);
                w.str(user);
            }
            ClusterMsg::Query {
                request,
                app_id,
                query,
            } => {
                w.u8(kind::QUERY);
                w.u64(*request);
                w.str(app_id);
                match query {
                    RemoteQuery::Channels { prefix } => {
                        w.u8(0);
                        w.opt_str(prefix.as_deref());
                    }
                    RemoteQuery::SubscriptionCount { channel } => {
                        w.u8(1);
                        w.str(channel);
                    }
                }
            }
            ClusterMsg::Count {
                app_id,
                channel,
                count,
            } => {
                w.u8(kind::COUNT);
                w.str(app_id);
                w.str(channel);
                w.u64(*count);
            }
            ClusterMsg::Barrier {
                app_id,
                channel,
                token,
            } => {
                w.u8(kind::BARRIER);
                w.str(app_id);
                w.str(channel);
                w.u64(*token);
            }
            ClusterMsg::Connections { app_id, count } => {
                w.u8(kind::CONNECTIONS);
                w.str(app_id);
                w.u64(*count);
            }
            ClusterMsg::Occupancy {
                app_id,
                channel,
                occupied,
            } => {
                w.u8(kind::OCCUPANCY);
                w.str(app_id);
                w.str(channel);
                w.u8(u8::from(*occupied));
            }
            ClusterMsg::Answer {
                to,
                request,
                answer,
            } => {
                w.u8(kind::ANSWER);
                w.u64(*to);
                w.u64(*request);
                match answer {
                    RemoteAnswer::Counts(counts) => {
                        w.u8(0);
                        w.u32(counts.len() as u32);
                        for (channel, n) in counts {
                            w.str(channel);
                            w.u64(*n);
                        }
                    }
                    RemoteAnswer::Count(n) => {
                        w.u8(1);
                        w.u64(*n);
                    }
                }
            }
        }
        w.0.freeze()
    }

    fn size_hint(&self) -> usize {
        match self {
            ClusterMsg::Event { channel, frame, .. } => 128 + channel.len() + frame.len(),
            _ => 128,
        }
    }

    /// Decodes a body. `frames` are sliced out of `body` without copying.
    pub fn decode(body: &Bytes) -> Result<ClusterMsg, WireError> {
        let mut r = Reader { buf: body, pos: 0 };
        let msg = match r.u8()? {
            kind::EVENT => {
                let app_id = r.str()?;
                let channel = r.str()?;
                let except = r.opt_str()?;
                let token = r.u64()?;
                let details = match r.u8()? {
                    0 => None,
                    _ => {
                        let name = r.str()?;
                        let track = r.u8()? != 0;
                        let tags = match r.u8()? {
                            0 => None,
                            _ => {
                                let n = r.u16()?;
                                let mut tags = Vec::with_capacity(usize::from(n).min(64));
                                for _ in 0..n {
                                    let k = r.str()?;
                                    tags.push((k, r.str()?));
                                }
                                Some(tags)
                            }
                        };
                        Some(EventDetails { name, tags, track })
                    }
                };
                ClusterMsg::Event {
                    app_id,
                    channel,
                    frame: r.blob()?,
                    details,
                    except,
                    token,
                }
            }
            kind::PRESENCE => ClusterMsg::Presence {
                app_id: r.str()?,
                channel: r.str()?,
                member: r.member()?,
                present: r.u8()? != 0,
            },
            kind::SYNC => {
                let part = r.u16()?;
                let parts = r.u16()?;
                let n = r.u32()?;
                let mut channels = Vec::new();
                for _ in 0..n {
                    let app_id = r.str()?;
                    let channel = r.str()?;
                    let count = r.u32()?;
                    let mut members = Vec::new();
                    for _ in 0..count {
                        members.push(r.member()?);
                    }
                    channels.push(ChannelMembers {
                        app_id,
                        channel,
                        members,
                    });
                }
                ClusterMsg::Sync {
                    part,
                    parts,
                    channels,
                }
            }
            kind::HELLO => ClusterMsg::Hello,
            kind::BYE => ClusterMsg::Bye,
            kind::HEARTBEAT => ClusterMsg::Heartbeat,
            kind::ONLINE => ClusterMsg::Online {
                app_id: r.str()?,
                user: r.str()?,
                online: r.u8()? != 0,
            },
            kind::TERMINATE_USER => ClusterMsg::TerminateUser {
                app_id: r.str()?,
                user: r.str()?,
            },
            kind::QUERY => {
                let request = r.u64()?;
                let app_id = r.str()?;
                let query = match r.u8()? {
                    0 => RemoteQuery::Channels {
                        prefix: r.opt_str()?,
                    },
                    1 => RemoteQuery::SubscriptionCount { channel: r.str()? },
                    other => return Err(WireError::UnknownKind(other)),
                };
                ClusterMsg::Query {
                    request,
                    app_id,
                    query,
                }
            }
            kind::ANSWER => {
                let to = r.u64()?;
                let request = r.u64()?;
                let answer = match r.u8()? {
                    0 => {
                        let n = r.u32()?;
                        let mut counts = Vec::new();
                        for _ in 0..n {
                            let channel = r.str()?;
                            counts.push((channel, r.u64()?));
                        }
                        RemoteAnswer::Counts(counts)
                    }
                    1 => RemoteAnswer::Count(r.u64()?),
                    other => return Err(WireError::UnknownKind(other)),
                };
                ClusterMsg::Answer {
                    to,
                    request,
                    answer,
                }
            }
            kind::COUNT => ClusterMsg::Count {
                app_id: r.str()?,
                channel: r.str()?,
                count: r.u64()?,
            },
            kind::BARRIER => ClusterMsg::Barrier {
                app_id: r.str()?,
                channel: r.str()?,
                token: r.u64()?,
            },
            kind::CONNECTIONS => ClusterMsg::Connections {
                app_id: r.str()?,
                count: r.u64()?,
            },
            kind::OCCUPANCY => ClusterMsg::Occupancy {
                app_id: r.str()?,
                channel: r.str()?,
                occupied: r.u8()? != 0,
            },
            other => return Err(WireError::UnknownKind(other)),
        };
        match body.len() - r.pos {
            0 => Ok(msg),
            extra => Err(WireError::Trailing(extra)),
        }
    }
}

struct Writer(BytesMut);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.put_u16_le(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.put_u32_le(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.put_u64_le(v);
    }
    /// Short strings (names, ids): callers keep them under 64 KiB (channel names and ids are far shorter).
    fn str(&mut self, s: &str) {
        let len = s.len().min(usize::from(u16::MAX));
        self.u16(len as u16);
        self.0.put_slice(&s.as_bytes()[..len]);
    }
    fn long_str(&mut self, s: &str) {
        self.blob(s.as_bytes());
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }
    fn blob(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.put_slice(b);
    }
    fn member(&mut self, m: &WireMember) {
        self.str(&m.user_id);
        match &m.info {
            Some(info) => {
                self.u8(1);
                self.long_str(info);
            }
            None => self.u8(0),
        }
    }
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<std::ops::Range<usize>, WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated)?;
        if end > self.buf.len() {
            return Err(WireError::Truncated);
        }
        let range = self.pos..end;
        self.pos = end;
        Ok(range)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let range = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[range]);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn utf8(&mut self, len: usize) -> Result<String, WireError> {
        let range = self.take(len)?;
        std::str::from_utf8(&self.buf[range])
            .map(str::to_string)
            .map_err(|_| WireError::NotUtf8)
    }
    fn str(&mut self) -> Result<String, WireError> {
        let len = self.u16()?;
        self.utf8(usize::from(len))
    }
    fn long_str(&mut self) -> Result<String, WireError> {
        let len = self.u32()?;
        self.utf8(len as usize)
    }
    fn opt_str(&mut self) -> Result<Option<String>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.str().map(Some),
        }
    }
    fn blob(&mut self) -> Result<Bytes, WireError> {
        let len = self.u32()? as usize;
        let range = self.take(len)?;
        Ok(self.buf.slice(range))
    }
    fn member(&mut self) -> Result<WireMember, WireError> {
        let user_id = self.str()?;
        let info = match self.u8()? {
            0 => None,
            _ => Some(self.long_str()?),
        };
        Ok(WireMember { user_id, info })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, info: Option<&str>) -> WireMember {
        WireMember {
            user_id: id.into(),
            info: info.map(Into::into),
        }
    }

    fn every_kind() -> Vec<ClusterMsg> {
        vec![
            ClusterMsg::Event {
                app_id: "app-1".into(),
                channel: "news".into(),
                frame: Bytes::from_static(b"\x81\x05hello"),
                details: Some(EventDetails {
                    name: "ev".into(),
                    tags: Some(vec![("k".into(), "v".into()), ("ü".into(), "".into())]),
                    track: true,
                }),
                except: Some("123.456".into()),
                token: 7,
            },
            ClusterMsg::Event {
                app_id: "a".into(),
                channel: "presence-ü".into(),
                frame: Bytes::new(),
                details: Some(EventDetails {
                    name: "e".into(),
                    tags: None,
                    track: false,
                }),
                except: None,
                token: 0,
            },
            ClusterMsg::Event {
                app_id: "a".into(),
                channel: "c".into(),
                frame: Bytes::new(),
                details: None,
                except: None,
                token: u64::MAX,
            },
            ClusterMsg::Presence {
                app_id: "a".into(),
                channel: "presence-x".into(),
                member: member("u1", Some(r#"{"name":"A"}"#)),
                present: true,
            },
            ClusterMsg::Presence {
                app_id: "a".into(),
                channel: "presence-x".into(),
                member: member("u1", None),
                present: false,
            },
            ClusterMsg::Sync {
                part: 1,
                parts: 3,
                channels: vec![ChannelMembers {
                    app_id: "a".into(),
                    channel: "presence-y".into(),
                    members: vec![member("1", None), member("2", Some("{}"))],
                }],
            },
            ClusterMsg::Hello,
            ClusterMsg::Bye,
            ClusterMsg::Heartbeat,
            ClusterMsg::Online {
                app_id: "a".into(),
                user: "u".into(),
                online: true,
            },
            ClusterMsg::TerminateUser {
                app_id: "a".into(),
                user: "u".into(),
            },
            ClusterMsg::Query {
                request: 7,
                app_id: "a".into(),
                query: RemoteQuery::Channels {
                    prefix: Some("presence-".into()),
                },
            },
            ClusterMsg::Query {
                request: 8,
                app_id: "a".into(),
                query: RemoteQuery::SubscriptionCount {
                    channel: "c".into(),
                },
            },
            ClusterMsg::Answer {
                to: u64::MAX,
                request: 7,
                answer: RemoteAnswer::Counts(vec![("c".into(), 3)]),
            },
            ClusterMsg::Answer {
                to: 1,
                request: 8,
                answer: RemoteAnswer::Count(12),
            },
            ClusterMsg::Count {
                app_id: "a".into(),
                channel: "c".into(),
                count: 3,
            },
            ClusterMsg::Occupancy {
                app_id: "a".into(),
                channel: "c".into(),
                occupied: true,
            },
            ClusterMsg::Connections {
                app_id: "a".into(),
                count: 17,
            },
            ClusterMsg::Barrier {
                app_id: "a".into(),
                channel: "presence-c".into(),
                token: 3,
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for msg in every_kind() {
            let body = msg.encode();
            assert_eq!(ClusterMsg::decode(&body), Ok(msg.clone()), "{msg:?}");
        }
    }

    #[test]
    fn every_truncation_is_an_error_never_a_panic() {
        for msg in every_kind() {
            let body = msg.encode();
            for cut in 0..body.len() {
                assert!(
                    ClusterMsg::decode(&body.slice(..cut)).is_err(),
                    "{msg:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn unknown_kinds_trailing_bytes_and_bad_utf8_are_refused() {
        assert_eq!(
            ClusterMsg::decode(&Bytes::from_static(&[200])),
            Err(WireError::UnknownKind(200))
        );
        let mut body = ClusterMsg::Hello.encode().to_vec();
        body.push(0);
        assert_eq!(
            ClusterMsg::decode(&Bytes::from(body)),
            Err(WireError::Trailing(1))
        );
        // TerminateUser with a 1-byte app id that is not UTF-8.
        let body = Bytes::from_static(&[9, 1, 0, 0xff, 0, 0]);
        assert_eq!(ClusterMsg::decode(&body), Err(WireError::NotUtf8));
    }

    #[test]
    fn frames_are_sliced_from_the_body_without_copy() {
        let frame = Bytes::from(vec![0x81u8; 300]);
        let body = ClusterMsg::Event {
            app_id: "a".into(),
            channel: "c".into(),
            frame: frame.clone(),
            details: None,
            except: None,
            token: 0,
        }
        .encode();
        let ClusterMsg::Event { frame: got, .. } = ClusterMsg::decode(&body).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(got, frame);
        let start = body.as_ptr() as usize;
        let got = got.as_ptr() as usize;
        assert!(
            got >= start && got < start + body.len(),
            "frame not sliced from the body"
        );
    }
}
