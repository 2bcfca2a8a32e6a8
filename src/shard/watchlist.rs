//! Watchlists (PROTOCOL.md 1.13): who is online, and who watches whom, kept on the owner shard of each user id.
//!
//! The owner of user `U` counts `U`'s signed-in sockets on every shard and knows who watches `U`. When the count
//! goes 0 → 1 or 1 → 0 it tells each watcher (`online` / `offline`); a watcher that signs in learns which of its
//! watched users are already online.
//!
//! In a cluster each node announces its own first / last socket of a user, and the owner also keeps the other
//! nodes where the user is online: a user is online while it is online on any node, and each node tells its
//! own watchers when that changes.

use crate::protocol::messages::push_json_string;
use std::collections::{HashMap, HashSet};

/// Online counts and watchers of the users this shard owns.
#[derive(Debug, Default)]
pub struct WatchRegistry {
    online: HashMap<(u32, Box<str>), u32>,
    /// Other nodes where the user is online.
    remote: HashMap<(u32, Box<str>), Vec<u64>>,
    /// Watchlist each online user signed in with, to unregister it when the user goes offline.
    watchlists: HashMap<(u32, Box<str>), Vec<Box<str>>>,
    watchers: HashMap<(u32, Box<str>), HashSet<Box<str>>>,
}

/// What changed when a user's socket count moved.
#[derive(Debug, PartialEq, Eq)]
pub struct Transition {
    /// Watchers to tell (empty when the user is still online on another node).
    pub watchers: Vec<Box<str>>,
    /// For an offline transition, the watchlist to unregister.
    pub unwatch: Vec<Box<str>>,
}

impl WatchRegistry {
    /// A socket of `user` signed in; `Some` when the user just came online.
    pub fn socket_online(
        &mut self,
        app: u32,
        user: &str,
        watchlist: &[Box<str>],
    ) -> Option<Transition> {
        let key = (app, Box::<str>::from(user));
        let count = self.online.entry(key.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return None;
        }
        self.watchlists.insert(key.clone(), watchlist.to_vec());
        let came_online = !self.remote.contains_key(&key);
        Some(Transition {
            watchers: if came_online {
                self.watchers_of(&key)
            } else {
                Vec::new()
            },
            unwatch: Vec::new(),
        })
    }

    /// A signed-in socket of `user` went away; `Some` when the user just went offline.
    pub fn socket_offline(&mut self, app: u32, user: &str) -> Option<Transition> {
        let key = (app, Box::<str>::from(user));
        let count = self.online.get_mut(&key)?;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        self.online.remove(&key);
        let unwatch = self.watchlists.remove(&key).unwrap_or_default();
        let went_offline = !self.remote.contains_key(&key);
        Some(Transition {
            watchers: if went_offline {
                self.watchers_of(&key)
            } else {
                Vec::new()
            },
            unwatch,
        })
    }

    /// Node `node` announced that `user` is (or no longer is) online there. Returns the watchers to tell when
    /// that changes whether the user is online anywhere.
    pub fn set_remote(&mut self, app: u32, user: &str, node: u64, online: bool) -> Vec<Box<str>> {
        let key = (app, Box::<str>::from(user));
        let was = self.is_online(&key);
        let nodes = self.remote.entry(key.clone()).or_default();
        if online {
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        } else {
            nodes.retain(|&n| n != node);
            if nodes.is_empty() {
                self.remote.remove(&key);
            }
        }
        if was == self.is_online(&key) {
            Vec::new()
        } else {
            self.watchers_of(&key)
        }
    }

    /// Node `node` is gone: the users only it had online go offline. Returns them with the watchers to tell.
    pub fn drop_node(&mut self, node: u64) -> Vec<(u32, Box<str>, Vec<Box<str>>)> {
        let keys: Vec<(u32, Box<str>)> = self
            .remote
            .iter()
            .filter(|(_, nodes)| nodes.contains(&node))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|(app, user)| {
                let watchers = self.set_remote(app, &user, node, false);
                (!self.is_online(&(app, user.clone()))).then_some((app, user, watchers))
            })
            .collect()
    }

    /// Users with a signed-in socket on this node (a state sync).
    pub fn local_online(&self) -> Vec<(u32, Box<str>)> {
        self.online.keys().cloned().collect()
    }

    fn is_online(&self, key: &(u32, Box<str>)) -> bool {
        self.online.contains_key(key) || self.remote.contains_key(key)
    }

    /// `watcher` watches `watched`; answers whether `watched` is online now.
    pub fn watch(&mut self, app: u32, watched: &str, watcher: &str) -> bool {
        let key = (app, Box::<str>::from(watched));
        self.watchers
            .entry(key.clone())
            .or_default()
            .insert(watcher.into());
        self.is_online(&key)
    }

    /// `watcher` stops watching `watched`.
    pub fn unwatch(&mut self, app: u32, watched: &str, watcher: &str) {
        let key = (app, Box::<str>::from(watched));
        if let Some(set) = self.watchers.get_mut(&key) {
            set.remove(watcher);
            if set.is_empty() {
                self.watchers.remove(&key);
            }
        }
    }

    fn watchers_of(&self, key: &(u32, Box<str>)) -> Vec<Box<str>> {
        self.watchers
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// `pusher_internal:watchlist_events` data for one kind of change.
pub fn events_json(name: &str, user_ids: &[impl AsRef<str>]) -> String {
    let mut out = String::from("{\"events\":[{\"name\":");
    push_json_string(&mut out, name);
    out.push_str(",\"user_ids\":[");
    for (i, id) in user_ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(&mut out, id.as_ref());
    }
    out.push_str("]}]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn online_and_offline_are_reported_once_per_user() {
        let mut r = WatchRegistry::default();
        assert!(!r.watch(0, "bob", "alice"));
        let t = r.socket_online(0, "bob", &[]).unwrap();
        assert_eq!(t.watchers, vec![Box::<str>::from("alice")]);
        assert_eq!(r.socket_online(0, "bob", &[]), None, "second socket");
        assert!(r.watch(0, "bob", "carol"));
        assert_eq!(r.socket_offline(0, "bob"), None);
        let t = r.socket_offline(0, "bob").unwrap();
        assert_eq!(t.watchers.len(), 2);
        r.unwatch(0, "bob", "alice");
        r.unwatch(0, "bob", "carol");
        assert!(r.watchers.is_empty());
    }

    #[test]
    fn a_user_online_on_another_node_is_online_until_that_node_says_otherwise_or_dies() {
        let mut r = WatchRegistry::default();
        r.watch(0, "bob", "alice");
        assert_eq!(
            r.set_remote(0, "bob", 9, true),
            vec![Box::<str>::from("alice")]
        );
        let local = r.socket_online(0, "bob", &[]).unwrap();
        assert!(local.watchers.is_empty(), "already online through node 9");
        let local = r.socket_offline(0, "bob").unwrap();
        assert!(local.watchers.is_empty(), "still online on node 9");
        assert_eq!(r.local_online(), vec![]);
        let gone = r.drop_node(9);
        assert_eq!(
            gone,
            vec![(0, "bob".into(), vec![Box::<str>::from("alice")])]
        );
        assert!(!r.watch(0, "bob", "carol"));
    }

    #[test]
    fn events_json_has_pushers_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&events_json("online", &["a", "b"])).unwrap();
        assert_eq!(v["events"][0]["name"], "online");
        assert_eq!(v["events"][0]["user_ids"], serde_json::json!(["a", "b"]));
    }
}
