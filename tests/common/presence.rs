//! The presence invariant, checked event by event on the client side: for each socket and channel, the
//! `subscription_succeeded` snapshot first, then exactly the member changes after it.

use super::{channel_auth, Client};
use serde_json::Value;
use std::collections::BTreeSet;

/// What one socket knows of a presence channel, checked event by event.
pub struct MemberView {
    pub channel: String,
    pub members: Option<BTreeSet<String>>,
}

impl MemberView {
    pub fn new(channel: &str) -> MemberView {
        MemberView {
            channel: channel.to_string(),
            members: None,
        }
    }

    /// Applies one event; panics with `who` when it breaks the invariant.
    pub fn apply(&mut self, msg: &Value, who: &str) {
        if msg["channel"] != self.channel.as_str() {
            return;
        }
        let data: Value = serde_json::from_str(msg["data"].as_str().unwrap_or("null")).unwrap();
        match msg["event"].as_str().unwrap_or("") {
            "pusher_internal:subscription_succeeded" => {
                assert!(self.members.is_none(), "{who}: second snapshot {msg}");
                let ids = data["presence"]["ids"].as_array().expect("ids");
                let set: BTreeSet<String> = ids
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                assert_eq!(
                    set.len(),
                    ids.len(),
                    "{who}: duplicate ids in snapshot {msg}"
                );
                assert_eq!(data["presence"]["count"], ids.len(), "{who}: {msg}");
                self.members = Some(set);
            }
            "pusher_internal:member_added" => {
                let members = self
                    .members
                    .as_mut()
                    .unwrap_or_else(|| panic!("{who}: member_added before the snapshot: {msg}"));
                let user = data["user_id"].as_str().unwrap().to_string();
                assert!(members.insert(user), "{who}: member added twice: {msg}");
            }
            "pusher_internal:member_removed" => {
                let members = self
                    .members
                    .as_mut()
                    .unwrap_or_else(|| panic!("{who}: member_removed before the snapshot: {msg}"));
                let user = data["user_id"].as_str().unwrap();
                assert!(
                    members.remove(user),
                    "{who}: removal of a non-member: {msg}"
                );
            }
            other => panic!("{who}: unexpected event {other}: {msg}"),
        }
    }
}

/// A client joining `channel` as `user`, without waiting for the answer.
pub fn send_join(client: &mut Client, channel: &str, user: &str) {
    let channel_data = serde_json::json!({ "user_id": user, "user_info": {"n": user} }).to_string();
    let auth = channel_auth(&client.socket_id, channel, Some(&channel_data));
    client.send(serde_json::json!({"event":"pusher:subscribe","data":{
        "channel": channel, "auth": auth, "channel_data": channel_data}}));
}

/// Reads `client`'s events into `view` until it holds exactly `expected`.
pub fn settle(client: &mut Client, view: &mut MemberView, expected: &BTreeSet<String>, who: &str) {
    while view.members.as_ref() != Some(expected) {
        let msg = client.next_event();
        view.apply(&msg, who);
    }
    assert!(
        client.is_silent_for(std::time::Duration::from_millis(50)),
        "{who}: events after the member list settled"
    );
}
