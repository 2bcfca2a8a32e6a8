//! Which Redis the Redis-backed parts (cluster adapter, cache, rate limiter, webhook queue) connect to, from
//! Sockudo's settings, the same way for each: a part's own setting first, then the adapter's (`REDIS_URL`,
//! `REDIS_CLUSTER_NODES`), then Sockudo's shared connection `database.redis.*` (`DATABASE_REDIS_*`).

use crate::config::model::{Config, RedisDatabaseConfig};

/// The URL of a single Redis: `own` when set, else `adapter.redis.url` (or its `redis_pub_options.url`), else
/// the one `database.redis` describes (default `redis://127.0.0.1:6379/0`).
pub fn redis_url(config: &Config, own: &str) -> String {
    [
        own,
        config.adapter.redis.url.as_str(),
        config.adapter.redis.redis_pub_options.url.as_str(),
    ]
    .into_iter()
    .find(|u| !u.is_empty())
    .map(str::to_string)
    .unwrap_or_else(|| database_redis_url(&config.database.redis))
}

/// Redis Cluster seed nodes as `redis://host:port` URLs: `own` when not empty, else `adapter.cluster.nodes`,
/// else `database.redis.cluster_nodes`. Empty when none is configured.
pub fn cluster_nodes(config: &Config, own: &[String]) -> Vec<String> {
    [
        own,
        &config.adapter.cluster.nodes,
        &config.database.redis.cluster_nodes,
    ]
    .into_iter()
    .find(|n| !n.is_empty())
    .unwrap_or_default()
    .iter()
    .map(|n| {
        if n.contains("://") {
            n.clone()
        } else {
            format!("redis://{n}")
        }
    })
    .collect()
}

/// `redis://[user[:password]@]host:port/db` from `database.redis` (`DATABASE_REDIS_*`).
pub fn database_redis_url(r: &RedisDatabaseConfig) -> String {
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    let auth = match (r.username.as_deref(), r.password.as_deref()) {
        (Some(u), Some(p)) if !u.is_empty() => format!("{}:{}@", enc(u), enc(p)),
        (Some(u), _) if !u.is_empty() => format!("{}@", enc(u)),
        (_, Some(p)) if !p.is_empty() => format!(":{}@", enc(p)),
        _ => String::new(),
    };
    format!("redis://{auth}{}:{}/{}", r.host, r.port, r.db)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_setting_then_adapter_then_database_redis() {
        let mut config = Config::default();
        assert_eq!(redis_url(&config, ""), "redis://127.0.0.1:6379/0");
        config.database.redis.host = "db-redis".into();
        config.database.redis.db = 3;
        assert_eq!(redis_url(&config, ""), "redis://db-redis:6379/3");
        config.adapter.redis.url = "redis://adapter:6390".into();
        assert_eq!(redis_url(&config, ""), "redis://adapter:6390");
        assert_eq!(redis_url(&config, "redis://own:1"), "redis://own:1");

        assert!(cluster_nodes(&config, &[]).is_empty());
        config.database.redis.cluster_nodes = vec!["d:7000".into()];
        assert_eq!(cluster_nodes(&config, &[]), vec!["redis://d:7000"]);
        config.adapter.cluster.nodes = vec!["a:7000".into(), "redis://b:7001".into()];
        assert_eq!(
            cluster_nodes(&config, &[]),
            vec!["redis://a:7000", "redis://b:7001"]
        );
        assert_eq!(cluster_nodes(&config, &["o:1".into()]), vec!["redis://o:1"]);
    }

    #[test]
    fn database_redis_builds_a_url() {
        let mut r = RedisDatabaseConfig::default();
        assert_eq!(database_redis_url(&r), "redis://127.0.0.1:6379/0");
        r.host = "redis.internal".into();
        r.port = 6380;
        r.db = 2;
        r.password = Some("p@ss word".into());
        assert_eq!(
            database_redis_url(&r),
            "redis://:p%40ss%20word@redis.internal:6380/2"
        );
        r.username = Some("u".into());
        assert_eq!(
            database_redis_url(&r),
            "redis://u:p%40ss%20word@redis.internal:6380/2"
        );
    }
}
