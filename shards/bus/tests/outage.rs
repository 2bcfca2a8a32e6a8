//! Broker outages: each test stops and restarts its broker, so these live in a test binary of their own
//! (cargo runs test binaries one after another, so no other bus test sees the outage).

mod common;

// One test for both Redis outages: they share the broker, so they must not overlap.
#[cfg(feature = "redis")]
#[tokio::test]
async fn redis_restart_and_freeze() {
    common::broker_restart(common::Driver::Redis).await;
    common::frozen_broker_is_detected(common::Driver::Redis).await;
}

// One test for both cluster outages: they share the broker, so they must not overlap.
#[cfg(feature = "redis-cluster")]
#[tokio::test]
async fn redis_cluster_restart_and_one_master_restart() {
    common::broker_restart(common::Driver::RedisCluster).await;
    common::one_cluster_master_restarts().await;
}

#[cfg(feature = "nats")]
#[tokio::test]
async fn nats_restart_reconnects_resubscribes_and_flushes() {
    common::broker_restart(common::Driver::Nats).await;
}
