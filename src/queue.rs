//! Which webhook queue `queue.driver` names and how it is reached (the queue itself runs on the I/O shard,
//! crate `sockudo-queue`; see docs/backends.md `## Queue`).

use std::time::Duration;

use anyhow::bail;
use sockudo_io_shard::{DurableConfig, QueueBackend, QueueConfig, SqsBackend};

use crate::config::model::Config;

/// The durable queue `config` asks for; `None` for `memory`. A driver this build does not include is an
/// error naming the Cargo feature.
pub fn durable_config(config: &Config) -> anyhow::Result<Option<DurableConfig>> {
    let q = &config.queue;
    let lease_renew = Duration::from_millis(q.reliability.lease_renew_interval_ms.max(100));
    let (backend, prefix, lease, feature) = match q.driver.as_str() {
        "memory" => return Ok(None),
        "redis" if !q.redis.cluster_mode => {
            let url = crate::redis_target::redis_url(config, "");
            (
                QueueBackend::Redis { url },
                q.redis.prefix.clone(),
                Duration::from_millis(q.reliability.lease_duration_ms),
                "redis",
            )
        }
        "redis" | "redis-cluster" | "redis_cluster" => {
            let nodes = crate::redis_target::cluster_nodes(config, &q.redis_cluster.nodes);
            if nodes.is_empty() {
                bail!(
                    "queue.driver = {:?} needs Redis Cluster nodes: set queue.redis_cluster.nodes, \
                     adapter.cluster.nodes (REDIS_CLUSTER_NODES) or database.redis.cluster_nodes",
                    q.driver
                );
            }
            let prefix = if q.driver == "redis" {
                q.redis.prefix.clone()
            } else {
                q.redis_cluster.prefix.clone()
            };
            (
                QueueBackend::RedisCluster { nodes },
                prefix,
                Duration::from_millis(q.reliability.lease_duration_ms),
                "redis-cluster",
            )
        }
        "sqs" => {
            if q.sqs.queue_url.is_empty() && q.sqs.queue_name.is_empty() {
                bail!("queue.driver = \"sqs\" needs queue.sqs.queue_url (SQS_QUEUE_URL) or queue.sqs.queue_name (SQS_QUEUE_NAME)");
            }
            if q.sqs.visibility_timeout == 0 || q.sqs.visibility_timeout > 43_200 {
                bail!("queue.sqs.visibility_timeout must be between 1 and 43200 seconds");
            }
            if !(1..=10).contains(&q.sqs.max_messages) {
                bail!("queue.sqs.max_messages must be between 1 and 10");
            }
            if q.sqs.wait_time_seconds > 20 {
                bail!("queue.sqs.wait_time_seconds must be at most 20");
            }
            (
                QueueBackend::Sqs(SqsBackend {
                    region: q.sqs.region.clone(),
                    queue_url: q.sqs.queue_url.clone(),
                    queue_name: q.sqs.queue_name.clone(),
                    endpoint_url: q.sqs.endpoint_url.clone().filter(|u| !u.is_empty()),
                    wait_time: Duration::from_secs(q.sqs.wait_time_seconds),
                    max_messages: q.sqs.max_messages,
                }),
                String::new(),
                Duration::from_secs(q.sqs.visibility_timeout),
                "sqs",
            )
        }
        other => bail!(
            "queue.driver = {other:?}: expected one of \"memory\", \"redis\", \"redis-cluster\", \"sqs\""
        ),
    };
    let compiled = match feature {
        "redis" => cfg!(feature = "redis"),
        "redis-cluster" => cfg!(feature = "redis-cluster"),
        _ => cfg!(feature = "sqs"),
    };
    if !compiled {
        bail!(
            "queue.driver = {:?} is not compiled into this build: rebuild with the Cargo feature `{feature}` (or `full`)",
            q.driver
        );
    }
    if lease < Duration::from_secs(1) {
        bail!("the queue lease (queue.reliability.lease_duration_ms / queue.sqs.visibility_timeout) must be at least 1 s");
    }
    if q.max_in_flight == 0 || q.buffer_size == 0 {
        bail!("queue.max_in_flight and queue.buffer_size must be at least 1");
    }
    Ok(Some(DurableConfig {
        queue: QueueConfig {
            backend,
            prefix,
            lease,
            consumer: consumer_name(),
        },
        buffer_capacity: q.buffer_size,
        // Renew well within the lease, whatever the configured interval says.
        renew_every: lease_renew.min(lease / 3),
        max_in_hand: q.max_in_flight,
    }))
}

/// This process's consumer name: host, process id and start time, so a restarted process is a new consumer
/// and takes over its predecessor's messages only once their lease ran out.
fn consumer_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "sockudo".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{host}-{}-{started}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_no_durable_queue() {
        assert!(durable_config(&Config::default()).expect("ok").is_none());
    }

    #[test]
    fn unknown_driver_and_bad_sqs_settings_are_errors() {
        let mut config = Config::default();
        config.queue.driver = "kafka".into();
        let e = durable_config(&config).expect_err("unknown").to_string();
        assert!(e.contains("\"kafka\""), "{e}");
        config.queue.driver = "sqs".into();
        config.queue.sqs.max_messages = 11;
        let e = durable_config(&config).expect_err("bad").to_string();
        assert!(
            e.contains("max_messages") || e.contains("feature `sqs`"),
            "{e}"
        );
    }

    #[cfg(feature = "redis-cluster")]
    #[test]
    fn redis_cluster_needs_nodes_and_takes_the_adapters() {
        let mut config = Config::default();
        config.queue.driver = "redis-cluster".into();
        assert!(durable_config(&config).is_err());
        config.adapter.cluster.nodes = vec!["127.0.0.1:7000".into()];
        config.queue.reliability.lease_duration_ms = 3000;
        let d = durable_config(&config).expect("ok").expect("durable");
        match d.queue.backend {
            QueueBackend::RedisCluster { nodes } => {
                assert_eq!(nodes, vec!["redis://127.0.0.1:7000"])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.queue.lease, Duration::from_secs(3));
        assert_eq!(d.renew_every, Duration::from_secs(1));
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_uses_the_adapters_url() {
        let mut config = Config::default();
        config.queue.driver = "redis".into();
        config.adapter.redis.url = "redis://127.0.0.1:6390/2".into();
        let d = durable_config(&config).expect("ok").expect("durable");
        match d.queue.backend {
            QueueBackend::Redis { url } => assert_eq!(url, "redis://127.0.0.1:6390/2"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.queue.prefix, "sockudo_queue:");
    }
}
