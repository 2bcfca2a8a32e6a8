//! The PostgreSQL app manager (tokio-postgres on the I/O shard's runtime).
//!
//! A small pool of connections, each opened on first use and dropped after an error, so the driver recovers
//! by itself when the database comes back. On every new connection the table is created when missing and its
//! columns are read, so a table from an older Sockudo (fewer columns) works as is; nothing is ever altered.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls, Statement};
use tracing::{info, warn};

use crate::record::{self, AppRecord};
use crate::sql;
use crate::{AppSource, FindFuture, Lookup, OpenError, SourceError, SqlConfig, DB_TIMEOUT};

pub(crate) struct PostgresSource {
    config: tokio_postgres::Config,
    table: String,
    pool: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

struct Conn {
    client: Client,
    by_key: Statement,
    by_id: Statement,
    /// Selected columns, in statement order.
    columns: Vec<&'static str>,
}

impl PostgresSource {
    pub(crate) fn open(c: SqlConfig) -> Result<PostgresSource, OpenError> {
        let table = sql::checked_table_name(&c.table_name)?.to_string();
        let mut config = tokio_postgres::Config::new();
        config
            .host(&c.host)
            .port(c.port)
            .user(&c.username)
            .dbname(&c.database)
            .connect_timeout(DB_TIMEOUT)
            .application_name("sockudo");
        if !c.password.is_empty() {
            config.password(&c.password);
        }
        let pool = (0..c.pool_size.max(1)).map(|_| Mutex::new(None)).collect();
        Ok(PostgresSource {
            config,
            table,
            pool,
            next: AtomicUsize::new(0),
        })
    }

    async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                warn!(error = %e, "PostgreSQL app manager connection ended");
            }
        });
        client
            .batch_execute(&sql::postgres_create_table(&self.table))
            .await?;
        let (schema, name) = match self.table.split_once('.') {
            Some((s, n)) => (Some(s.to_string()), n.to_string()),
            None => (None, self.table.clone()),
        };
        let rows = client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_name = $1 AND table_schema = COALESCE($2, current_schema())",
                &[&name, &schema],
            )
            .await?;
        let present: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        let columns: Vec<&'static str> = record::COLUMNS
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| present.iter().any(|p| p == c))
            .collect();
        let select = columns
            .iter()
            .map(|c| format!("\"{c}\"::text"))
            .collect::<Vec<_>>()
            .join(", ");
        let by_key = client
            .prepare(&format!(
                "SELECT {select} FROM {} WHERE \"key\" = $1 LIMIT 1",
                self.table
            ))
            .await?;
        let by_id = client
            .prepare(&format!(
                "SELECT {select} FROM {} WHERE \"id\" = $1 LIMIT 1",
                self.table
            ))
            .await?;
        info!(table = %self.table, "PostgreSQL app manager connected");
        Ok(Conn {
            client,
            by_key,
            by_id,
            columns,
        })
    }

    async fn query(&self, by: &Lookup) -> Result<Option<AppRecord>, SourceError> {
        let slot = &self.pool[self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len()];
        let mut guard = slot.lock().await;
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        if guard.is_none() {
            let conn = tokio::time::timeout(DB_TIMEOUT, self.connect())
                .await
                .map_err(|_| SourceError::Timeout(DB_TIMEOUT))?
                .map_err(|e| SourceError::Unavailable(describe(&e)))?;
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_ref() else {
            return Err(SourceError::Unavailable("no connection".into()));
        };
        let statement = match by {
            Lookup::Key(_) => &conn.by_key,
            Lookup::Id(_) => &conn.by_id,
        };
        let value = by.value();
        let result =
            tokio::time::timeout(DB_TIMEOUT, conn.client.query_opt(statement, &[&value])).await;
        let row = match result {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => {
                *guard = None;
                return Err(SourceError::Unavailable(describe(&e)));
            }
            Err(_) => {
                *guard = None;
                return Err(SourceError::Timeout(DB_TIMEOUT));
            }
        };
        let Some(row) = row else { return Ok(None) };
        let cells = conn
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| (*column, row.try_get::<_, Option<String>>(i).ok().flatten()));
        Ok(record::from_columns(cells))
    }
}

/// The error with its cause (tokio-postgres' own text is often just "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

impl AppSource for PostgresSource {
    fn find<'a>(&'a self, by: &'a Lookup) -> FindFuture<'a> {
        Box::pin(self.query(by))
    }

    fn driver(&self) -> &'static str {
        "postgresql"
    }
}
