//! The app database the configuration names, as the I/O shard's drivers take it.

use crate::config::{is_memory_driver, Config, SqlDatabaseConfig};
use sockudo_io_shard::SourceConfig;

/// The database of `app_manager.driver`; `None` for the memory driver.
pub fn source_config(config: &Config) -> Option<SourceConfig> {
    let driver = config.app_manager.driver.as_str();
    if is_memory_driver(driver) {
        return None;
    }
    let db = &config.database;
    Some(match driver {
        "mysql" => SourceConfig::Mysql(sql(&db.mysql)),
        "dynamodb" => SourceConfig::DynamoDb(sockudo_apps_dynamodb(config)),
        // `postgresql`, `postgres`, `pgsql` (validation rejected every other name).
        _ => SourceConfig::Postgres(sql(&db.postgres)),
    })
}

fn sql(c: &SqlDatabaseConfig) -> sockudo_io_shard::SqlConfig {
    let pool = match c.pool_max {
        Some(max) if max > 0 => c.connection_pool_size.min(max),
        _ => c.connection_pool_size,
    };
    sockudo_io_shard::SqlConfig {
        host: c.host.clone(),
        port: c.port,
        username: c.username.clone(),
        password: c.password.clone(),
        database: c.database.clone(),
        table_name: c.table_name.clone(),
        pool_size: pool.max(1) as usize,
    }
}

fn sockudo_apps_dynamodb(config: &Config) -> sockudo_io_shard::DynamoDbConfig {
    let c = &config.database.dynamodb;
    sockudo_io_shard::DynamoDbConfig {
        region: c.region.clone(),
        table_name: c.table_name.clone(),
        endpoint_url: c.endpoint_url.clone(),
        access_key_id: c.aws_access_key_id.clone(),
        secret_access_key: c.aws_secret_access_key.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_map_to_their_databases() {
        let mut c = Config::default();
        assert!(source_config(&c).is_none());
        for (driver, feature) in [
            ("postgresql", "postgres"),
            ("pgsql", "postgres"),
            ("mysql", "mysql"),
            ("dynamodb", "dynamodb"),
        ] {
            c.app_manager.driver = driver.into();
            assert_eq!(
                source_config(&c).map(|s| s.feature()),
                Some(feature),
                "{driver}"
            );
        }
        c.app_manager.driver = "mysql".into();
        c.database.mysql.connection_pool_size = 20;
        c.database.mysql.pool_max = Some(4);
        match source_config(&c) {
            Some(SourceConfig::Mysql(sql)) => assert_eq!((sql.pool_size, sql.port), (4, 3306)),
            other => panic!("{other:?}"),
        }
    }
}
