//! The redis-cluster transport against a real broker (see tests/common/mod.rs for the environment).
#![cfg(feature = "redis-cluster")]

mod common;

use common::Driver;

#[tokio::test]
async fn round_trip() {
    common::round_trip(Driver::RedisCluster).await;
}

#[tokio::test]
async fn two_buses_talk_like_two_nodes() {
    common::two_nodes(Driver::RedisCluster).await;
}

#[tokio::test]
async fn order_of_10000_messages_is_kept() {
    common::order_kept(Driver::RedisCluster).await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    common::unsubscribe_stops_delivery(Driver::RedisCluster).await;
}

#[tokio::test]
async fn a_slow_consumer_costs_drops_not_the_connection() {
    common::slow_consumer_drops_and_counts(Driver::RedisCluster).await;
}

#[tokio::test]
async fn topics_with_dots_wildcards_and_spaces() {
    common::special_topics(Driver::RedisCluster).await;
}

/// The subscription is a sharded one (`SSUBSCRIBE`), held by exactly one master, and no classic channel.
#[tokio::test]
async fn subscriptions_use_sharded_pub_sub() {
    let config = Driver::RedisCluster.config();
    let sockudo_bus::BusConfig::RedisCluster { nodes, prefix } = config.clone() else {
        unreachable!("a Redis Cluster configuration")
    };
    let mut node = common::Node::start(config);
    node.wait_up().await;
    node.subscribe_synced("ch.app.sharded").await;
    let channel = format!("{prefix}:ch.app.sharded");
    let (mut sharded, mut classic) = (0, 0);
    for url in &nodes {
        let client = redis::Client::open(url.as_str()).expect("node URL");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect to a cluster node");
        let shard_channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .arg(&channel)
            .query_async(&mut connection)
            .await
            .expect("PUBSUB SHARDCHANNELS");
        let channels: Vec<String> = redis::cmd("PUBSUB")
            .arg("CHANNELS")
            .arg(&channel)
            .query_async(&mut connection)
            .await
            .expect("PUBSUB CHANNELS");
        sharded += shard_channels.len();
        classic += channels.len();
    }
    assert_eq!(
        (sharded, classic),
        (1, 0),
        "sharded vs classic subscriptions of {channel}"
    );
    node.bus.shutdown().await;
}
