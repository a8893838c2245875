//! The risk monitor: a consumer group over the accounts' events that flags every account
//! whose position (total balance) in an asset exceeds its configured limit.
//!
//! The group's members ([`ConsumerMember`]s running a [`RiskHandler`]) share the log's
//! partitions; one account's events all land in one partition, so a member sees them in
//! sequence order. For each event the handler folds the account up to that event (from its
//! cache, or from the journal after a partition moved to it) and upserts a row of
//! `risk_flags` for every asset over its limit. Delivery is at least once: the upsert is
//! idempotent (keyed by account and asset, a replayed event changes nothing), so a member
//! that dies before committing and the one that repeats its events leave the same table.
//!
//! Flags are sticky: an account that goes back under the limit stays flagged (an operator
//! clears it), and the row keeps the first offset that breached the limit and the latest
//! breaching position.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use tradefloor_domain::account::Account;
use tradefloor_domain::{Aggregate, Asset};
use tradefloor_persistence::{Database, Filter, Journal, StoredEvent};

use super::projections::sql::SqlValue;
use super::projections::{ReadModelError, from_sql, to_sql};
use crate::hosting::consumer_group::{ConsumerConfig, ConsumerHandler};
use crate::hosting::entity::Persistent;

/// The group's name (its key in the offset store).
pub const GROUP_NAME: &str = "trading.risk";
/// The flags table.
pub const FLAGS_TABLE: &str = "risk_flags";

pub(crate) const CREATE: &str = "CREATE TABLE IF NOT EXISTS risk_flags (\
     account_id TEXT NOT NULL, asset TEXT NOT NULL, position BIGINT NOT NULL, \
     position_limit BIGINT NOT NULL, first_offset BIGINT NOT NULL, \
     last_offset BIGINT NOT NULL, flagged_at BIGINT NOT NULL, \
     PRIMARY KEY (account_id, asset))";

const UPSERT: &str = "INSERT INTO risk_flags (account_id, asset, position, position_limit, \
     first_offset, last_offset, flagged_at) VALUES ($1, $2, $3, $4, $5, $5, $6) \
     ON CONFLICT (account_id, asset) DO UPDATE SET position = excluded.position, \
     position_limit = excluded.position_limit, last_offset = excluded.last_offset \
     WHERE risk_flags.last_offset < excluded.last_offset";

/// How the risk monitor runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RiskConfig {
    /// Members started with the exchange (more can be added at run time).
    pub members: usize,
    /// How many partitions the log is split into, fixed for the group's life.
    pub partition_count: u32,
    /// The limit on an account's total balance of any asset not in
    /// [`position_limits`](Self::position_limits), in minor units; `None`: unlimited.
    pub position_limit: Option<u64>,
    /// Limits per asset, in minor units (override [`position_limit`](Self::position_limit)).
    pub position_limits: BTreeMap<Asset, u64>,
    /// Most events a member reads at once.
    pub batch_events_max: usize,
    /// How long a caught-up member waits for a batch on the log bus before it reads the
    /// database anyway (see [`ConsumerConfig::poll_interval`]).
    pub poll_interval: Duration,
    /// The shortest time between two batches a member takes from the log bus (see
    /// [`ConsumerConfig::batch_interval_min`]).
    pub batch_interval_min: Duration,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            members: 2,
            partition_count: 8,
            position_limit: None,
            position_limits: BTreeMap::new(),
            batch_events_max: 256,
            poll_interval: Duration::from_millis(100),
            batch_interval_min: crate::hosting::log_tail::BATCH_INTERVAL_MIN_DEFAULT,
        }
    }
}

impl RiskConfig {
    /// The limit on `asset`, if any.
    pub fn limit_of(&self, asset: &Asset) -> Option<u64> {
        self.position_limits
            .get(asset)
            .copied()
            .or(self.position_limit)
    }

    /// The members' reading configuration: the accounts' events only.
    pub fn consumer(&self) -> ConsumerConfig {
        ConsumerConfig {
            filter: Filter::Kind(Account::KIND.to_owned()),
            batch_events_max: self.batch_events_max,
            poll_interval: self.poll_interval,
            batch_interval_min: self.batch_interval_min,
        }
    }
}

/// One flagged account and asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RiskFlag {
    /// The account.
    pub account_id: String,
    /// The asset over its limit.
    pub asset: String,
    /// The position at the latest breaching event, in minor units.
    pub position: u64,
    /// The limit it exceeded.
    pub position_limit: u64,
    /// The global offset of the first event that put the account over the limit.
    pub first_offset: u64,
    /// The global offset of the latest breaching event.
    pub last_offset: u64,
    /// When the first breaching event was recorded, microseconds since the epoch.
    pub flagged_at: i64,
}

