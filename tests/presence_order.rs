//! The presence invariant, for every socket and channel: the `subscription_succeeded` snapshot first, then
//! exactly the member changes after it — no member announced twice, none missing, no removal of a stranger.
//! Many users join one channel at once from sockets spread over three shards (the channel's owner is one of
//! them), then some leave while others join.

mod common;
use common::presence::*;
use common::*;
use std::collections::BTreeSet;

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
