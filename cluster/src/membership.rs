//! The membership table: which nodes are in the cluster, where to reach them, and whether
//! they are alive (the Orleans membership-table model), kept in the journal's database.
//!
//! A node's life, per incarnation: `joining` → `up` → `leaving` → `down`, never backwards.
//! A node that restarts joins again under the same id with a higher incarnation, which
//! supersedes the old one. Liveness is a heartbeat timestamp the node refreshes; any member
//! may declare a node silent past the failure timeout `down`, and a node that finds itself
//! `down` (or superseded) learns it from the typed [`Error::Evicted`] and stops serving.
//!
//! Every change is one conditional statement (compare-and-set on node id, incarnation and
//! status, under the database's row lock), so of two nodes racing over a row exactly one
//! wins: a node is declared down once, and a heartbeat either lands before the declaration
//! (and the node is not down) or is refused after it.

use tradefloor_persistence::Database;

use crate::error::{Error, Eviction, from_db, to_db};
use crate::schema::{ensure_tables, on_pool};
use crate::time::Timestamp;

/// A member's status; it only moves forward within one incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// Registered, not yet serving (e.g. waiting for shards).
    Joining,
    /// Serving.
    Up,
    /// Handing its shards off before going away; still heartbeating.
    Leaving,
    /// Gone: departed, or declared dead. Its incarnation never serves again.
    Down,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Joining => "joining",
            Status::Up => "up",
            Status::Leaving => "leaving",
            Status::Down => "down",
        }
    }

    fn parse(stored: &str) -> Result<Self, Error> {
        Ok(match stored {
            "joining" => Status::Joining,
            "up" => Status::Up,
            "leaving" => Status::Leaving,
            "down" => Status::Down,
            other => return Err(Error::Corrupt(format!("unknown member status {other:?}"))),
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A node's identity and addresses, as it announces them when joining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// The node's stable id (`--node-id`), the same across restarts.
    pub node_id: String,
    /// Where its HTTP API listens.
    pub http_addr: String,
    /// Where its cluster (remoting) endpoint listens.
    pub cluster_addr: String,
}

/// One row of the membership table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The node and its addresses.
    pub node: Node,
    /// Where it is in its life.
    pub status: Status,
    /// Which run of the node this is: 1 at the first join, one more at every join after.
    pub incarnation: u64,
    /// The latest heartbeat (or transition) it wrote.
    pub last_heartbeat: Timestamp,
    /// When this incarnation joined.
    pub joined_at: Timestamp,
}

/// The columns of a member, in the order [`MemberRow`] decodes them.
const MEMBER_COLUMNS: &str =
    "node_id, http_addr, cluster_addr, status, incarnation, last_heartbeat_ms, joined_at_ms";

/// A member row as both backends decode it.
type MemberRow = (String, String, String, String, i64, i64, i64);

fn member_from_row(row: MemberRow) -> Result<Member, Error> {
    let (node_id, http_addr, cluster_addr, status, incarnation, last_heartbeat, joined_at) = row;
    Ok(Member {
        node: Node {
            node_id,
            http_addr,
            cluster_addr,
        },
        status: Status::parse(&status)?,
        incarnation: from_db(incarnation, "incarnation")?,
        last_heartbeat: Timestamp::from_unix_ms(last_heartbeat),
        joined_at: Timestamp::from_unix_ms(joined_at),
    })
}

/// A status change a node asks for itself: allowed from `from`, to `to` (or no change, for
/// a heartbeat). Each `from` is every status up to some point of the life, so once a change
/// is refused for its status it stays refused: the incarnation's status cannot come back.
struct Transition {
    operation: &'static str,
    from: &'static [Status],
    to: Option<Status>,
}

const MARK_UP: Transition = Transition {
    operation: "mark up",
    // `up` too, so a retried `mark_up` whose reply was lost succeeds again.
    from: &[Status::Joining, Status::Up],
    to: Some(Status::Up),
};

const HEARTBEAT: Transition = Transition {
    operation: "heartbeat",
    from: &[Status::Joining, Status::Up, Status::Leaving],
    to: None,
};

const LEAVE: Transition = Transition {
    operation: "leave",
    from: &[Status::Joining, Status::Up, Status::Leaving],
    to: Some(Status::Leaving),
};

const DEPART: Transition = Transition {
    operation: "depart",
    // `down` too: a node departing after it was declared dead wants that very outcome.
    from: &[Status::Joining, Status::Up, Status::Leaving, Status::Down],
    to: Some(Status::Down),
};

/// The membership table of one cluster; cheap to clone.
#[derive(Clone, Debug)]
pub struct Membership {
    database: Database,
}

impl Membership {
    /// Opens the table in `database` (the journal's), creating it if missing.
    pub async fn open(database: Database) -> Result<Self, Error> {
        ensure_tables(&database).await?;
        Ok(Self { database })
    }

    /// Registers `node` as `joining` at `now`, as a new incarnation: 1 for a node id never
    /// seen, one more than the stored one for a node that ran before (its old incarnation,
    /// whatever its status, is superseded and refused from now on).
    pub async fn join(&self, node: &Node, now: Timestamp) -> Result<Member, Error> {
        if node.node_id.is_empty() {
            return Err(Error::InvalidRequest(
                "a node id must not be empty".to_owned(),
            ));
        }
        let statement = format!(
            "INSERT INTO cluster_members ({MEMBER_COLUMNS}) VALUES ($1, $2, $3, 'joining', 1, $4, $4) \
             ON CONFLICT (node_id) DO UPDATE SET http_addr = excluded.http_addr, \
             cluster_addr = excluded.cluster_addr, status = 'joining', \
             incarnation = cluster_members.incarnation + 1, \
             last_heartbeat_ms = excluded.last_heartbeat_ms, joined_at_ms = excluded.joined_at_ms \
             RETURNING {MEMBER_COLUMNS}"
        );
        let row: MemberRow = on_pool!(&self.database, pool => {
            sqlx::query_as(&statement)
                .bind(&node.node_id)
                .bind(&node.http_addr)
                .bind(&node.cluster_addr)
                .bind(now.unix_ms())
                .fetch_one(pool)
                .await?
        });
        let member = member_from_row(row)?;
        assert_eq!(member.status, Status::Joining);
        assert!(member.incarnation >= 1);
        Ok(member)
    }

    /// Moves the node's incarnation from `joining` to `up` (serving); repeating it is
    /// harmless. Refused with [`Error::Evicted`] if the incarnation is down or superseded,
    /// [`Error::InvalidTransition`] if it is already leaving.
    pub async fn mark_up(
        &self,
        node_id: &str,
        incarnation: u64,
        now: Timestamp,
    ) -> Result<Member, Error> {
        self.transition(node_id, incarnation, &MARK_UP, now).await
    }

    /// Records that the node's incarnation is alive at `now` (a heartbeat never moves the
    /// stored time backwards). Refused with [`Error::Evicted`] if it was declared down or
    /// superseded: the node must then stop serving.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        incarnation: u64,
        now: Timestamp,
    ) -> Result<Member, Error> {
        self.transition(node_id, incarnation, &HEARTBEAT, now).await
    }

    /// Moves the node's incarnation to `leaving`: it hands its shards off while it keeps
    /// heartbeating; repeating it is harmless. Refused with [`Error::Evicted`] if it is
    /// down or superseded.
    pub async fn leave(
        &self,
        node_id: &str,
        incarnation: u64,
        now: Timestamp,
    ) -> Result<Member, Error> {
        self.transition(node_id, incarnation, &LEAVE, now).await
    }

    /// Moves the node's incarnation to `down` once it has handed everything off, so nobody
    /// waits out the failure timeout; repeating it is harmless. Refused with
    /// [`Error::Evicted`] only if the incarnation is superseded or unknown.
    pub async fn depart(
        &self,
        node_id: &str,
        incarnation: u64,
        now: Timestamp,
    ) -> Result<Member, Error> {
        self.transition(node_id, incarnation, &DEPART, now).await
    }

    /// Declares `down`, atomically, every `joining`, `up` or `leaving` node whose last
    /// heartbeat is more than `timeout` before `now`, and returns them (by node id). Of
    /// several members calling this at once, each dead node is returned to exactly one.
    pub async fn declare_dead(
        &self,
        timeout: std::time::Duration,
        now: Timestamp,
    ) -> Result<Vec<Member>, Error> {
        let cutoff = now.checked_sub(timeout)?;
        let statement = format!(
            "UPDATE cluster_members SET status = 'down' \
             WHERE status IN ('joining', 'up', 'leaving') AND last_heartbeat_ms < $1 \
             RETURNING {MEMBER_COLUMNS}"
        );
        let rows: Vec<MemberRow> = on_pool!(&self.database, pool => {
            sqlx::query_as(&statement).bind(cutoff.unix_ms()).fetch_all(pool).await?
        });
        let mut dead = rows
            .into_iter()
            .map(member_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        dead.sort_by(|a, b| a.node.node_id.cmp(&b.node.node_id));
        Ok(dead)
    }

    /// Every member, of every status, by node id.
    pub async fn members(&self) -> Result<Vec<Member>, Error> {
        let statement = format!("SELECT {MEMBER_COLUMNS} FROM cluster_members ORDER BY node_id");
        let rows: Vec<MemberRow> = on_pool!(&self.database, pool => {
            sqlx::query_as(&statement).fetch_all(pool).await?
        });
        rows.into_iter().map(member_from_row).collect()
    }

    /// The member with `node_id`, if it ever joined.
    pub async fn member(&self, node_id: &str) -> Result<Option<Member>, Error> {
        let statement = format!("SELECT {MEMBER_COLUMNS} FROM cluster_members WHERE node_id = $1");
        let row: Option<MemberRow> = on_pool!(&self.database, pool => {
            sqlx::query_as(&statement).bind(node_id).fetch_optional(pool).await?
        });
        row.map(member_from_row).transpose()
    }

    /// Applies `transition` if the row still holds `incarnation` in one of its `from`
    /// statuses, refreshing the heartbeat; otherwise says why not.
    async fn transition(
        &self,
        node_id: &str,
        incarnation: u64,
        transition: &Transition,
        now: Timestamp,
    ) -> Result<Member, Error> {
        let from = transition
            .from
            .iter()
            .map(|status| format!("'{}'", status.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        // The statuses are this module's constants, never input, so they may be SQL text.
        let statement = format!(
            "UPDATE cluster_members SET status = COALESCE($4, status), \
             last_heartbeat_ms = CASE WHEN last_heartbeat_ms < $3 THEN $3 ELSE last_heartbeat_ms END \
             WHERE node_id = $1 AND incarnation = $2 AND status IN ({from}) \
             RETURNING {MEMBER_COLUMNS}"
        );
        let stored_incarnation = to_db(incarnation, "incarnation")?;
        let to = transition.to.map(Status::as_str);
        let row: Option<MemberRow> = on_pool!(&self.database, pool => {
            sqlx::query_as(&statement)
                .bind(node_id)
                .bind(stored_incarnation)
                .bind(now.unix_ms())
                .bind(to)
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some(row) => {
                let member = member_from_row(row)?;
                assert_eq!(member.incarnation, incarnation);
                assert!(member.last_heartbeat >= now);
                Ok(member)
            }
            None => Err(self.refusal(node_id, incarnation, transition).await),
        }
    }

    /// Why `transition` of `node_id`'s `incarnation` was refused, read after the refusal.
    /// Statuses only move forward and every `from` is a prefix of the life, so what is read
    /// still explains the refusal even if the row changed in between.
    async fn refusal(&self, node_id: &str, incarnation: u64, transition: &Transition) -> Error {
        let member = match self.member(node_id).await {
            Ok(member) => member,
            Err(error) => return error,
        };
        let evicted = |reason| Error::Evicted {
            node_id: node_id.to_owned(),
            incarnation,
            reason,
        };
        match member {
            None => evicted(Eviction::Unknown),
            Some(member) if member.incarnation > incarnation => evicted(Eviction::Superseded {
                current: member.incarnation,
            }),
            Some(member) if member.incarnation < incarnation => Error::InvalidRequest(format!(
                "node {node_id} has incarnation {}; {incarnation} was never issued",
                member.incarnation
            )),
            Some(member) if member.status == Status::Down => evicted(Eviction::Down),
            Some(member) => {
                assert!(!transition.from.contains(&member.status));
                Error::InvalidTransition {
                    node_id: node_id.to_owned(),
                    incarnation,
                    status: member.status,
                    operation: transition.operation,
                }
            }
        }
    }
}
