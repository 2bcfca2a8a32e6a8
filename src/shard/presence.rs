//! Presence members of the channels this shard owns.
//!
//! Every presence channel has one owner shard (`Shard::owner_of`); all joins and leaves of that channel, from
//! whatever shard the socket is on, are applied here in order, so the member list, `member_added` (first socket
//! of a user) and `member_removed` (last socket of a user) are exact for the whole process.

use crate::protocol::messages::push_json_string;
use std::collections::HashMap;

/// One user in a presence channel.
#[derive(Debug)]
struct Member {
    /// `user_info` as JSON text, exactly as the client's `channel_data` carried it (`None` when absent).
    info: Option<Box<str>>,
    /// Sockets of this user in the channel, over all shards.
    sockets: u32,
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
        let first_socket = match entry.members.get_mut(user_id) {
            Some(member) => {
                member.sockets += 1;
                false
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
                    },
                );
                entry.order.push(user_id.into());
                true
            }
        };
        let snapshot = snapshot_json(entry);
        let member_added = first_socket.then(|| member_json(user_id, info));
        Ok(Joined {
            snapshot,
            member_added,
        })
    }

    /// Removes one socket of `user_id`; returns the `member_removed` data when it was the user's last.
    pub fn leave(&mut self, app: u32, channel: &str, user_id: &str) -> Option<String> {
        let key = (app, Box::<str>::from(channel));
        let entry = self.channels.get_mut(&key)?;
        let member = entry.members.get_mut(user_id)?;
        member.sockets -= 1;
        if member.sockets > 0 {
            return None;
        }
        entry.members.remove(user_id);
        entry.order.retain(|id| &**id != user_id);
        if entry.members.is_empty() {
            self.channels.remove(&key);
        }
        let mut out = String::from("{\"user_id\":");
        push_json_string(&mut out, user_id);
        out.push('}');
        Some(out)
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
        assert_eq!(r.leave(0, "presence-x", "1"), None);
        assert_eq!(
            r.leave(0, "presence-x", "1").as_deref(),
            Some(r#"{"user_id":"1"}"#)
        );
        assert_eq!(r.user_count(0, "presence-x"), 0);
        assert_eq!(
            r.leave(0, "presence-x", "1"),
            None,
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
    fn apps_and_channels_are_separate() {
        let mut r = PresenceRegistry::default();
        r.join(0, "presence-x", "1", None, 100).unwrap();
        r.join(1, "presence-x", "2", None, 100).unwrap();
        r.join(0, "presence-y", "3", None, 100).unwrap();
        assert_eq!(r.user_ids(0, "presence-x"), vec!["1"]);
        assert_eq!(r.user_ids(1, "presence-x"), vec!["2"]);
    }
}
