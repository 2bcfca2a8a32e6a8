//! The cluster bus behind the adapter drivers: which transport `adapter.driver` names, how it is reached,
//! and the glue between the transport crate (`sockudo-bus`) and the I/O shard's cluster link.

use crate::config::model::Config;
use anyhow::bail;
use sockudo_io_shard::cluster::TransportFactory;

/// The transport for `adapter`, or `None` for the `local` driver (one node, no bus). A driver this build
/// does not include is an error naming the Cargo feature that does.
pub fn transport_for(config: &Config) -> anyhow::Result<Option<TransportFactory>> {
    let adapter = &config.adapter;
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
    compiled::factory(config, feature)
}

#[cfg(not(any(feature = "redis", feature = "redis-cluster", feature = "nats")))]
mod compiled {
    use super::*;

    pub fn factory(config: &Config, feature: &str) -> anyhow::Result<Option<TransportFactory>> {
        bail!(
            "adapter.driver = {:?} is not compiled into this build: rebuild with the Cargo feature `{feature}` \
             (or `full`)",
            config.adapter.driver
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

    /// The bus configuration `config`'s adapter describes for `feature`'s transport (Redis reached as
    /// [`crate::redis_target`] says).
    pub fn bus_config(config: &Config, feature: &str) -> BusConfig {
        let adapter = &config.adapter;
        match feature {
            "redis" => BusConfig::Redis {
                url: crate::redis_target::redis_url(config, ""),
                prefix: adapter.redis.prefix.clone(),
            },
            "redis-cluster" => BusConfig::RedisCluster {
                nodes: crate::redis_target::cluster_nodes(config, &[]),
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

    pub fn factory(config: &Config, feature: &str) -> anyhow::Result<Option<TransportFactory>> {
        let config = bus_config(config, feature);
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
