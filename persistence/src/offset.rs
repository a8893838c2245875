//! The offset store: where each projection or consumer-group member is in the global log, per
//! partition. A projection commits its read-model update and its offset in one transaction
//! ([`OffsetStore::commit_in`]), which makes it exactly-once.

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
    /// with [`Error::StaleOffset`] (a stale member after a reassignment).
    pub async fn commit_in(
        transaction: &mut Transaction,
        consumer: &str,
        partition: u32,
        position: u64,
    ) -> Result<(), Error> {
        match transaction {
            Transaction::Sqlite(transaction) => {
                crate::sqlite::commit_offset(
                    transaction,
                    consumer,
                    partition,
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
                    position,
                    now_micros(),
                )
                .await
            }
            Transaction::Writer(transaction) => {
                transaction.commit_offset(consumer, partition, position);
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
