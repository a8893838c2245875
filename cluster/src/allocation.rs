//! The shard table in the journal's database: which node owns each shard, under which
//! epoch, and where a hand-off is (DESIGN §4).
//!
//! The coordinator (the holder of [`crate::SHARD_COORDINATOR_LEASE`]) writes what
//! [`crate::plan()`] decides; the owners read it. A graceful hand-off of a shard runs
//!
//! ```text
//! active ──begin_move──▶ draining ──release (old owner)──▶ released ──complete_move──▶ active
//!   ▲                       │                                               (new owner, epoch + 1)
//!   └──────cancel_move──────┘
//! ```
//!
//! and a shard whose owner is gone is given away at once with [`Allocation::reassign`]
//! (epoch + 1, whatever its state). The epoch is the shard's fencing token: the new owner
//! claims the journal fence [`fence_key`] with it before writing, so the old owner's late
//! writes are refused even if it never learns it lost the shard.
//!
//! Every change is one conditional statement on the row's epoch and state, so of
//! coordinators racing on a stale view (a deposed leader, a retry) exactly one wins each
//! step, and the epoch grows by exactly one per change of owner. Each returns whether it
//! applied: `false` means the row was not in the state the caller read, so re-read it.

use tradefloor_persistence::Database;

use crate::error::{Error, from_db, to_db};
use crate::plan::{Assignment, HandOff};
use crate::schema::{ensure_tables, on_pool};
use crate::time::Timestamp;

/// The journal fence of `shard`: its owner calls the journal's
/// [`claim_fence`](tradefloor_persistence::Journal::claim_fence)`(fence_key(shard), epoch)`
/// with the row's epoch before writing any of the shard's events.
pub fn fence_key(shard: u32) -> String {
    format!("shard-{shard}")
}

/// A shard row as both backends decode it: shard, owner, epoch, handoff, target.
type ShardRow = (i32, String, i64, String, Option<String>);

fn assignment_from_row(row: ShardRow) -> Result<Assignment, Error> {
    let (shard, owner, epoch, handoff, target) = row;
    let shard = u32::try_from(shard)
        .map_err(|_| Error::Corrupt(format!("stored shard {shard} is negative")))?;
    let epoch = from_db(epoch, "epoch")?;
    if epoch == 0 {
        return Err(Error::Corrupt(format!("shard {shard} has epoch 0")));
    }
    let handoff = match (handoff.as_str(), target) {
        ("active", None) => HandOff::Active,
        ("draining", Some(target)) => HandOff::Draining { target },
        ("released", Some(target)) => HandOff::Released { target },
        (handoff, target) => {
            return Err(Error::Corrupt(format!(
                "shard {shard} is {handoff:?} with target {target:?}"
            )));
        }
    };
    Ok(Assignment {
        shard,
        owner,
        epoch,
        handoff,
    })
}

/// Converts a shard number to the table's 32-bit signed integer.
fn shard_to_db(shard: u32) -> Result<i32, Error> {
    i32::try_from(shard).map_err(|_| Error::InvalidRequest(format!("shard {shard} exceeds i32")))
}

/// Refuses an empty node id, which no member has.
fn node_id(node_id: &str) -> Result<&str, Error> {
    if node_id.is_empty() {
        return Err(Error::InvalidRequest(
            "a node id must not be empty".to_owned(),
        ));
    }
    Ok(node_id)
}

/// The shard table of one cluster; cheap to clone.
#[derive(Clone, Debug)]
pub struct Allocation {
    database: Database,
}

impl Allocation {
    /// Opens the table in `database` (the journal's), creating it if missing.
    pub async fn open(database: Database) -> Result<Self, Error> {
        ensure_tables(&database).await?;
        Ok(Self { database })
    }

