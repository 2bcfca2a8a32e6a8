//! Which shared-state backends `cache.driver` and `rate_limiter.driver` name, and how they are reached
//! (the Redis client itself runs on the I/O shard, crate `sockudo-state`).

use crate::config::model::Config;
use anyhow::bail;
use sockudo_io_shard::{BackendConfig, StateConfig, Target};

/// The backends `config` asks for. A driver this build does not include is an error naming the Cargo feature.
pub fn state_config(config: &Config) -> anyhow::Result<StateConfig> {
    let cache = driver_backend(
        config,
        "cache.driver",
        &config.cache.driver,
        &["memory", "none"],
        (
            config.cache.redis.cluster_mode,
            &config.cache.redis.url_override,
            &config.cache.redis.prefix,
        ),
    )?;
    let rate_limiter = driver_backend(
        config,
        "rate_limiter.driver",
        &config.rate_limiter.driver,
        &["memory"],
        (
            config.rate_limiter.redis.cluster_mode,
            &config.rate_limiter.redis.url_override,
            &config.rate_limiter.redis.prefix,
        ),
    )?;
    Ok(StateConfig {
        cache,
        rate_limiter,
    })
}

/// The backend `driver` (setting `key`) names: `None` for one of `local` (kept in this process), the Redis
/// backend described by `(cluster_mode, url_override, prefix)` for the Redis drivers, an error otherwise.
fn driver_backend(
    config: &Config,
    key: &str,
    driver: &str,
    local: &[&str],
    (cluster_mode, url_override, prefix): (bool, &str, &str),
) -> anyhow::Result<Option<BackendConfig>> {
    match driver {
        d if local.contains(&d) => Ok(None),
        "redis" | "redis-cluster" | "redis_cluster" => Ok(Some(backend(
            config,
            key,
            driver,
            cluster_mode,
            url_override,
            prefix,
        )?)),
        other => {
            let expected: Vec<String> = local
                .iter()
                .chain(&["redis", "redis-cluster"])
                .map(|d| format!("{d:?}"))
                .collect();
            bail!("{key} = {other:?}: expected one of {}", expected.join(", "))
        }
    }
}

/// The Redis (Cluster) backend of one driver: its own URL, else the adapter's Redis settings.
fn backend(
    config: &Config,
    key: &str,
    driver: &str,
    cluster_mode: bool,
    url_override: &str,
    prefix: &str,
) -> anyhow::Result<BackendConfig> {
    let target = if driver != "redis" || cluster_mode {
        let own: Vec<String> = Some(url_override)
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .into_iter()
            .collect();
        let nodes = crate::redis_target::cluster_nodes(config, &own);
        if nodes.is_empty() {
            bail!("{key} = {driver:?} needs Redis Cluster nodes: set adapter.cluster.nodes (REDIS_CLUSTER_NODES) or database.redis.cluster_nodes");
        }
        Target::RedisCluster { nodes }
    } else {
        Target::Redis {
            url: crate::redis_target::redis_url(config, url_override),
        }
    };
    let compiled = match target {
        Target::Redis { .. } => cfg!(feature = "redis"),
        Target::RedisCluster { .. } => cfg!(feature = "redis-cluster"),
    };
    if !compiled {
        bail!(
            "{key} = {driver:?} is not compiled into this build: rebuild with the Cargo feature `{}` (or `full`)",
            target.feature()
        );
    }
    Ok(BackendConfig {
        target,
        prefix: prefix.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_map_to_backends() {
        let mut config = Config::default();
        assert_eq!(state_config(&config).unwrap(), StateConfig::default());
        config.cache.driver = "none".into();
        assert!(state_config(&config).unwrap().cache.is_none());
        config.cache.driver = "disk".into();
        assert!(state_config(&config)
            .unwrap_err()
            .to_string()
            .contains("cache.driver"));
        config.cache.driver = "memory".into();
        config.rate_limiter.driver = "redis-cluster".into();
        let err = state_config(&config).unwrap_err().to_string();
        assert!(
            err.contains("adapter.cluster.nodes") || err.contains("feature"),
            "{err}"
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn redis_url_falls_back_to_the_adapter() {
        let mut config = Config::default();
        config.rate_limiter.driver = "redis".into();
        config.adapter.redis.url = "redis://127.0.0.1:7000".into();
        let limiter = state_config(&config).unwrap().rate_limiter.unwrap();
        assert_eq!(
            limiter.target,
            Target::Redis {
                url: "redis://127.0.0.1:7000".into()
            }
        );
        assert_eq!(limiter.prefix, "sockudo_rl:");
        config.rate_limiter.redis.url_override = "redis://127.0.0.1:7001".into();
        let limiter = state_config(&config).unwrap().rate_limiter.unwrap();
        assert_eq!(
            limiter.target,
            Target::Redis {
                url: "redis://127.0.0.1:7001".into()
            }
        );
    }
}
