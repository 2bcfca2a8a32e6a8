//! sockudo's database app managers: apps read from PostgreSQL, MySQL/MariaDB or DynamoDB, in Sockudo's schema
//! (the `applications` table / item layout), so a database written for Sockudo works unchanged.
//!
//! A driver answers one question, "the app with this key (or id)", with the app's record in Sockudo's flat
//! shape (column name -> JSON value, unset columns left out). It runs on the I/O shard's tokio runtime; the
//! blocking MySQL client runs on tokio's blocking threads. Parsing the record into the server's app type is
//! the caller's job, so this crate does not depend on the server.

pub mod record;
mod sql;

#[cfg(feature = "dynamodb")]
mod dynamodb;
#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use record::{AppRecord, COLUMNS};

/// How an app is looked up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// By public key (`/app/{key}` on WebSocket connect).
    Key(String),
    /// By app id (`/apps/{id}/...` on REST).
    Id(String),
}

impl Lookup {
    /// The column the lookup matches.
    pub fn column(&self) -> &'static str {
        match self {
            Lookup::Key(_) => "key",
            Lookup::Id(_) => "id",
        }
    }

    /// The value looked for.
    pub fn value(&self) -> &str {
        match self {
            Lookup::Key(v) | Lookup::Id(v) => v,
        }
    }
}

/// Why a lookup has no answer (as opposed to "no such app", which is `Ok(None)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The database could not be reached or failed the query.
    #[error("the app database is unavailable: {0}")]
    Unavailable(String),
    /// The database did not answer in time.
    #[error("the app database did not answer within {0:?}")]
    Timeout(Duration),
    /// Too many distinct lookups are waiting for the database already.
    #[error("too many app lookups are waiting for the database")]
    Busy,
    /// The server runs the memory app manager: nothing to ask.
    #[error("no app database is configured")]
    NotConfigured,
}

/// The answer to one lookup.
pub type FindResult = Result<Option<AppRecord>, SourceError>;

/// A boxed future returned by [`AppSource::find`].
pub type FindFuture<'a> = Pin<Box<dyn Future<Output = FindResult> + Send + 'a>>;

/// A database app manager.
pub trait AppSource: Send + Sync + 'static {
    /// The app matching `by`, `Ok(None)` when there is none. A row that does not parse is reported as `None`
    /// with a warning naming the app id and the field.
    fn find<'a>(&'a self, by: &'a Lookup) -> FindFuture<'a>;

    /// The driver's name, for logs.
    fn driver(&self) -> &'static str;
}

/// Connection settings of an SQL database (Sockudo's `database.mysql` / `database.postgres`).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    pub database: String,
    /// Table holding the apps (default `applications`).
    pub table_name: String,
    /// Connections kept open at most (`connection_pool_size`).
    pub pool_size: usize,
}

/// Connection settings of DynamoDB (Sockudo's `database.dynamodb`).
#[derive(Debug, Clone, PartialEq)]
pub struct DynamoDbConfig {
    pub region: String,
    /// Table holding the apps (default `sockudo-applications`).
    pub table_name: String,
    /// Endpoint override (a local DynamoDB or moto); `None` = AWS.
    pub endpoint_url: Option<String>,
    /// Static credentials; `None` = the default AWS credential chain.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

/// Which database apps come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceConfig {
    Postgres(SqlConfig),
    Mysql(SqlConfig),
    DynamoDb(DynamoDbConfig),
}

impl SourceConfig {
    /// The Cargo feature the driver needs.
    pub fn feature(&self) -> &'static str {
        match self {
            SourceConfig::Postgres(_) => "postgres",
            SourceConfig::Mysql(_) => "mysql",
            SourceConfig::DynamoDb(_) => "dynamodb",
        }
    }

    /// True when this build has the driver.
    pub fn is_compiled_in(&self) -> bool {
        match self {
            SourceConfig::Postgres(_) => cfg!(feature = "postgres"),
            SourceConfig::Mysql(_) => cfg!(feature = "mysql"),
            SourceConfig::DynamoDb(_) => cfg!(feature = "dynamodb"),
        }
    }
}

/// Why a driver cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("app manager driver `{driver}` is not compiled in: build sockudo with `--features {feature}`")]
    NotCompiled {
        driver: &'static str,
        feature: &'static str,
    },
    #[error("invalid app manager setting: {0}")]
    Invalid(String),
}

/// Opens the driver of `config`. Must run inside a tokio runtime. The database does not have to be up: drivers
/// connect on first use and again after a failure, so a database that comes back is used again by itself.
pub async fn open(config: &SourceConfig) -> Result<Arc<dyn AppSource>, OpenError> {
    match config {
        #[cfg(feature = "postgres")]
        SourceConfig::Postgres(c) => Ok(Arc::new(postgres::PostgresSource::open(c.clone())?)),
        #[cfg(feature = "mysql")]
        SourceConfig::Mysql(c) => Ok(Arc::new(mysql::MysqlSource::open(c.clone())?)),
        #[cfg(feature = "dynamodb")]
        SourceConfig::DynamoDb(c) => Ok(Arc::new(dynamodb::DynamoDbSource::open(c.clone()).await?)),
        #[allow(unreachable_patterns)]
        other => Err(OpenError::NotCompiled {
            driver: match other {
                SourceConfig::Postgres(_) => "postgresql",
                SourceConfig::Mysql(_) => "mysql",
                SourceConfig::DynamoDb(_) => "dynamodb",
            },
            feature: other.feature(),
        }),
    }
}

/// Connect and query timeout of the SQL drivers.
pub const DB_TIMEOUT: Duration = Duration::from_secs(3);
