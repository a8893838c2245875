//! The database a journal lives in: embedded SQLite or PostgreSQL, chosen by URL.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Sqlite, SqlitePool};

use crate::config::JournalConfig;
use crate::error::Error;

/// Rows an SQLite connection's worker thread may buffer ahead of the reading task.
const SQLITE_ROW_BUFFER_ROWS: usize = 4_096;

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub enum Database {
    /// An SQLite file (WAL mode), the embedded default.
    Sqlite(SqlitePool),
    /// A PostgreSQL database (optionally one schema of it).
    Postgres(PgPool),
}

/// A transaction on either backend, for committing a read-model update together with a
/// consumer offset (see [`crate::offset::OffsetStore::commit_in`]).
#[derive(Debug)]
pub enum Transaction {
    /// On SQLite.
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Transaction {
    /// Makes every write of the transaction durable, atomically.
    pub async fn commit(self) -> Result<(), Error> {
        match self {
            Transaction::Sqlite(transaction) => transaction.commit().await?,
            Transaction::Postgres(transaction) => transaction.commit().await?,
        }
        Ok(())
    }

    /// Discards every write of the transaction.
    pub async fn rollback(self) -> Result<(), Error> {
        match self {
            Transaction::Sqlite(transaction) => transaction.rollback().await?,
            Transaction::Postgres(transaction) => transaction.rollback().await?,
        }
        Ok(())
    }
}

impl Database {
    /// Connects to `sqlite:<path>` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str, config: &JournalConfig) -> Result<Self, Error> {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(if config.sqlite_synchronous_full {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                })
                .busy_timeout(config.sqlite_busy_timeout)
                // SQLite runs each connection on a worker thread that hands rows over one at a
                // time; a deep buffer lets it run ahead of a reader instead of waking it at
                // every 50th row (sqlx's default).
                .row_buffer_size(SQLITE_ROW_BUFFER_ROWS);
            let pool = SqlitePoolOptions::new()
                .max_connections(config.pool_connections_max)
                .connect_with(options)
                .await?;
            Ok(Database::Sqlite(pool))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Self::connect_postgres(url, None, config).await
        } else {
            Err(Error::InvalidRequest(format!(
                "journal URL must start with sqlite: or postgres://, got {:?}",
                url.split(':').next().unwrap_or_default()
            )))
        }
    }

    /// Connects to PostgreSQL with every table in `schema` (created if missing): how tests
    /// and several tenants share one server.
    pub async fn connect_postgres(
        url: &str,
        schema: Option<&str>,
        config: &JournalConfig,
    ) -> Result<Self, Error> {
        let mut options = PgConnectOptions::from_str(url)?;
        if let Some(schema) = schema {
            validate_schema_name(schema)?;
            let mut connection = PgConnection::connect_with(&options).await?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                .execute(&mut connection)
                .await?;
            connection.close().await?;
            options = options.options([("search_path", schema)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.pool_connections_max)
            .connect_with(options)
            .await?;
        Ok(Database::Postgres(pool))
    }

    /// Creates or upgrades the schema (sqlx migrations, embedded in the binary).
    pub async fn migrate(&self) -> Result<(), Error> {
        match self {
            Database::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Database::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Transaction, Error> {
        Ok(match self {
            Database::Sqlite(pool) => Transaction::Sqlite(pool.begin().await?),
            Database::Postgres(pool) => Transaction::Postgres(pool.begin().await?),
        })
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match self {
            Database::Sqlite(pool) => pool.close().await,
            Database::Postgres(pool) => pool.close().await,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }
}

/// Schema names go into SQL text, so only plain identifiers are allowed.
fn validate_schema_name(schema: &str) -> Result<(), Error> {
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
    if !plain {
        return Err(Error::InvalidRequest(format!(
            "schema name {schema:?} must be 1 to 63 characters of a-z, 0-9 and _"
        )));
    }
    Ok(())
}
