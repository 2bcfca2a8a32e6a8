//! Presence members of the channels this shard owns.
//!
//! Every presence channel has one owner shard (`Shard::owner_of`); all joins and leaves of that channel, from
//! whatever shard the socket is on, are applied here in order, so the member list, `member_added` (first socket
//! of a user) and `member_removed` (last socket of a user) are exact for the whole process.
//!
//! In a cluster the owner also keeps, per member, the other nodes where the user is present (what those nodes
//! announced: their own first socket / last socket of the user). A user is a member while it has a socket
//! here or is present on some other node; `member_added` / `member_removed` follow that union, so each node
//! derives the same member events for its own sockets from the same ordered announcements.

use crate::protocol::messages::push_json_string;
use std::collections::HashMap;

/// One user in a presence channel.
#[derive(Debug)]
struct Member {
    /// `user_info` as JSON text, exactly as the client's `channel_data` carried it (`None` when absent).
    info: Option<Box<str>>,
    /// Sockets of this user in the channel on this node, over all shards.
    sockets: u32,
    /// Other nodes where the user is present in the channel.
    nodes: Vec<u64>,
}

impl Member {
    fn present(&self) -> bool {
        self.sockets > 0 || !self.nodes.is_empty()
    }
}

/// `(user id, user_info)` pairs of one channel.
pub type MemberList = Vec<(String, Option<String>)>;

/// A change of the member list, as `member_added` / `member_removed` announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `{"user_id":..,"user_info":..}`.
    Added(String),
    /// `{"user_id":..}`.
    Removed(String),
}

/// What a local socket's departure produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// `{"user_id":..}` when the user is no longer a member anywhere: the `member_removed` data.
    pub member_removed: Option<String>,
    /// The user's last socket on this node left: other nodes are told.
    pub node_last: bool,
}

/// The members of one presence channel, in join order.
#[derive(Debug, Default)]
struct PresenceChannel {
    members: HashMap<Box<str>, Member>,
    order: Vec<Box<str>>,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinRefused {
    /// The channel already has `max` distinct users.
    TooManyMembers {
        /// The limit.
        max: usize,
    },
    /// The owner shard did not answer (it is stopping).
    Unavailable,
}

/// What a successful join produced.
#[derive(Debug, PartialEq, Eq)]
pub struct Joined {
    /// `{"presence":{"ids":[..],"hash":{..},"count":n}}`, the `subscription_succeeded` data.
    pub snapshot: String,
    /// `{"user_id":..,"user_info":..}` when this is the user's first socket: the `member_added` data.
    pub member_added: Option<String>,
    /// This is the user's first socket on this node: other nodes are told.
    pub node_first: bool,
}

/// Presence state of the channels one shard owns, keyed by app index and channel name.
#[derive(Debug, Default)]
pub struct PresenceRegistry {
    channels: HashMap<(u32, Box<str>), PresenceChannel>,
}

impl PresenceRegistry {
    /// Adds one socket of `user_id` to the channel.
    pub fn join(
        &mut self,
        app: u32,
        channel: &str,
        user_id: &str,
        info: Option<&str>,
        max_members: usize,
    ) -> Result<Joined, JoinRefused> {
        let entry = self.channels.entry((app, channel.into())).or_default();
        let (first_socket, node_first) = match entry.members.get_mut(user_id) {
            Some(member) => {
                member.sockets += 1;
                (false, member.sockets == 1)
            }
            None => {
                if entry.members.len() >= max_members {
                    if entry.members.is_empty() {
                        self.channels.remove(&(app, channel.into()));
                    }
                    return Err(JoinRefused::TooManyMembers { max: max_members });
                }
                entry.members.insert(
                    user_id.into(),
                    Member {
                        info: info.map(Into::into),
                        sockets: 1,
                        nodes: Vec::new(),
                    },
                );
                entry.order.push(user_id.into());
                (true, true)
            }
        };
        let snapshot = snapshot_json(entry);
        let member_added = first_socket.then(|| member_json(user_id, info));
        Ok(Joined {
            snapshot,
            member_added,
            node_first,
        })
    }

