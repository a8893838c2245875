//! Leader leases in the journal's database: how the cluster elects its one shard
//! coordinator (DESIGN §4).
//!
//! A lease is held by at most one holder at any instant, for a term that lasts until
//! `expires_at` unless the holder renews it. Every new term, whoever starts it, gets an
//! epoch one higher than the last: a fencing token. The coordinator passes it to the
//! journal's `claim_fence` (and writes under it), so a coordinator that lost its lease
//! without noticing (paused, partitioned, its clock behind) has every later write refused
//! by the journal instead of racing its successor.
//!
//! Each operation is one conditional statement under the database's row lock, so for any
//! interleaving of callers at most one holder's term covers any instant, as long as the
//! times they pass come from clocks that agree (a term is `[acquired_at, expires_at)` in
//! the callers' common time; a holder should stop acting a margin for skew before its
//! `expires_at`).

use std::time::Duration;

use tradefloor_persistence::Database;

use crate::error::{Error, from_db, to_db};
use crate::schema::{ensure_tables, on_pool};
use crate::time::Timestamp;

/// The lease the shard coordinator is elected by.
pub const SHARD_COORDINATOR_LEASE: &str = "shard-coordinator";

/// One holder's term of a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// Who holds it (a node id).
    pub holder: String,
    /// The term's fencing token: higher than every earlier term's.
    pub epoch: u64,
    /// When the term began (renewals keep it).
    pub acquired_at: Timestamp,
    /// When the term ends unless renewed.
    pub expires_at: Timestamp,
}

/// The columns of a lease row, in the order [`LeaseRow`] decodes them.
const LEASE_COLUMNS: &str = "holder, epoch, acquired_at_ms, expires_at_ms";

/// A lease row as both backends decode it.
type LeaseRow = (Option<String>, i64, i64, i64);

/// A lease row: the latest term, or what is left of it once released.
struct Stored {
    /// `None` once released.
    holder: Option<String>,
    epoch: u64,
    acquired_at: Timestamp,
    /// For a released term, when it was released.
    expires_at: Timestamp,
}

impl Stored {
    fn decode(row: LeaseRow) -> Result<Self, Error> {
        let (holder, epoch, acquired_at, expires_at) = row;
        let stored = Stored {
            holder,
            epoch: from_db(epoch, "epoch")?,
            acquired_at: Timestamp::from_unix_ms(acquired_at),
            expires_at: Timestamp::from_unix_ms(expires_at),
        };
        if stored.epoch == 0 {
            return Err(Error::Corrupt("a lease row with epoch 0".to_owned()));
        }
        Ok(stored)
    }

    /// The term, unless released.
    fn term(self) -> Option<Term> {
        Some(Term {
            holder: self.holder?,
            epoch: self.epoch,
            acquired_at: self.acquired_at,
            expires_at: self.expires_at,
        })
    }
}

/// A handle on one named lease; cheap to clone.
#[derive(Clone, Debug)]
pub struct Lease {
    database: Database,
    name: String,
}

