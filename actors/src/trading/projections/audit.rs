//! The audit log: one row per event of the global log, in offset order.

use std::sync::Arc;

use tradefloor_persistence::{Filter, StoredEvent, Transaction};

use super::sql::{self, SqlValue};
use super::{ReadModelError, begin_batch, to_sql};
use crate::hosting::projection::Projection;

/// The projection's name (its offset-store key).
pub const NAME: &str = "trading.audit";
/// The audit table.
pub const AUDIT_TABLE: &str = "trading_audit";

pub(crate) const CREATE: &[&str] = &["CREATE TABLE IF NOT EXISTS trading_audit (\
     global_offset BIGINT PRIMARY KEY, stream TEXT NOT NULL, kind TEXT NOT NULL, \
     sequence BIGINT NOT NULL, name TEXT NOT NULL, recorded_at BIGINT NOT NULL, \
     effective_at BIGINT NOT NULL)"];

const COLUMNS: [&str; 7] = [
    "global_offset",
    "stream",
    "kind",
    "sequence",
    "name",
    "recorded_at",
    "effective_at",
];

/// Writes every event's envelope (not its payload) to `trading_audit`.
#[derive(Debug, Default)]
pub struct AuditProjection;

impl Projection for AuditProjection {
    type Error = ReadModelError;

    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        Filter::All
    }

    async fn apply(
        &mut self,
        transaction: &mut Transaction,
        events: &[Arc<StoredEvent>],
    ) -> Result<(), ReadModelError> {
        begin_batch(transaction, NAME).await?;
        let rows = events
            .iter()
            .map(|event| {
                Ok(vec![
                    to_sql(event.global_offset, "global offset")?.into(),
                    event.stream.as_str().into(),
                    event.kind.as_str().into(),
                    to_sql(event.sequence, "sequence")?.into(),
                    event.name.as_str().into(),
                    event.recorded_at.into(),
                    event.effective_at.into(),
                ])
            })
            .collect::<Result<Vec<Vec<SqlValue>>, ReadModelError>>()?;
        sql::insert_rows(transaction, AUDIT_TABLE, &COLUMNS, &rows, "").await?;
        Ok(())
    }

    async fn reset(&mut self, transaction: &mut Transaction) -> Result<(), ReadModelError> {
        transaction
            .execute("DELETE FROM trading_audit", &[])
            .await?;
        Ok(())
    }
}
