//! The presence invariant, for every socket and channel: the `subscription_succeeded` snapshot first, then
//! exactly the member changes after it — no member announced twice, none missing, no removal of a stranger.
//! Many users join one channel at once from sockets spread over three shards (the channel's owner is one of
//! them), then some leave while others join.

mod common;
use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

/// What one socket knows of a presence channel, checked event by event.
struct MemberView {
    channel: String,
    members: Option<BTreeSet<String>>,
}

impl MemberView {
    fn new(channel: &str) -> MemberView {
        MemberView {
            channel: channel.to_string(),
            members: None,
        }
    }

    /// Applies one event; panics with `who` when it breaks the invariant.
    fn apply(&mut self, msg: &Value, who: &str) {
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
fn send_join(client: &mut Client, channel: &str, user: &str) {
    let channel_data = serde_json::json!({ "user_id": user, "user_info": {"n": user} }).to_string();
    let auth = channel_auth(&client.socket_id, channel, Some(&channel_data));
    client.send(serde_json::json!({"event":"pusher:subscribe","data":{
        "channel": channel, "auth": auth, "channel_data": channel_data}}));
}

/// Reads `client`'s events into `view` until it holds exactly `expected`.
fn settle(client: &mut Client, view: &mut MemberView, expected: &BTreeSet<String>, who: &str) {
    while view.members.as_ref() != Some(expected) {
        let msg = client.next_event();
        view.apply(&msg, who);
    }
    assert!(
        client.is_silent_for(std::time::Duration::from_millis(50)),
        "{who}: events after the member list settled"
    );
}

#[test]
fn snapshot_then_exactly_the_later_changes_across_three_shards() {
    let server = Server::start_with(ServerOptions {
        shards: 3,
        ..Default::default()
    });
    for round in 0..4 {
        let channel = format!("presence-race-{round}");
        let mut clients: Vec<Client> = (0..30).map(|_| server.client()).collect();
        let shards: BTreeSet<usize> = clients.iter().map(|c| c.shard).collect();
        assert!(
            shards.len() >= 2,
            "clients landed on one shard only: {shards:?}"
        );
        let mut views: Vec<MemberView> =
            clients.iter().map(|_| MemberView::new(&channel)).collect();
        // Everyone joins at once (two sockets per user for the first five users).
        for (i, c) in clients.iter_mut().enumerate() {
            send_join(c, &channel, &format!("u{}", i % 25));
        }
        let all: BTreeSet<String> = (0..25).map(|i| format!("u{i}")).collect();
        for (i, (c, v)) in clients.iter_mut().zip(views.iter_mut()).enumerate() {
            settle(
                c,
                v,
                &all,
                &format!("round {round} socket {i} (shard {})", c.shard),
            );
        }
        // Ten sockets leave (users u5..u14, their only socket) while ten new users join.
        let leaving: Vec<Client> = clients.drain(5..15).collect();
        views.drain(5..15);
        let mut joiners: Vec<Client> = (0..10).map(|_| server.client()).collect();
        let mut joiner_views: Vec<MemberView> =
            joiners.iter().map(|_| MemberView::new(&channel)).collect();
        for (i, c) in joiners.iter_mut().enumerate() {
            send_join(c, &channel, &format!("n{i}"));
        }
        drop(leaving);
        let mut expected: BTreeSet<String> =
            (0..5).chain(15..25).map(|i| format!("u{i}")).collect();
        expected.extend((0..10).map(|i| format!("n{i}")));
        for (i, (c, v)) in clients.iter_mut().zip(views.iter_mut()).enumerate() {
            settle(
                c,
                v,
                &expected,
                &format!("round {round} stayer {i} (shard {})", c.shard),
            );
        }
        for (i, (c, v)) in joiners.iter_mut().zip(joiner_views.iter_mut()).enumerate() {
            settle(
                c,
                v,
                &expected,
                &format!("round {round} joiner {i} (shard {})", c.shard),
            );
        }
    }
}
