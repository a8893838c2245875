//! Settings every member of a cluster must share, recorded by the first node that joins.
//!
//! The shard count is one: a node with another count would route entities to other shards
//! than its peers do, and plan shards that do not exist for them. A node whose setting
//! differs from the recorded one is refused at join, before it becomes a member.

use tradefloor_persistence::Database;

use crate::error::Error;
use crate::schema::{ensure_tables, on_pool};

/// The name of the shard count's row.
const SHARD_COUNT: &str = "shard_count";

/// Records `shard_count` as the cluster's if none is yet; refuses if another is recorded.
pub(crate) async fn agree_shard_count(database: &Database, shard_count: u32) -> Result<(), Error> {
    ensure_tables(database).await?;
    let recorded: i64 = on_pool!(database, pool => {
        sqlx::query(
            "INSERT INTO cluster_settings (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(SHARD_COUNT)
        .bind(i64::from(shard_count))
        .execute(pool)
        .await?;
        sqlx::query_scalar("SELECT value FROM cluster_settings WHERE name = $1")
            .bind(SHARD_COUNT)
            .fetch_one(pool)
            .await?
    });
    if recorded != i64::from(shard_count) {
        return Err(Error::Misconfigured(format!(
            "this node's trading.shard_count is {shard_count} but the cluster's is {recorded}: \
             every member must have the same"
        )));
    }
    Ok(())
}
