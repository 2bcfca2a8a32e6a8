//! The cluster bus behind the adapter drivers: which transport `adapter.driver` names, how it is reached,
//! and the glue between the transport crate (`sockudo-bus`) and the I/O shard's cluster link.

use crate::config::model::AdapterConfig;
use anyhow::bail;
use sockudo_io_shard::cluster::TransportFactory;

/// The transport for `adapter`, or `None` for the `local` driver (one node, no bus). A driver this build
/// does not include is an error naming the Cargo feature that does.
pub fn transport_for(adapter: &AdapterConfig) -> anyhow::Result<Option<TransportFactory>> {
    let driver = adapter.driver.as_str();
    let feature = match driver {
        "local" => return Ok(None),
        "redis" if adapter.redis.cluster_mode => "redis-cluster",
        "redis" => "redis",
        "redis-cluster" | "redis_cluster" | "cluster" => "redis-cluster",
        "nats" => "nats",
        other => bail!(
            "adapter.driver = {other:?}: expected one of \"local\", \"redis\", \"redis-cluster\", \"nats\""
        ),
    };
    compiled::factory(adapter, feature)
}

#[cfg(not(any(feature = "redis", feature = "redis-cluster", feature = "nats")))]
mod compiled {
    use super::*;

    pub fn factory(
        adapter: &AdapterConfig,
        feature: &str,
    ) -> anyhow::Result<Option<TransportFactory>> {
        bail!(
            "adapter.driver = {:?} is not compiled into this build: rebuild with the Cargo feature `{feature}` \
             (or `full`)",
            adapter.driver
        )
    }
}

#[cfg(any(feature = "redis", feature = "redis-cluster", feature = "nats"))]
mod compiled {
    use super::*;
    use sockudo_bus::{Bus, BusConfig, BusEvent};
    use sockudo_io_shard::cluster::{Transport, TransportEvent};
    use std::time::Duration;

    struct BusTransport(Bus);

    impl Transport for BusTransport {
        fn publish(&self, topic: &str, payload: bytes::Bytes) {
            self.0.publish(topic, payload);
        }
        fn subscribe(&self, topic: &str) {
            self.0.subscribe(topic);
        }
        fn shutdown(self: Box<Self>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
            Box::pin(self.0.shutdown())
        }
    }

    /// The bus configuration `adapter` describes for `feature`'s transport.
    pub fn bus_config(adapter: &AdapterConfig, feature: &str) -> BusConfig {
        match feature {
            "redis" => {
                let url = [
                    adapter.redis.url.as_str(),
                    adapter.redis.redis_pub_options.url.as_str(),
                ]
                .into_iter()
                .find(|u| !u.is_empty())
                .unwrap_or("redis://127.0.0.1:6379")
                .to_string();
                BusConfig::Redis {
                    url,
                    prefix: adapter.redis.prefix.clone(),
                }
            }
            "redis-cluster" => BusConfig::RedisCluster {
                nodes: adapter
                    .cluster
                    .nodes
                    .iter()
                    .map(|n| {
                        if n.contains("://") {
                            n.clone()
                        } else {
                            format!("redis://{n}")
                        }
                    })
                    .collect(),
                prefix: adapter.cluster.prefix.clone(),
            },
            _ => BusConfig::Nats {
                servers: adapter.nats.servers.clone(),
                prefix: adapter.nats.prefix.clone(),
                username: adapter.nats.username.clone(),
                password: adapter.nats.password.clone(),
                token: adapter.nats.token.clone(),
                connect_timeout: Duration::from_millis(adapter.nats.connection_timeout_ms),
            },
        }
    }

    pub fn factory(
        adapter: &AdapterConfig,
        feature: &str,
    ) -> anyhow::Result<Option<TransportFactory>> {
        let config = bus_config(adapter, feature);
        let wanted = config.feature();
        Ok(Some(Box::new(move |events| {
            let (bus_tx, mut bus_rx) =
                tokio::sync::mpsc::channel(sockudo_io_shard::cluster::EVENTS_CAPACITY);
            let bus = Bus::start(config, bus_tx).map_err(|e| anyhow::anyhow!("{e} ({wanted})"))?;
            // Bus events become the cluster link's, in order.
            tokio::spawn(async move {
                while let Some(event) = bus_rx.recv().await {
                    let event = match event {
                        BusEvent::Message { payload, .. } => TransportEvent::Message(payload),
                        BusEvent::Up => TransportEvent::Up,
                        BusEvent::Down { reason } => TransportEvent::Down(reason),
                    };
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            });
            Ok(Box::new(BusTransport(bus)) as Box<dyn Transport>)
        })))
    }
}
