//! Slots for generated ids: each member of a cluster generates order ids in a slot of its own
//! (ids congruent to the slot modulo the number of slots), so two members generating ids in
//! the same microsecond never pick the same one. A slot is claimed at join in
//! `cluster_id_slots` (slot and node id both unique) and kept across restarts; when every
//! slot is taken, one held by a node declared down is taken over (a down node that comes
//! back claims another).

use tradefloor_persistence::Database;

use crate::error::Error;
use crate::schema::{ensure_tables, on_pool};

/// The slot of `node_id` among `slots`: the one it holds, a free one, or one a down node
/// held. Refused when every slot is held by a node that is not down.
pub async fn claim_id_slot(database: &Database, node_id: &str, slots: u32) -> Result<u32, Error> {
    ensure_tables(database).await?;
    // Each round either succeeds or saw another node take a slot: at most `slots` rounds.
    for _ in 0..=slots {
        if let Some(slot) = held(database, node_id).await? {
            return Ok(slot);
        }
        let taken = taken(database).await?;
        let claimed = match (0..slots).find(|slot| !taken.contains(slot)) {
            Some(free) => take_free(database, node_id, free).await?,
            None => match take_over(database, node_id).await? {
                Some(slot) => Some(slot),
                None => {
                    return Err(Error::Misconfigured(format!(
                        "every one of the cluster's {slots} id slots is held by a member that \
                         is not down: {node_id} cannot join"
                    )));
                }
            },
        };
        if let Some(slot) = claimed {
            return Ok(slot);
        }
    }
    Err(Error::Misconfigured(format!(
        "{node_id} could not claim an id slot: other nodes kept taking them"
    )))
}

fn to_slot(value: i64) -> Result<u32, Error> {
    u32::try_from(value).map_err(|_| Error::Corrupt(format!("id slot {value}")))
}

async fn held(database: &Database, node_id: &str) -> Result<Option<u32>, Error> {
    let slot: Option<i64> = on_pool!(database, pool => {
        sqlx::query_scalar("SELECT slot FROM cluster_id_slots WHERE node_id = $1")
            .bind(node_id)
            .fetch_optional(pool)
            .await?
    });
    slot.map(to_slot).transpose()
}

async fn taken(database: &Database) -> Result<Vec<u32>, Error> {
    let slots: Vec<i64> = on_pool!(database, pool => {
        sqlx::query_scalar("SELECT slot FROM cluster_id_slots")
            .fetch_all(pool)
            .await?
    });
    slots.into_iter().map(to_slot).collect()
}

/// Claims `slot` if nobody holds it (nor a slot for `node_id`) meanwhile.
async fn take_free(database: &Database, node_id: &str, slot: u32) -> Result<Option<u32>, Error> {
    let claimed: Option<i64> = on_pool!(database, pool => {
        sqlx::query_scalar(
            "INSERT INTO cluster_id_slots (slot, node_id) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING RETURNING slot",
        )
        .bind(i64::from(slot))
        .bind(node_id)
        .fetch_optional(pool)
        .await?
    });
    claimed.map(to_slot).transpose()
}

/// Takes over the lowest slot held by a node declared down, if any.
async fn take_over(database: &Database, node_id: &str) -> Result<Option<u32>, Error> {
    let claimed: Option<i64> = on_pool!(database, pool => {
        sqlx::query_scalar(
            "UPDATE cluster_id_slots SET node_id = $1 WHERE slot = (\
                 SELECT slots.slot FROM cluster_id_slots AS slots \
                 JOIN cluster_members AS members ON members.node_id = slots.node_id \
                 WHERE members.status = 'down' ORDER BY slots.slot LIMIT 1) \
             AND node_id IN (SELECT node_id FROM cluster_members WHERE status = 'down') \
             RETURNING slot",
        )
        .bind(node_id)
        .fetch_optional(pool)
        .await?
    });
    claimed.map(to_slot).transpose()
}