    /// Removes one socket of `user_id` on this node.
    pub fn leave(&mut self, app: u32, channel: &str, user_id: &str) -> Left {
        let key = (app, Box::<str>::from(channel));
        let Some(entry) = self.channels.get_mut(&key) else {
            return Left::default();
        };
        let Some(member) = entry.members.get_mut(user_id) else {
            return Left::default();
        };
        if member.sockets == 0 {
            return Left::default();
        }
        member.sockets -= 1;
        if member.sockets > 0 {
            return Left::default();
        }
        let member_removed = remove_if_absent(entry, user_id).then(|| removed_json(user_id));
        if entry.members.is_empty() {
            self.channels.remove(&key);
        }
        Left {
            member_removed,
            node_last: true,
        }
    }

    /// Node `node` announced that `user_id` is (or no longer is) present in the channel there.
    pub fn set_remote(
        &mut self,
        app: u32,
        channel: &str,
        node: u64,
        user_id: &str,
        info: Option<&str>,
        present: bool,
    ) -> Option<Transition> {
        let key = (app, Box::<str>::from(channel));
        if present {
            let entry = self.channels.entry(key).or_default();
            match entry.members.get_mut(user_id) {
                Some(member) => {
                    if !member.nodes.contains(&node) {
                        member.nodes.push(node);
                    }
                    None
                }
                None => {
                    entry.members.insert(
                        user_id.into(),
                        Member {
                            info: info.map(Into::into),
                            sockets: 0,
                            nodes: vec![node],
                        },
                    );
                    entry.order.push(user_id.into());
                    Some(Transition::Added(member_json(user_id, info)))
                }
            }
        } else {
            let entry = self.channels.get_mut(&key)?;
            let member = entry.members.get_mut(user_id)?;
            member.nodes.retain(|&n| n != node);
            let gone = remove_if_absent(entry, user_id);
            if entry.members.is_empty() {
                self.channels.remove(&key);
            }
            gone.then(|| Transition::Removed(removed_json(user_id)))
        }
    }

