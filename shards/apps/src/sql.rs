//! What the SQL drivers share: identifier checks and Sockudo's `CREATE TABLE` statements.
#![allow(dead_code)]

use crate::OpenError;

/// Accepts a table name made of letters, digits and `_` (optionally `schema.table`), so it can be put in
/// statements without quoting surprises.
pub fn checked_table_name(name: &str) -> Result<&str, OpenError> {
    let ok = !name.is_empty()
        && name.split('.').count() <= 2
        && name.split('.').all(|part| {
            !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(name)
    } else {
        Err(OpenError::Invalid(format!(
            "table name \"{name}\": use letters, digits and _ only"
        )))
    }
}

/// Sockudo's PostgreSQL `applications` table (`ops/migrations/postgresql/001_fresh_schema.sql`), created only
/// when missing.
pub fn postgres_create_table(table: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS {table} (
    id VARCHAR(255) PRIMARY KEY,
    key VARCHAR(255) UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INTEGER NOT NULL DEFAULT 100,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INTEGER DEFAULT 100,
    max_client_events_per_second INTEGER NOT NULL DEFAULT 100,
    max_read_requests_per_second INTEGER DEFAULT 100,
    max_presence_members_per_channel INTEGER DEFAULT 100,
    max_presence_member_size_in_kb INTEGER DEFAULT 2,
    max_channel_name_length INTEGER DEFAULT 200,
    max_event_channels_at_once INTEGER DEFAULT 100,
    max_event_name_length INTEGER DEFAULT 200,
    max_event_payload_in_kb INTEGER DEFAULT 100,
    max_event_batch_size INTEGER DEFAULT 10,
    enable_user_authentication BOOLEAN DEFAULT FALSE,
    enable_watchlist_events BOOLEAN DEFAULT FALSE,
    policy JSONB,
    webhooks JSONB,
    allowed_origins JSONB,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP
)"#
    )
}

/// Sockudo's MySQL `applications` table, created only when missing.
pub fn mysql_create_table(table: &str) -> String {
    format!(
        r#"CREATE TABLE IF NOT EXISTS `{table}` (
    id VARCHAR(255) PRIMARY KEY,
    `key` VARCHAR(255) UNIQUE NOT NULL,
    secret VARCHAR(255) NOT NULL,
    max_connections INT UNSIGNED NOT NULL DEFAULT 100,
    enable_client_messages BOOLEAN NOT NULL DEFAULT FALSE,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    max_backend_events_per_second INT UNSIGNED NULL,
    max_client_events_per_second INT UNSIGNED NOT NULL DEFAULT 100,
    max_read_requests_per_second INT UNSIGNED NULL,
    max_presence_members_per_channel INT UNSIGNED NULL,
    max_presence_member_size_in_kb INT UNSIGNED NULL,
    max_channel_name_length INT UNSIGNED NULL,
    max_event_channels_at_once INT UNSIGNED NULL,
    max_event_name_length INT UNSIGNED NULL,
    max_event_payload_in_kb INT UNSIGNED NULL,
    max_event_batch_size INT UNSIGNED NULL,
    enable_user_authentication BOOLEAN NULL,
    enable_watchlist_events BOOLEAN NULL,
    policy JSON NULL,
    webhooks JSON NULL,
    allowed_origins JSON NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP
)"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_checked() {
        assert!(checked_table_name("applications").is_ok());
        assert!(checked_table_name("public.applications").is_ok());
        for bad in ["", "a;drop", "a b", "a.b.c", "x\""] {
            assert!(checked_table_name(bad).is_err(), "{bad}");
        }
    }
}