/// Creates the flags table (idempotent).
pub async fn create_table(database: &Database) -> Result<(), ReadModelError> {
    database.execute(CREATE).await?;
    Ok(())
}

/// Every flag, by account then asset.
pub async fn flags(database: &Database) -> Result<Vec<RiskFlag>, ReadModelError> {
    let rows = database
        .fetch(
            "SELECT account_id, asset, position, position_limit, first_offset, last_offset, \
         flagged_at FROM risk_flags ORDER BY account_id, asset",
            &[],
        )
        .await?;
    rows.iter()
        .map(|row| {
            let text = |index: usize, what: &str| {
                row[index]
                    .text()
                    .map(str::to_owned)
                    .ok_or_else(|| ReadModelError::Corrupt(format!("{what} is {:?}", row[index])))
            };
            Ok(RiskFlag {
                account_id: text(0, "account_id")?,
                asset: text(1, "asset")?,
                position: from_sql(&row[2], "position")?,
                position_limit: from_sql(&row[3], "position_limit")?,
                first_offset: from_sql(&row[4], "first_offset")?,
                last_offset: from_sql(&row[5], "last_offset")?,
                flagged_at: row[6].integer().ok_or_else(|| {
                    ReadModelError::Corrupt(format!("flagged_at is {:?}", row[6]))
                })?,
            })
        })
        .collect()
}

/// What each risk member does with an account's event. See the [module docs](self).
#[derive(Debug)]
pub struct RiskHandler {
    journal: Journal,
    config: RiskConfig,
    /// Accounts folded so far, with the sequence they are folded up to.
    accounts: HashMap<String, (Account, u64)>,
}

impl RiskHandler {
    /// A handler reading `journal` (also where the flags go), with the limits of `config`.
    pub fn new(journal: Journal, config: RiskConfig) -> Self {
        Self {
            journal,
            config,
            accounts: HashMap::new(),
        }
    }

    /// The account of `event` folded up to (and including) it.
    async fn fold(
        &mut self,
        account_id: &str,
        event: &StoredEvent,
    ) -> Result<&Account, ReadModelError> {
        let (mut account, mut sequence) = match self.accounts.remove(account_id) {
            // A repeated event (after a partition moved back): fold again from the start.
            Some((_, sequence)) if sequence >= event.sequence => (Account::default(), 0),
            Some(cached) => cached,
            None => (Account::default(), 0),
        };
        let codec = <Account as Persistent>::codec();
        if sequence + 1 == event.sequence {
            account.apply(&codec.decode(event)?);
            sequence = event.sequence;
        }
        while sequence < event.sequence {
            let page = self
                .journal
                .read_stream(
                    &event.stream,
                    sequence + 1,
                    self.journal.config().read_rows_max,
                )
                .await?;
            if page.is_empty() {
                return Err(ReadModelError::Corrupt(format!(
                    "{} ends at {sequence}, before event {}",
                    event.stream, event.sequence
                )));
            }
            for stored in page
                .iter()
                .filter(|stored| stored.sequence <= event.sequence)
            {
                account.apply(&codec.decode(stored)?);
                sequence = stored.sequence;
            }
        }
        Ok(&self
            .accounts
            .entry(account_id.to_owned())
            .insert_entry((account, sequence))
            .into_mut()
            .0)
    }
}

impl ConsumerHandler for RiskHandler {
    type Error = ReadModelError;

    async fn handle(&mut self, _partition: u32, event: &StoredEvent) -> Result<(), Self::Error> {
        let Some(account_id) = event
            .stream
            .strip_prefix(&format!("{}|", Account::KIND))
            .map(str::to_owned)
        else {
            return Ok(());
        };
        let config = self.config.clone();
        let account = self.fold(&account_id, event).await?;
        let breaches: Vec<(Asset, u64, u64)> = account
            .balances()
            .iter()
            .filter_map(|(asset, balance)| {
                let limit = config.limit_of(asset)?;
                (balance.total.get() > limit).then_some((*asset, balance.total.get(), limit))
            })
            .collect();
        for (asset, position, limit) in breaches {
            let values: [SqlValue; 6] = [
                account_id.as_str().into(),
                asset.as_str().into(),
                to_sql(position, "position")?.into(),
                to_sql(limit, "position_limit")?.into(),
                to_sql(event.global_offset, "offset")?.into(),
                event.recorded_at.into(),
            ];
            self.journal.read_models().fetch(UPSERT, &values).await?;
            tracing::info!(account = %account_id, %asset, position, limit, "position over limit");
        }
        Ok(())
    }
}
