//! The cluster's tables in the journal's database, created by the cluster itself at start
//! (`CREATE TABLE IF NOT EXISTS`), so the journal's migrations stay the journal's.
//!
//! Every statement of the crate is portable between SQLite and PostgreSQL (`$n`
//! placeholders, `ON CONFLICT … DO UPDATE … WHERE`, `RETURNING`); [`on_pool!`] instantiates
//! one statement for whichever pool the [`Database`] holds.

use tradefloor_persistence::Database;

use crate::error::Error;

/// Evaluates `$body` with `$pool` bound to the database's pool, for either backend: the
/// body is written once and type-checked against each sqlx backend.
macro_rules! on_pool {
    ($database:expr, $pool:ident => $body:expr) => {
        match $database {
            tradefloor_persistence::Database::Sqlite($pool) => $body,
            tradefloor_persistence::Database::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// An arbitrary constant naming the PostgreSQL advisory lock taken while creating the tables.
const SCHEMA_LOCK_KEY: i64 = 0x7472_6164_6566_6c72;

/// The membership table (see [`crate::membership`]), the lease table (see
/// [`crate::lease`]), the shard table (see [`crate::allocation`]), the id slots (see
/// [`crate::id_slots`]) and the settings every member must share (see [`crate::settings`]). Timestamps are milliseconds since the Unix
/// epoch.
const TABLES: [&str; 5] = [
    "CREATE TABLE IF NOT EXISTS cluster_members (
        node_id TEXT PRIMARY KEY,
        http_addr TEXT NOT NULL,
        cluster_addr TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('joining', 'up', 'leaving', 'down')),
        incarnation BIGINT NOT NULL,
        last_heartbeat_ms BIGINT NOT NULL,
        joined_at_ms BIGINT NOT NULL
    )",
    // A row is never deleted: its epoch must keep growing across every holder, released
    // or not. `holder` is NULL once released.
    "CREATE TABLE IF NOT EXISTS cluster_leases (
        lease TEXT PRIMARY KEY,
        holder TEXT,
        epoch BIGINT NOT NULL,
        acquired_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL
    )",
    // One row per shard, never deleted: its epoch must keep growing across owners.
    // `target` is set exactly while a hand-off is under way.
    "CREATE TABLE IF NOT EXISTS cluster_shards (
        shard INTEGER PRIMARY KEY,
        owner TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        handoff TEXT NOT NULL CHECK (handoff IN ('active', 'draining', 'released')),
        target TEXT,
        changed_at_ms BIGINT NOT NULL,
        CHECK ((handoff = 'active') = (target IS NULL))
    )",
    // Which node generates ids in which slot (see [`crate::id_slots`]).
    "CREATE TABLE IF NOT EXISTS cluster_id_slots (
        slot BIGINT PRIMARY KEY,
        node_id TEXT NOT NULL UNIQUE
    )",
    // Written once, by the first node that joins; never changed.
    "CREATE TABLE IF NOT EXISTS cluster_settings (
        name TEXT PRIMARY KEY,
        value BIGINT NOT NULL
    )",
];

/// Creates the cluster's tables if they are missing.
pub(crate) async fn ensure_tables(database: &Database) -> Result<(), Error> {
    match database {
        Database::Sqlite(pool) => {
            // SQLite's write lock serializes concurrent creators.
            for table in TABLES {
                sqlx::query(table).execute(pool).await?;
            }
        }
        Database::Postgres(pool) => {
            // Two PostgreSQL sessions creating the same table at once can both pass
            // `IF NOT EXISTS` and one then fails on the catalog's unique index: nodes
            // starting together take turns.
            let mut transaction = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(SCHEMA_LOCK_KEY)
                .execute(&mut *transaction)
                .await?;
            for table in TABLES {
                sqlx::query(table).execute(&mut *transaction).await?;
            }
            transaction.commit().await?;
        }
    }
    Ok(())
}
