//! The MySQL / MariaDB app manager (the blocking `mysql` crate, run on tokio's blocking threads so the I/O
//! shard's async thread never waits on the database).
//!
//! The pool opens connections on demand (none at start, at most `pool_size`), so the server starts while the
//! database is down and recovers by itself when it returns. The table is created when missing; its columns
//! are read once, so a table from an older Sockudo works as is; nothing is ever altered.

use std::sync::{Arc, Mutex};

use mysql::prelude::Queryable;
use mysql::{Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts};
use tracing::info;

use crate::record::{self, AppRecord};
use crate::sql;
use crate::{AppSource, FindFuture, Lookup, OpenError, SourceError, SqlConfig, DB_TIMEOUT};

pub(crate) struct MysqlSource {
    inner: Arc<Inner>,
}

struct Inner {
    opts: Opts,
    table: String,
    pool: Mutex<Option<Pool>>,
    /// Select lists by key and by id, once the table's columns are known.
    statements: Mutex<Option<Statements>>,
}

#[derive(Clone)]
struct Statements {
    by_key: String,
    by_id: String,
    columns: Vec<&'static str>,
}

impl MysqlSource {
    pub(crate) fn open(c: SqlConfig) -> Result<MysqlSource, OpenError> {
        let table = sql::checked_table_name(&c.table_name)?.to_string();
        let constraints = PoolConstraints::new(0, c.pool_size.max(1))
            .ok_or_else(|| OpenError::Invalid("connection_pool_size".into()))?;
        let opts = OptsBuilder::new()
            .ip_or_hostname(Some(c.host.clone()))
            .tcp_port(c.port)
            .user(Some(c.username.clone()))
            .pass((!c.password.is_empty()).then(|| c.password.clone()))
            .db_name(Some(c.database.clone()))
            .tcp_connect_timeout(Some(DB_TIMEOUT))
            .read_timeout(Some(DB_TIMEOUT))
            .write_timeout(Some(DB_TIMEOUT))
            .pool_opts(PoolOpts::default().with_constraints(constraints));
        Ok(MysqlSource {
            inner: Arc::new(Inner {
                opts: opts.into(),
                table,
                pool: Mutex::new(None),
                statements: Mutex::new(None),
            }),
        })
    }
}

impl Inner {
    fn pool(&self) -> Result<Pool, mysql::Error> {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pool) = pool.as_ref() {
            return Ok(pool.clone());
        }
        let made = Pool::new(self.opts.clone())?;
        *pool = Some(made.clone());
        Ok(made)
    }

    fn statements(&self, conn: &mut mysql::PooledConn) -> Result<Statements, mysql::Error> {
        if let Some(s) = self
            .statements
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            return Ok(s);
        }
        conn.query_drop(sql::mysql_create_table(&self.table))?;
        let present: Vec<String> = conn.exec(
            "SELECT COLUMN_NAME FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = ?",
            (&self.table,),
        )?;
        let columns: Vec<&'static str> = record::COLUMNS
            .iter()
            .map(|(c, _)| *c)
            .filter(|c| present.iter().any(|p| p.eq_ignore_ascii_case(c)))
            .collect();
        let select = columns
            .iter()
            .map(|c| format!("CAST(`{c}` AS CHAR)"))
            .collect::<Vec<_>>()
            .join(", ");
        let statements = Statements {
            by_key: format!(
                "SELECT {select} FROM `{}` WHERE `key` = ? LIMIT 1",
                self.table
            ),
            by_id: format!(
                "SELECT {select} FROM `{}` WHERE `id` = ? LIMIT 1",
                self.table
            ),
            columns,
        };
        info!(table = %self.table, "MySQL app manager connected");
        *self.statements.lock().unwrap_or_else(|e| e.into_inner()) = Some(statements.clone());
        Ok(statements)
    }

    /// Runs on a blocking thread.
    fn query(&self, by: &Lookup) -> Result<Option<AppRecord>, mysql::Error> {
        let pool = self.pool()?;
        let mut conn = pool.try_get_conn(DB_TIMEOUT)?;
        let statements = self.statements(&mut conn)?;
        let statement = match by {
            Lookup::Key(_) => &statements.by_key,
            Lookup::Id(_) => &statements.by_id,
        };
        let row: Option<mysql::Row> = conn.exec_first(statement, (by.value(),))?;
        let Some(row) = row else { return Ok(None) };
        let cells = statements.columns.iter().enumerate().map(|(i, column)| {
            let text = row
                .get_opt::<Option<String>, usize>(i)
                .and_then(Result::ok)
                .flatten();
            (*column, text)
        });
        Ok(record::from_columns(cells))
    }
}

impl AppSource for MysqlSource {
    fn find<'a>(&'a self, by: &'a Lookup) -> FindFuture<'a> {
        let inner = Arc::clone(&self.inner);
        let by = by.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || inner.query(&by)).await {
                Ok(Ok(record)) => Ok(record),
                Ok(Err(e)) => Err(SourceError::Unavailable(e.to_string())),
                Err(e) => Err(SourceError::Unavailable(format!("lookup task failed: {e}"))),
            }
        })
    }

    fn driver(&self) -> &'static str {
        "mysql"
    }
}
