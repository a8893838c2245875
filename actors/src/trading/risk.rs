//! The risk monitor: a consumer group over the accounts' events that flags every account
//! whose position (total balance) in an asset exceeds its configured limit.
//!
//! The group's members ([`ConsumerMember`]s running a [`RiskHandler`]) share the log's
//! partitions; one account's events all land in one partition, so a member sees them in
//! sequence order. For each event the handler folds the account's totals per asset up to that
//! event ([`AccountEvent::balance_changes`], from its cache, or from the journal after a
//! partition moved to it; never the whole account, whose memory of commands it does not
//! need) and upserts a row of
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
use tradefloor_domain::account::{Account, AccountEvent};
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
    /// Most accounts whose totals a member keeps in memory; the least recently seen go first
    /// (an account seen again is folded from the journal).
    pub accounts_cached_max: usize,
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
            accounts_cached_max: 100_000,
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
    flags_matching(database, None, 0).await
}

/// The flags of `account` (every account if `None`) whose latest breach is after offset
/// `after`, by account and asset.
pub async fn flags_matching(
    database: &Database,
    account: Option<&str>,
    after: u64,
) -> Result<Vec<RiskFlag>, ReadModelError> {
    let mut sql = "SELECT account_id, asset, position, position_limit, first_offset, \
         last_offset, flagged_at FROM risk_flags WHERE last_offset > $1"
        .to_owned();
    let mut values = vec![SqlValue::from(to_sql(after, "offset")?)];
    if let Some(account) = account {
        sql.push_str(" AND account_id = $2");
        values.push(account.into());
    }
    sql.push_str(" ORDER BY account_id, asset");
    let rows = database.fetch(&sql, &values).await?;
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

/// An account's total balance per asset, as of one of its events: all the monitor checks.
#[derive(Debug, Default)]
struct Totals {
    totals: BTreeMap<Asset, i128>,
    /// The sequence of the last event folded in.
    sequence: u64,
}

impl Totals {
    fn apply(&mut self, event: &AccountEvent, sequence: u64) {
        for change in event.balance_changes() {
            *self.totals.entry(change.asset).or_default() += change.total;
        }
        self.sequence = sequence;
    }
}

/// Accounts' totals, at most a bound of them, the least recently used dropped first (about:
/// two generations, a lookup in the old one moving the entry to the young one, the old one
/// dropped whole when the young one is half the bound; every operation O(1)).
#[derive(Debug)]
struct TotalsCache {
    young: HashMap<String, Totals>,
    old: HashMap<String, Totals>,
    max: usize,
}

impl TotalsCache {
    fn new(max: usize) -> Self {
        assert!(max >= 2, "the cache holds two generations");
        Self {
            young: HashMap::new(),
            old: HashMap::new(),
            max,
        }
    }

    /// The account's totals, moved to the young generation.
    fn get_mut(&mut self, account_id: &str) -> Option<&mut Totals> {
        if !self.young.contains_key(account_id) {
            let totals = self.old.remove(account_id)?;
            self.insert(account_id.to_owned(), totals);
        }
        self.young.get_mut(account_id)
    }

    fn remove(&mut self, account_id: &str) -> Option<Totals> {
        self.young
            .remove(account_id)
            .or_else(|| self.old.remove(account_id))
    }

    fn insert(&mut self, account_id: String, totals: Totals) {
        if self.young.len() >= self.max / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(account_id, totals);
        debug_assert!(self.young.len() + self.old.len() <= self.max);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }
}

/// What each risk member does with an account's event. See the [module docs](self).
#[derive(Debug)]
pub struct RiskHandler {
    journal: Journal,
    config: RiskConfig,
    /// Accounts' totals folded so far (from the balance changes of their events, not by
    /// folding whole accounts: the monitor needs nothing else), bounded.
    accounts: TotalsCache,
}

impl RiskHandler {
    /// A handler reading `journal` (also where the flags go), with the limits of `config`.
    pub fn new(journal: Journal, config: RiskConfig) -> Self {
        Self {
            journal,
            accounts: TotalsCache::new(config.accounts_cached_max),
            config,
        }
    }

    /// Folds the totals of the account of `event` up to (and including) it.
    async fn fold(&mut self, account_id: &str, event: &StoredEvent) -> Result<(), ReadModelError> {
        let codec = <Account as Persistent>::codec();
        let cached = self
            .accounts
            .get_mut(account_id)
            .map(|totals| totals.sequence);
        // The next event of an account followed so far (the common case) needs no catching up.
        if cached.is_none_or(|sequence| sequence + 1 != event.sequence) {
            // A repeated event (after a partition moved back) folds again from the start.
            let start = match cached {
                Some(sequence) if sequence < event.sequence => {
                    self.accounts.remove(account_id).unwrap_or_default()
                }
                _ => Totals::default(),
            };
            let totals = self.catch_up(start, event).await?;
            self.accounts.insert(account_id.to_owned(), totals);
        }
        let totals = self
            .accounts
            .get_mut(account_id)
            .expect("caught up just above");
        if totals.sequence + 1 == event.sequence {
            totals.apply(&*codec.decode_shared(event)?, event.sequence);
        }
        Ok(())
    }

    /// Folds the account's stream from the journal until the event before `event`.
    async fn catch_up(
        &self,
        mut totals: Totals,
        event: &StoredEvent,
    ) -> Result<Totals, ReadModelError> {
        let codec = <Account as Persistent>::codec();
        while totals.sequence + 1 < event.sequence {
            let page = self
                .journal
                .read_stream(
                    &event.stream,
                    totals.sequence + 1,
                    self.journal.config().read_rows_max,
                )
                .await?;
            if page.is_empty() {
                return Err(ReadModelError::Corrupt(format!(
                    "{} ends at {}, before event {}",
                    event.stream, totals.sequence, event.sequence
                )));
            }
            for stored in page
                .iter()
                .filter(|stored| stored.sequence < event.sequence)
            {
                totals.apply(&*codec.decode_shared(stored)?, stored.sequence);
            }
        }
        Ok(totals)
    }
}

impl ConsumerHandler for RiskHandler {
    type Error = ReadModelError;

    async fn handle(&mut self, _partition: u32, event: &StoredEvent) -> Result<(), Self::Error> {
        let Some(account_id) = event
            .stream
            .strip_prefix(Account::KIND)
            .and_then(|rest| rest.strip_prefix('|'))
        else {
            return Ok(());
        };
        let account_id = account_id.to_owned();
        self.fold(&account_id, event).await?;
        let config = &self.config;
        let totals = self
            .accounts
            .get_mut(&account_id)
            .expect("folded just above");
        let breaches: Vec<(Asset, u64, u64)> = totals
            .totals
            .iter()
            .filter_map(|(asset, total)| {
                let limit = config.limit_of(asset)?;
                let total = u64::try_from(*total).ok()?;
                (total > limit).then_some((*asset, total, limit))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_its_bound_and_the_accounts_in_use() {
        let mut cache = TotalsCache::new(4);
        for k in 0..10_u64 {
            cache.insert(format!("a{k}"), Totals::default());
            // a0 is in use all along: it is never the one dropped.
            cache.get_mut("a0").expect("a0 stays").sequence = k;
            assert!(cache.len() <= 4, "{} accounts cached", cache.len());
        }
        assert_eq!(cache.get_mut("a0").map(|totals| totals.sequence), Some(9));
        assert!(
            cache.get_mut("a1").is_none(),
            "the least recently used went first"
        );
        assert!(cache.remove("a9").is_some());
    }
}
