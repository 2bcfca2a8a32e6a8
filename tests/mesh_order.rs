//! Regression: glommio numbers mesh peers by executor creation order. When shard executors were created
//! concurrently, two shards could swap mesh numbers at start-up and cross-shard messages went astray, so a
//! subscriber missed events published through the other shard. Several start-ups make a swap likely.

mod common;
use common::*;

#[test]
fn every_start_up_routes_events_across_shards() {
    for round in 0..10 {
        let server = Server::start();
        let mut clients = vec![server.client_on_shard(0), server.client_on_shard(1)];
        for c in &mut clients {
            c.subscribe("news");
        }
        for i in 0..4 {
            server.publish(&["news"], "headline", &format!("{{\"n\":{i}}}"));
        }
        for c in &mut clients {
            for i in 0..4 {
                let msg = c.next_event();
                assert_eq!(
                    (msg["event"].as_str(), msg["data"].as_str()),
                    (Some("headline"), Some(format!("{{\"n\":{i}}}").as_str())),
                    "start-up {round}, client on shard {}",
                    c.shard
                );
            }
        }
    }
}
