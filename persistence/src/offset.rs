//! The offset store: where each projection or consumer-group member is in the global log, per
//! partition. A projection commits its read-model update and its offset in one transaction
//! ([`OffsetStore::commit_in`]), which makes it exactly-once.

use crate::backend::Advance;
use crate::database::{Database, Transaction};
use crate::error::Error;
use crate::writer::now_micros;

/// Loads and commits consumer positions.
#[derive(Clone, Debug)]
pub struct OffsetStore {
    database: Database,
}

impl OffsetStore {
    /// A store on `database`.
    pub fn new(database: Database) -> Self {
        Self { database }
    }

    /// The position of `consumer` on `partition`: the last offset it has processed (0 if it
    /// never committed).
    pub async fn load(&self, consumer: &str, partition: u32) -> Result<u64, Error> {
        let position = match &self.database {
            Database::Sqlite(pool) => {
                crate::sqlite::load_offset(&mut *pool.acquire().await?, consumer, partition).await?
            }
            Database::Postgres(pool) => {
                crate::postgres::load_offset(&mut *pool.acquire().await?, consumer, partition)
                    .await?
            }
        };
        Ok(position.unwrap_or(0))
    }

    /// Commits a position on its own.
    pub async fn commit(&self, consumer: &str, partition: u32, position: u64) -> Result<(), Error> {
        let mut transaction = self.database.begin().await?;
        Self::commit_in(&mut transaction, consumer, partition, position).await?;
        transaction.commit().await
    }

    /// Commits a position inside `transaction`, next to the read-model writes made in it:
    /// both become durable together or not at all. Moving a position backwards is refused
    /// with [`Error::StaleOffset`] (a stale member after a reassignment). For consumers
    /// whose writes are idempotent (a repeated event changes nothing).
    pub async fn commit_in(
        transaction: &mut Transaction,
        consumer: &str,
        partition: u32,
        position: u64,
    ) -> Result<(), Error> {
        Self::write_in(transaction, consumer, partition, None, position).await
    }

    /// Moves a position to `position` inside `transaction`, as [`commit_in`](Self::commit_in)
    /// does, but only as `advance` says: from `advance.from` (the position the caller read or
    /// last committed), by a holder of lease epoch `advance.epoch` no older than the last
    /// committer's. Otherwise [`Error::OffsetFenced`] (a holder with a later epoch committed:
    /// the caller is stale and must stop) or [`Error::StaleOffset`] (another holder moved it:
    /// start again from the stored offset), and the caller rolls the transaction back. For
    /// read models whose writes add up (balances, candles): two holders of one consumer
    /// that applied the same events cannot both commit them.
    pub async fn advance_in(
        transaction: &mut Transaction,
        consumer: &str,
        partition: u32,
        advance: Advance,
        position: u64,
    ) -> Result<(), Error> {
        Self::write_in(transaction, consumer, partition, Some(advance), position).await
    }

    /// The position of `consumer` on `partition` and the lease epoch it was committed at
    /// (both 0 if it never committed).
    pub async fn load_with_epoch(
        &self,
        consumer: &str,
        partition: u32,
    ) -> Result<(u64, u64), Error> {
        let stored = match &self.database {
            Database::Sqlite(pool) => {
                crate::sqlite::load_offset_epoch(&mut *pool.acquire().await?, consumer, partition)
                    .await?
            }
            Database::Postgres(pool) => {
                crate::postgres::load_offset_epoch(&mut *pool.acquire().await?, consumer, partition)
                    .await?
            }
        };
        Ok(stored.unwrap_or((0, 0)))
    }

    async fn write_in(
        transaction: &mut Transaction,
        consumer: &str,
        partition: u32,
        advance: Option<Advance>,
        position: u64,
    ) -> Result<(), Error> {
        match transaction {
            Transaction::Sqlite(transaction) => {
                crate::sqlite::commit_offset(
                    transaction,
                    consumer,
                    partition,
                    advance,
                    position,
                    now_micros(),
                )
                .await
            }
            Transaction::Postgres(transaction) => {
                crate::postgres::commit_offset(
                    transaction,
                    consumer,
                    partition,
                    advance,
                    position,
                    now_micros(),
                )
                .await
            }
            Transaction::Writer(transaction) => {
                transaction.commit_offset(consumer, partition, advance, position);
                Ok(())
            }
        }
    }

    /// Forgets a consumer's position on `partition` inside `transaction`, so it starts again
    /// from offset 0: for rebuilding a read model, together with emptying it.
    pub async fn reset_in(
        transaction: &mut Transaction,
        consumer: &str,
        partition: u32,
    ) -> Result<(), Error> {
        transaction
            .execute(
                "DELETE FROM offsets WHERE consumer = $1 AND partition = $2",
                &[consumer.into(), i64::from(partition).into()],
            )
            .await
    }
}