impl Lease {
    /// Opens the lease `name` (e.g. [`SHARD_COORDINATOR_LEASE`]) in `database` (the
    /// journal's), creating the table if missing.
    pub async fn open(database: Database, name: &str) -> Result<Self, Error> {
        if name.is_empty() {
            return Err(Error::InvalidRequest(
                "a lease name must not be empty".to_owned(),
            ));
        }
        ensure_tables(&database).await?;
        Ok(Self {
            database,
            name: name.to_owned(),
        })
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes or renews the lease for `holder` at `now`, for `duration`.
    ///
    /// - Held by `holder` and not expired: renewed, same epoch, until `now + duration` (or
    ///   later, if a renewal with a later clock reading already said so; a term never
    ///   shrinks).
    /// - Free, released, or expired (even if `holder` held it last: its term is over and
    ///   whatever it decided since may have been missed): a new term for `holder` from
    ///   `now`, with the next epoch.
    /// - Held by another holder and not expired: [`Error::LeaseHeld`], with when it ends.
    pub async fn try_acquire(
        &self,
        holder: &str,
        now: Timestamp,
        duration: Duration,
    ) -> Result<Term, Error> {
        if holder.is_empty() || duration.is_zero() {
            return Err(Error::InvalidRequest(
                "a lease needs a holder and a positive duration".to_owned(),
            ));
        }
        let expires_at = now.checked_add(duration)?;
        // Renewal: the same holder, its term still running. Written once, used three times.
        let renewal = "cluster_leases.holder = excluded.holder \
                       AND cluster_leases.expires_at_ms > excluded.acquired_at_ms";
        let statement = format!(
            "INSERT INTO cluster_leases (lease, {LEASE_COLUMNS}) VALUES ($1, $2, 1, $3, $4) \
             ON CONFLICT (lease) DO UPDATE SET holder = excluded.holder, \
             epoch = CASE WHEN {renewal} THEN cluster_leases.epoch ELSE cluster_leases.epoch + 1 END, \
             acquired_at_ms = CASE WHEN {renewal} THEN cluster_leases.acquired_at_ms \
                 ELSE excluded.acquired_at_ms END, \
             expires_at_ms = CASE WHEN {renewal} AND cluster_leases.expires_at_ms > excluded.expires_at_ms \
                 THEN cluster_leases.expires_at_ms ELSE excluded.expires_at_ms END \
             WHERE cluster_leases.expires_at_ms <= excluded.acquired_at_ms \
                 OR cluster_leases.holder = excluded.holder \
             RETURNING {LEASE_COLUMNS}"
        );
        let row: Option<LeaseRow> = on_pool!(&self.database, pool => {
            sqlx::query_as(&statement)
                .bind(&self.name)
                .bind(holder)
                .bind(now.unix_ms())
                .bind(expires_at.unix_ms())
                .fetch_optional(pool)
                .await?
        });
        if let Some(row) = row {
            let term = Stored::decode(row)?
                .term()
                .ok_or_else(|| Error::Corrupt("an acquired lease has no holder".to_owned()))?;
            assert_eq!(term.holder, holder);
            assert!(term.expires_at >= expires_at);
            return Ok(term);
        }
        // The condition failed: another term ran at `now`. Say whose, as read now; if it
        // has ended in between, `expires_at` is not after `now` and the caller may retry
        // at once.
        let stored = self
            .stored()
            .await?
            .ok_or_else(|| Error::Corrupt(format!("lease {} vanished", self.name)))?;
        Err(Error::LeaseHeld {
            lease: self.name.clone(),
            holder: stored.holder,
            epoch: stored.epoch,
            expires_at: stored.expires_at,
        })
    }

    /// Ends `term` at `now`, if it is still the lease's current term, so another holder
    /// need not wait for it to expire; the holder must stop acting as the holder before
    /// calling. Returns whether it was still current (false: it had expired and someone
    /// else, or a newer term of the same holder, took over, or it was released already).
    ///
    /// The term's end is recorded as `now`, so a caller whose clock reads earlier than the
    /// release cannot start an overlapping term.
    pub async fn release(&self, term: &Term, now: Timestamp) -> Result<bool, Error> {
        let epoch = to_db(term.epoch, "epoch")?;
        let released = on_pool!(&self.database, pool => {
            sqlx::query(
                "UPDATE cluster_leases SET holder = NULL, \
                 expires_at_ms = CASE WHEN expires_at_ms > $4 THEN $4 ELSE expires_at_ms END \
                 WHERE lease = $1 AND holder = $2 AND epoch = $3",
            )
            .bind(&self.name)
            .bind(&term.holder)
            .bind(epoch)
            .bind(now.unix_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(released == 1)
    }

    /// The term in force at `now`, if any.
    pub async fn current(&self, now: Timestamp) -> Result<Option<Term>, Error> {
        Ok(self
            .stored()
            .await?
            .and_then(Stored::term)
            .filter(|term| term.expires_at > now))
    }

    /// The latest epoch handed out (0 if the lease was never taken), whether or not its
    /// term is still running: what a new holder's epoch must exceed.
    pub async fn epoch(&self) -> Result<u64, Error> {
        Ok(self.stored().await?.map_or(0, |stored| stored.epoch))
    }

    /// The terms in force at `now` of every lease whose name starts with `prefix`, by lease
    /// name (one read, for a node balancing many leases).
    pub async fn terms_with_prefix(
        database: &Database,
        prefix: &str,
        now: Timestamp,
    ) -> Result<Vec<(String, Term)>, Error> {
        let statement = format!(
            "SELECT lease, {LEASE_COLUMNS} FROM cluster_leases \
             WHERE substr(lease, 1, $1) = $2 ORDER BY lease"
        );
        let length = i32::try_from(prefix.len())
            .map_err(|_| Error::InvalidRequest("lease prefix too long".to_owned()))?;
        let rows: Vec<(String, Option<String>, i64, i64, i64)> = on_pool!(database, pool => {
            sqlx::query_as(&statement)
                .bind(length)
                .bind(prefix)
                .fetch_all(pool)
                .await?
        });
        let mut terms = Vec::new();
        for (name, holder, epoch, acquired_at, expires_at) in rows {
            let stored = Stored::decode((holder, epoch, acquired_at, expires_at))?;
            if let Some(term) = stored.term().filter(|term| term.expires_at > now) {
                terms.push((name, term));
            }
        }
        Ok(terms)
    }

    /// The stored row, if the lease was ever taken.
    async fn stored(&self) -> Result<Option<Stored>, Error> {
        let statement = format!("SELECT {LEASE_COLUMNS} FROM cluster_leases WHERE lease = $1");
        let row: Option<LeaseRow> = on_pool!(&self.database, pool => {
            sqlx::query_as(&statement)
                .bind(&self.name)
                .fetch_optional(pool)
                .await?
        });
        row.map(Stored::decode).transpose()
    }
}
