//! The database a journal lives in: embedded SQLite or PostgreSQL, chosen by URL.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Sqlite, SqlitePool};

use crate::config::JournalConfig;
use crate::error::Error;
use crate::read_model_writer::WriterTransaction;
use crate::sql_value::{SqlValue, bind_values, decode_rows};

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
    /// On SQLite, through sqlx.
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    /// On PostgreSQL.
    Postgres(sqlx::Transaction<'static, Postgres>),
    /// On SQLite, through the read models' own write connection (see
    /// [`crate::Journal::begin_read_models`]): writes are buffered until the next query or
    /// the commit.
    Writer(WriterTransaction),
}

impl Transaction {
    /// Runs one statement (`$1`-style placeholders, or anonymous `?` on SQLite). On the
    /// read-model writer it is buffered and runs with the next query or the commit, so its
    /// error (a constraint, say) shows there.
    pub async fn execute(&mut self, sql: &str, values: &[SqlValue]) -> Result<(), Error> {
        match self {
            Transaction::Sqlite(transaction) => {
                bind_values!(sqlx::query(sql), values)
                    .execute(&mut **transaction)
                    .await?;
            }
            Transaction::Postgres(transaction) => {
                bind_values!(sqlx::query(sql), values)
                    .execute(&mut **transaction)
                    .await?;
            }
            Transaction::Writer(transaction) => transaction.execute(sql, values),
        }
        Ok(())
    }

    /// Runs one query (after every statement before it) and returns its rows.
    pub async fn fetch(
        &mut self,
        sql: &str,
        values: &[SqlValue],
    ) -> Result<Vec<Vec<SqlValue>>, Error> {
        Ok(match self {
            Transaction::Sqlite(transaction) => {
                let rows = bind_values!(sqlx::query(sql), values)
                    .fetch_all(&mut **transaction)
                    .await?;
                decode_rows!(rows)?
            }
            Transaction::Postgres(transaction) => {
                let rows = bind_values!(sqlx::query(sql), values)
                    .fetch_all(&mut **transaction)
                    .await?;
                decode_rows!(rows)?
            }
            Transaction::Writer(transaction) => transaction.fetch(sql, values).await?,
        })
    }

    /// Whether placeholders are numbered (`$1`, PostgreSQL) rather than anonymous (`?`,
    /// SQLite, where sqlx looks each `$n` up by name, a linear search per parameter).
    pub fn numbered_placeholders(&self) -> bool {
        matches!(self, Transaction::Postgres(_))
    }

    /// Makes every write of the transaction durable, atomically.
    pub async fn commit(self) -> Result<(), Error> {
        match self {
            Transaction::Sqlite(transaction) => transaction.commit().await?,
            Transaction::Postgres(transaction) => transaction.commit().await?,
            Transaction::Writer(transaction) => transaction.commit().await?,
        }
        Ok(())
    }

    /// Discards every write of the transaction.
    pub async fn rollback(self) -> Result<(), Error> {
        match self {
            Transaction::Sqlite(transaction) => transaction.rollback().await?,
            Transaction::Postgres(transaction) => transaction.rollback().await?,
            // Rolled back when dropped.
            Transaction::Writer(transaction) => drop(transaction),
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

    /// Runs one query on the pool and returns its rows (`$1`-style placeholders).
    pub async fn fetch(&self, sql: &str, values: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, Error> {
        Ok(match self {
            Database::Sqlite(pool) => {
                let rows = bind_values!(sqlx::query(sql), values)
                    .fetch_all(pool)
                    .await?;
                decode_rows!(rows)?
            }
            Database::Postgres(pool) => {
                let rows = bind_values!(sqlx::query(sql), values)
                    .fetch_all(pool)
                    .await?;
                decode_rows!(rows)?
            }
        })
    }

    /// Runs one statement on the pool, outside any transaction (creating a table, say).
    pub async fn execute(&self, sql: &str) -> Result<(), Error> {
        match self {
            Database::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop)?,
            Database::Postgres(pool) => sqlx::query(sql).execute(pool).await.map(drop)?,
        }
        Ok(())
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