    /// Node `node`'s members of the channel are exactly `members` (a state sync): applies the difference.
    pub fn replace_remote(
        &mut self,
        app: u32,
        channel: &str,
        node: u64,
        members: &[(String, Option<String>)],
    ) -> Vec<Transition> {
        let mut changes = Vec::new();
        let stale: Vec<Box<str>> = self
            .channels
            .get(&(app, channel.into()))
            .map(|entry| {
                entry
                    .members
                    .iter()
                    .filter(|(id, m)| {
                        m.nodes.contains(&node) && !members.iter().any(|(u, _)| u == &***id)
                    })
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for user in stale {
            changes.extend(self.set_remote(app, channel, node, &user, None, false));
        }
        for (user, info) in members {
            changes.extend(self.set_remote(app, channel, node, user, info.as_deref(), true));
        }
        changes
    }

    /// True when node `node` has a member in the channel.
    pub fn node_present(&self, app: u32, channel: &str, node: u64) -> bool {
        self.channels
            .get(&(app, Box::<str>::from(channel)))
            .is_some_and(|e| e.members.values().any(|m| m.nodes.contains(&node)))
    }

    /// Node `node` is gone: it is no longer where anyone is present. Returns the members that left with it.
    pub fn drop_node(&mut self, node: u64) -> Vec<(u32, Box<str>, Transition)> {
        let mut changes = Vec::new();
        self.channels.retain(|(app, channel), entry| {
            let gone: Vec<Box<str>> = entry
                .members
                .iter_mut()
                .filter_map(|(id, m)| {
                    let before = m.nodes.len();
                    m.nodes.retain(|&n| n != node);
                    (m.nodes.len() != before && !m.present()).then(|| id.clone())
                })
                .collect();
            for user in gone {
                remove_if_absent(entry, &user);
                changes.push((
                    *app,
                    channel.clone(),
                    Transition::Removed(removed_json(&user)),
                ));
            }
            !entry.members.is_empty()
        });
        changes
    }

    /// Members with a socket on this node, per channel: this node's part of a state sync.
    pub fn local_members(&self) -> Vec<(u32, &str, MemberList)> {
        self.channels
            .iter()
            .filter_map(|((app, channel), entry)| {
                let members: Vec<(String, Option<String>)> = entry
                    .order
                    .iter()
                    .filter_map(|id| {
                        let m = entry.members.get(id)?;
                        (m.sockets > 0).then(|| (id.to_string(), m.info.as_deref().map(Into::into)))
                    })
                    .collect();
                (!members.is_empty()).then_some((*app, &**channel, members))
            })
            .collect()
    }

    /// The `subscription_succeeded` data of the channel as it is now (empty when nobody is in it).
    pub fn snapshot(&self, app: u32, channel: &str) -> String {
        match self.channels.get(&(app, channel.into())) {
            Some(entry) => snapshot_json(entry),
            None => snapshot_json(&PresenceChannel::default()),
        }
    }

    /// User ids in the channel, in join order.
    pub fn user_ids(&self, app: u32, channel: &str) -> Vec<String> {
        self.channels
            .get(&(app, channel.into()))
            .map(|c| c.order.iter().map(|id| id.to_string()).collect())
            .unwrap_or_default()
    }

    /// Member counts of this app's presence channels (owned here) whose name starts with `prefix`.
    pub fn counts(&self, app: u32, prefix: Option<&str>) -> Vec<(String, usize)> {
        self.channels
            .iter()
            .filter(|((a, name), _)| *a == app && prefix.is_none_or(|p| name.starts_with(p)))
            .map(|((_, name), c)| (name.to_string(), c.members.len()))
            .collect()
    }

    /// Distinct users in the channel.
    pub fn user_count(&self, app: u32, channel: &str) -> usize {
        self.channels
            .get(&(app, channel.into()))
            .map(|c| c.members.len())
            .unwrap_or(0)
    }
}

/// Removes `user_id` from the channel when it is present nowhere any more; true when removed.
fn remove_if_absent(entry: &mut PresenceChannel, user_id: &str) -> bool {
    if entry.members.get(user_id).is_none_or(Member::present) {
        return false;
    }
    entry.members.remove(user_id);
    entry.order.retain(|id| &**id != user_id);
    true
}

fn removed_json(user_id: &str) -> String {
    let mut out = String::from("{\"user_id\":");
    push_json_string(&mut out, user_id);
    out.push('}');
    out
}

fn member_json(user_id: &str, info: Option<&str>) -> String {
    let mut out = String::from("{\"user_id\":");
    push_json_string(&mut out, user_id);
    out.push_str(",\"user_info\":");
    out.push_str(info.unwrap_or("null"));
    out.push('}');
    out
}

fn snapshot_json(channel: &PresenceChannel) -> String {
    let mut out = String::from("{\"presence\":{\"ids\":[");
    for (i, id) in channel.order.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, id);
    }
    out.push_str("],\"hash\":{");
    for (i, id) in channel.order.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, id);
        out.push(':');
        let info = channel.members.get(id).and_then(|m| m.info.as_deref());
        out.push_str(info.unwrap_or("null"));
    }
    out.push_str("},\"count\":");
    out.push_str(&channel.members.len().to_string());
    out.push_str("}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parse(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn first_socket_of_a_user_is_added_and_snapshot_has_everyone() {
        let mut r = PresenceRegistry::default();
        let a = r
            .join(0, "presence-x", "1", Some(r#"{"name":"A"}"#), 100)
            .unwrap();
        assert_eq!(
            parse(a.member_added.as_deref().unwrap())["user_info"]["name"],
            "A"
        );
        let b = r.join(0, "presence-x", "2", None, 100).unwrap();
        let snap = parse(&b.snapshot);
        assert_eq!(snap["presence"]["ids"], serde_json::json!(["1", "2"]));
        assert_eq!(snap["presence"]["count"], 2);
        assert_eq!(snap["presence"]["hash"]["1"]["name"], "A");
        assert!(snap["presence"]["hash"]["2"].is_null());
        // A second socket of user 1: no member_added, count unchanged.
        let again = r
            .join(0, "presence-x", "1", Some(r#"{"name":"A"}"#), 100)
            .unwrap();
        assert!(again.member_added.is_none());
        assert_eq!(parse(&again.snapshot)["presence"]["count"], 2);
    }

    #[test]
    fn member_removed_only_when_the_last_socket_leaves() {
        let mut r = PresenceRegistry::default();
        r.join(0, "presence-x", "1", None, 100).unwrap();
        r.join(0, "presence-x", "1", None, 100).unwrap();
        assert_eq!(r.leave(0, "presence-x", "1"), Left::default());
        assert_eq!(
            r.leave(0, "presence-x", "1").member_removed.as_deref(),
            Some(r#"{"user_id":"1"}"#)
        );
        assert_eq!(r.user_count(0, "presence-x"), 0);
        assert_eq!(
            r.leave(0, "presence-x", "1"),
            Left::default(),
            "unknown leave is ignored"
        );
    }

    #[test]
    fn member_limit_refuses_new_users_but_not_new_sockets_of_members() {
        let mut r = PresenceRegistry::default();
        r.join(0, "presence-x", "1", None, 2).unwrap();
        r.join(0, "presence-x", "2", None, 2).unwrap();
        assert_eq!(
            r.join(0, "presence-x", "3", None, 2),
            Err(JoinRefused::TooManyMembers { max: 2 })
        );
        assert!(r.join(0, "presence-x", "1", None, 2).is_ok());
        assert_eq!(r.user_ids(0, "presence-x"), vec!["1", "2"]);
    }

    #[test]
    fn a_user_on_two_nodes_is_one_member_until_it_leaves_both() {
        let mut r = PresenceRegistry::default();
        assert_eq!(
            r.set_remote(0, "presence-x", 9, "u", Some("{}"), true),
            Some(Transition::Added(
                r#"{"user_id":"u","user_info":{}}"#.into()
            ))
        );
        let joined = r.join(0, "presence-x", "u", Some("{}"), 100).unwrap();
        assert!(
            joined.member_added.is_none(),
            "already a member through node 9"
        );
        assert!(joined.node_first, "first socket here: other nodes are told");
        assert_eq!(parse(&joined.snapshot)["presence"]["count"], 1);
        let left = r.leave(0, "presence-x", "u");
        assert_eq!(left.member_removed, None, "still present on node 9");
        assert!(left.node_last);
        assert_eq!(
            r.set_remote(0, "presence-x", 9, "u", None, false),
            Some(Transition::Removed(r#"{"user_id":"u"}"#.into()))
        );
        assert_eq!(r.user_count(0, "presence-x"), 0);
    }

    #[test]
    fn a_dead_node_takes_only_its_own_members_with_it() {
        let mut r = PresenceRegistry::default();
        r.set_remote(0, "presence-x", 9, "a", None, true);
        r.set_remote(0, "presence-x", 9, "b", None, true);
        r.set_remote(0, "presence-x", 8, "b", None, true);
        r.join(0, "presence-x", "a", None, 100).unwrap();
        r.set_remote(1, "presence-y", 9, "c", None, true);
        let mut gone = r.drop_node(9);
        gone.sort_by_key(|g| g.0);
        assert_eq!(
            gone,
            vec![(
                1,
                "presence-y".into(),
                Transition::Removed(r#"{"user_id":"c"}"#.into())
            )]
        );
        assert_eq!(r.user_ids(0, "presence-x"), vec!["a", "b"]);
        assert_eq!(r.user_count(1, "presence-y"), 0);
    }

    #[test]
    fn a_sync_applies_the_difference_and_local_members_are_this_nodes_part() {
        let mut r = PresenceRegistry::default();
        r.set_remote(0, "presence-x", 9, "old", None, true);
        r.set_remote(0, "presence-x", 9, "kept", None, true);
        let changes = r.replace_remote(
            0,
            "presence-x",
            9,
            &[("kept".into(), None), ("new".into(), Some("1".into()))],
        );
        assert_eq!(
            changes,
            vec![
                Transition::Removed(r#"{"user_id":"old"}"#.into()),
                Transition::Added(r#"{"user_id":"new","user_info":1}"#.into()),
            ]
        );
        r.join(0, "presence-x", "mine", None, 100).unwrap();
        assert_eq!(
            r.local_members(),
            vec![(0, "presence-x", vec![("mine".to_string(), None)])]
        );
    }

    #[test]
    fn apps_and_channels_are_separate() {
        let mut r = PresenceRegistry::default();
        r.join(0, "presence-x", "1", None, 100).unwrap();
        r.join(1, "presence-x", "2", None, 100).unwrap();
        r.join(0, "presence-y", "3", None, 100).unwrap();
        assert_eq!(r.user_ids(0, "presence-x"), vec!["1"]);
        assert_eq!(r.user_ids(1, "presence-x"), vec!["2"]);
    }
}