    /// Every shard's row, by shard (a shard never allocated has none).
    pub async fn assignments(&self) -> Result<Vec<Assignment>, Error> {
        let rows: Vec<ShardRow> = on_pool!(&self.database, pool => {
            sqlx::query_as(
                "SELECT shard, owner, epoch, handoff, target FROM cluster_shards ORDER BY shard",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(assignment_from_row).collect()
    }

    /// Gives `shard` its first owner, `owner`, at epoch 1, if it has no row yet.
    pub async fn create(&self, shard: u32, owner: &str, now: Timestamp) -> Result<bool, Error> {
        let (shard, owner) = (shard_to_db(shard)?, node_id(owner)?);
        let created = on_pool!(&self.database, pool => {
            sqlx::query(
                "INSERT INTO cluster_shards (shard, owner, epoch, handoff, target, changed_at_ms) \
                 VALUES ($1, $2, 1, 'active', NULL, $3) ON CONFLICT (shard) DO NOTHING",
            )
            .bind(shard)
            .bind(owner)
            .bind(now.unix_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(created == 1)
    }

    /// Starts the hand-off of `shard` to `target` (active → draining): the owner is to
    /// stop and flush it, then [`release`](Self::release) it. Only if the row is still at
    /// `epoch`, settled, and not owned by `target` already.
    pub async fn begin_move(
        &self,
        shard: u32,
        epoch: u64,
        target: &str,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (shard, epoch, target) = (
            shard_to_db(shard)?,
            to_db(epoch, "epoch")?,
            node_id(target)?,
        );
        let begun = on_pool!(&self.database, pool => {
            sqlx::query(
                "UPDATE cluster_shards SET handoff = 'draining', target = $3, changed_at_ms = $4 \
                 WHERE shard = $1 AND epoch = $2 AND handoff = 'active' AND owner <> $3",
            )
            .bind(shard)
            .bind(epoch)
            .bind(target)
            .bind(now.unix_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(begun == 1)
    }

    /// The old owner reports it has stopped `shard` and flushed its writes (draining →
    /// released): from now on nobody serves it until [`complete_move`](Self::complete_move).
    /// Only if `owner` still owns it at `epoch` and it is draining; `false` after a
    /// [`cancel_move`](Self::cancel_move) means the owner keeps the shard and starts it again.
    pub async fn release(
        &self,
        shard: u32,
        owner: &str,
        epoch: u64,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (shard, owner, epoch) = (shard_to_db(shard)?, node_id(owner)?, to_db(epoch, "epoch")?);
        let released = on_pool!(&self.database, pool => {
            sqlx::query(
                "UPDATE cluster_shards SET handoff = 'released', changed_at_ms = $4 \
                 WHERE shard = $1 AND owner = $2 AND epoch = $3 AND handoff = 'draining'",
            )
            .bind(shard)
            .bind(owner)
            .bind(epoch)
            .bind(now.unix_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(released == 1)
    }

    /// Finishes the hand-off of a released `shard` at `epoch`: the target owns it, at
    /// `epoch + 1`, settled.
    pub async fn complete_move(
        &self,
        shard: u32,
        epoch: u64,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (shard, epoch) = (shard_to_db(shard)?, to_db(epoch, "epoch")?);
        // Both backends evaluate every `SET` expression on the row as it was, so the owner
        // becomes the old target while the target is cleared.
        let completed = on_pool!(&self.database, pool => {
            sqlx::query(
                "UPDATE cluster_shards SET owner = target, epoch = epoch + 1, handoff = 'active', \
                 target = NULL, changed_at_ms = $3 \
                 WHERE shard = $1 AND epoch = $2 AND handoff = 'released'",
            )
            .bind(shard)
            .bind(epoch)
            .bind(now.unix_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(completed == 1)
    }

    /// Gives `shard` to `new_owner` at once, at `epoch + 1`, settled, whatever its hand-off
    /// state: for a shard nobody serves (its owner is gone, or it was released toward a
    /// node that is gone). Only if the row is still at `epoch`.
    pub async fn reassign(
        &self,
        shard: u32,
        epoch: u64,
        new_owner: &str,
        now: Timestamp,
    ) -> Result<bool, Error> {
        let (shard, epoch, new_owner) = (
            shard_to_db(shard)?,
            to_db(epoch, "epoch")?,
            node_id(new_owner)?,
        );
        let reassigned = on_pool!(&self.database, pool => {
            sqlx::query(
                "UPDATE cluster_shards SET owner = $3, epoch = epoch + 1, handoff = 'active', \
                 target = NULL, changed_at_ms = $4 WHERE shard = $1 AND epoch = $2",
            )
            .bind(shard)
            .bind(epoch)
            .bind(new_owner)
            .bind(now.unix_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(reassigned == 1)
    }

    /// Abandons the hand-off of a draining `shard` at `epoch` (draining → active, same
    /// owner and epoch). A released shard cannot be cancelled: its owner has stopped it,
    /// so it must be completed or reassigned.
    pub async fn cancel_move(&self, shard: u32, epoch: u64, now: Timestamp) -> Result<bool, Error> {
        let (shard, epoch) = (shard_to_db(shard)?, to_db(epoch, "epoch")?);
        let cancelled = on_pool!(&self.database, pool => {
            sqlx::query(
                "UPDATE cluster_shards SET handoff = 'active', target = NULL, changed_at_ms = $3 \
                 WHERE shard = $1 AND epoch = $2 AND handoff = 'draining'",
            )
            .bind(shard)
            .bind(epoch)
            .bind(now.unix_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(cancelled == 1)
    }
}
