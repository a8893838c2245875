//! A node's claim on its journal.
//!
//! Several nodes may write one journal only as members of one cluster, which fences every
//! stream to its one owner. A node that is not a cluster member owns every entity, so a second
//! such node on the same journal would write the same streams (conflicts, duplicate read-model
//! rows, nodes exiting). So a standalone node holds an *exclusive* claim and cluster members a
//! *shared* one, for as long as they run; a node whose claim cannot be had refuses to start and
//! names the holders.
//!
//! - PostgreSQL: a session advisory lock, keyed by the journal's schema, held by a connection
//!   of its own named `tradefloor:{node id}` (`application_name`); it ends with the process,
//!   however it ends. The holders are read from `pg_locks`.
//! - SQLite: an advisory file lock on `{journal file}.claim`, which holds the holder's node
//!   id; the operating system releases it with the process.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use sqlx::{Connection, PgConnection};

use crate::database::Database;
use crate::error::Error;

/// The advisory lock's first key: "tf" + "cl".
const LOCK_CLASS: i32 = 0x7466_636c;
/// The lock's second key: the journal's schema.
const LOCK_KEY: &str = "hashtext(current_schema()) & 2147483647";

/// How a node shares its journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimMode {
    /// A standalone node: no other node may use the journal.
    Exclusive,
    /// A cluster member: other members may, a standalone node may not.
    Shared,
}

/// A held claim; dropping it (or the process ending) gives it up.
#[derive(Debug)]
pub struct JournalClaim {
    _held: Held,
}

/// What holds the claim: only kept, never read.
#[derive(Debug)]
enum Held {
    File(#[allow(dead_code)] std::fs::File),
    Postgres(#[allow(dead_code)] PgConnection),
    /// An in-memory SQLite journal: no other process can reach it.
    Nothing,
}

impl JournalClaim {
    /// Takes `node_id`'s claim on `database` in `mode`, or refuses with the holders.
    pub async fn take(database: &Database, node_id: &str, mode: ClaimMode) -> Result<Self, Error> {
        let held = match database {
            Database::Sqlite(pool) => {
                let journal = pool.connect_options().get_filename().to_owned();
                if journal.as_os_str().is_empty() || journal.starts_with(":memory:") {
                    Held::Nothing
                } else {
                    Held::File(claim_file(&journal, node_id, mode)?)
                }
            }
            Database::Postgres(pool) => {
                let connection = pool.acquire().await?.detach();
                Held::Postgres(claim_postgres(connection, node_id, mode).await?)
            }
        };
        Ok(Self { _held: held })
    }
}

fn refusal(node_id: &str, mode: ClaimMode, holders: &str) -> Error {
    let wanted = match mode {
        ClaimMode::Exclusive => "as a standalone node",
        ClaimMode::Shared => "as a cluster member",
    };
    Error::Claimed(format!(
        "node {node_id} cannot use this journal {wanted}: it is held by {holders}; nodes share \
         a journal only as members of one cluster (the same cluster.secret on every node)"
    ))
}

fn claim_path(journal: &Path) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".claim");
    PathBuf::from(name)
}

fn claim_file(journal: &Path, node_id: &str, mode: ClaimMode) -> Result<std::fs::File, Error> {
    let io = |error: std::io::Error| Error::Claimed(format!("journal claim: {error}"));
    let path = claim_path(journal);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    let taken = match mode {
        ClaimMode::Exclusive => file.try_lock(),
        ClaimMode::Shared => file.try_lock_shared(),
    };
    if taken.is_err() {
        let mut holders = String::new();
        file.read_to_string(&mut holders).map_err(io)?;
        let holders = holders.trim();
        let holders = if holders.is_empty() {
            "another node"
        } else {
            holders
        };
        return Err(refusal(
            node_id,
            mode,
            &format!("{holders} ({})", path.display()),
        ));
    }
    if mode == ClaimMode::Exclusive {
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "node {node_id} (standalone)").map_err(io)?;
    }
    Ok(file)
}

async fn claim_postgres(
    mut connection: PgConnection,
    node_id: &str,
    mode: ClaimMode,
) -> Result<PgConnection, Error> {
    sqlx::query("SELECT set_config('application_name', $1, false)")
        .bind(format!("tradefloor:{node_id}"))
        .execute(&mut connection)
        .await?;
    let function = match mode {
        ClaimMode::Exclusive => "pg_try_advisory_lock",
        ClaimMode::Shared => "pg_try_advisory_lock_shared",
    };
    let taken: bool = sqlx::query_scalar(&format!("SELECT {function}($1, {LOCK_KEY})"))
        .bind(LOCK_CLASS)
        .fetch_one(&mut connection)
        .await?;
    if taken {
        return Ok(connection);
    }
    let holders: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT activity.application_name, locks.mode FROM pg_locks AS locks \
         JOIN pg_stat_activity AS activity ON activity.pid = locks.pid \
         WHERE locks.locktype = 'advisory' AND locks.granted \
         AND locks.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND locks.classid = $1::oid AND locks.objid = ({LOCK_KEY})::oid AND locks.objsubid = 2"
    ))
    .bind(LOCK_CLASS)
    .fetch_all(&mut connection)
    .await?;
    let _ = connection.close().await;
    let named: Vec<String> = holders
        .iter()
        .map(|(name, lock)| {
            let node = name.strip_prefix("tradefloor:").unwrap_or(name);
            let how = if lock == "ExclusiveLock" {
                "standalone"
            } else {
                "cluster member"
            };
            format!("node {node} ({how})")
        })
        .collect();
    let holders = if named.is_empty() {
        "another node".to_owned()
    } else {
        named.join(", ")
    };
    Err(refusal(node_id, mode, &holders))
}
