//! The redis transport against a real broker (see tests/common/mod.rs for the environment).
#![cfg(feature = "redis")]

mod common;

use common::Driver;

#[tokio::test]
async fn round_trip() {
    common::round_trip(Driver::Redis).await;
}

#[tokio::test]
async fn two_buses_talk_like_two_nodes() {
    common::two_nodes(Driver::Redis).await;
}

#[tokio::test]
async fn order_of_10000_messages_is_kept() {
    common::order_kept(Driver::Redis).await;
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    common::unsubscribe_stops_delivery(Driver::Redis).await;
}

#[tokio::test]
async fn a_slow_consumer_costs_drops_not_the_connection() {
    common::slow_consumer_drops_and_counts(Driver::Redis).await;
}

#[tokio::test]
async fn topics_with_dots_wildcards_and_spaces() {
    common::special_topics(Driver::Redis).await;
}
