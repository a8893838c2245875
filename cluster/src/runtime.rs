//! A node's life in the cluster: it joins (seeds dialled, a row in the membership table),
//! heartbeats, sweeps dead members, watches its connections to the others, competes for the
//! coordinator's lease, balances the log's consumers over the nodes, and makes its shards
//! match the shard table.
//!
//! - **Coordinator** (the holder of [`SHARD_COORDINATOR_LEASE`]): every round it plans
//!   ([`crate::plan`]) from the members and the shard table and applies the plan, each step
//!   a conditional update, so a deposed coordinator's late write changes nothing.
//! - **Every node** reconciles: a shard the table gives it is started after its fence is
//!   claimed at the row's epoch (from then on the journal refuses the previous owner); a
//!   shard it must hand off is stopped cleanly (commands accepted are persisted and answered)
//!   and then marked released, so the coordinator gives it to its target; calls meanwhile
//!   wait in the routing loop (bounded) and go on to the new owner.
//! - **Partitions**: a node that has reached fewer than a majority of the other live members
//!   for the failure timeout (an even split keeps the side with the smallest node id) leaves
//!   the cluster on its own: marked down, it stops serving and the process exits; the others
//!   take its shards under new epochs, so nothing it still tries to write is accepted.
//! - **Consumers of the log** are units spread over the nodes like shards: each service (the
//!   book feed, every read model) and each partition of the risk monitor's consumer group has
//!   a lease (`unit:{name}`); a node holds at most its share (units ÷ up members, rounded up),
//!   takes free or expired units up to it and hands extras back (a service stopped, a
//!   partition finished, committed and released by its member) before releasing their
//!   leases, so a joining node gets its share and a dead node's units are taken over once
//!   their leases expire.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tradefloor_actors::routing::remote::{Location, Remoting};
use tradefloor_actors::trading::{Exchange, SERVICES};
use tradefloor_persistence::{Fence, Journal};

use crate::allocation::{Allocation, fence_key};
use crate::config::ClusterConfig;
use crate::error::Error;
use crate::lease::{Lease, SHARD_COORDINATOR_LEASE, Term};
use crate::membership::{Member, Membership, Node, Status};
use crate::plan::{Assignment, HandOff, Plan, plan};
use crate::remote::Endpoint;
use crate::time::Timestamp;

/// The prefix of the leases of the log's consumers spread over the nodes.
pub const UNIT_LEASE_PREFIX: &str = "unit:";

/// Limits of the node's cluster loops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// Heartbeats, failure timeout, leases.
    pub cluster: ClusterConfig,
    /// How often the coordinator plans and every node reconciles its shards.
    pub reconcile_interval: Duration,
    /// Hand-offs in flight at once over the cluster (a rebalance moves at most this many
    /// shards at a time).
    pub moves_max: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cluster: ClusterConfig::default(),
            reconcile_interval: Duration::from_millis(100),
            moves_max: 64,
        }
    }
}

/// Why a node stopped being a member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It left on request (drained) and departed.
    Left,
    /// The cluster declared it down, or it cut itself off in a partition: stop serving.
    Evicted(String),
}

/// A running cluster member. See the [module docs](self).
pub struct ClusterNode {
    inner: Arc<Inner>,
    tasks: Vec<JoinHandle<()>>,
}

struct Inner {
    node: Node,
    incarnation: u64,
    config: RuntimeConfig,
    membership: Membership,
    allocation: Allocation,
    coordinator: Lease,
    /// The lease of each of the log's consumers, by unit name.
    unit_leases: BTreeMap<String, Lease>,
    /// The risk-monitor partitions this node serves.
    risk_partitions: Mutex<BTreeSet<u32>>,
    journal: Journal,
    exchange: Arc<Exchange>,
    remoting: Arc<Remoting>,
    endpoint: Endpoint,
    /// Set once the node is no longer a member.
    exit: watch::Sender<Option<Exit>>,
    /// The up members the coordinator last finished evening the shards out for.
    balanced_for: Mutex<Option<BTreeSet<String>>>,
    /// Shards running here, with the epoch they run under.
    running: Mutex<BTreeMap<u32, u64>>,
    /// Whether this node holds the coordinator lease right now.
    leading: AtomicBool,
    /// When each peer was last connected (or first seen), for partition detection.
    peers_seen: Mutex<HashMap<String, Timestamp>>,
    /// This node's run of heartbeats the database took: when it began and when the last one
    /// was taken (see [`Inner::may_judge_others`]).
    heartbeats_taken: Mutex<Option<HeartbeatRun>>,
    /// Wakes the coordinator and the reconciler before their interval.
    wake: Notify,
}

/// A run of heartbeats without a gap (see [`Inner::may_judge_others`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HeartbeatRun {
    since: Timestamp,
    last: Timestamp,
}

impl HeartbeatRun {
    /// The run after a heartbeat taken at `taken`: `run` goes on unless the last heartbeat
    /// is more than half of `failure_timeout` ago.
    fn after(run: Option<HeartbeatRun>, taken: Timestamp, failure_timeout: Duration) -> Self {
        let gap_from = taken.checked_sub(failure_timeout / 2).ok();
        let since = match run {
            Some(run) if gap_from.is_none_or(|from| run.last >= from) => run.since,
            _ => taken,
        };
        HeartbeatRun { since, last: taken }
    }

    /// Whether the run has lasted `failure_timeout` at `now`.
    fn judges(self, now: Timestamp, failure_timeout: Duration) -> bool {
        now.checked_sub(failure_timeout)
            .is_ok_and(|judged_from| judged_from >= self.since)
    }
}

/// What [`ClusterNode::join`] needs.
pub struct Joining {
    /// This node's identity and addresses (the advertised cluster address).
    pub node: Node,
    /// Cluster addresses dialled first.
    pub seeds: Vec<String>,
    /// The loops' limits.
    pub config: RuntimeConfig,
    /// The journal (its database holds the cluster's tables).
    pub journal: Journal,
    /// The application on this node, started clustered.
    pub exchange: Arc<Exchange>,
    /// The node's routing.
    pub remoting: Arc<Remoting>,
    /// The node's remoting endpoint, listening already.
    pub endpoint: Endpoint,
}

impl ClusterNode {
    /// Joins the cluster: dials the seeds, registers a new incarnation, marks itself up and
    /// starts its loops.
    pub async fn join(joining: Joining) -> Result<Self, Error> {
        joining.config.cluster.validate()?;
        let database = joining.journal.database().clone();
        let membership = Membership::open(database.clone()).await?;
        let allocation = Allocation::open(database.clone()).await?;
        let coordinator = Lease::open(database.clone(), SHARD_COORDINATOR_LEASE).await?;
        let mut unit_leases = BTreeMap::new();
        for unit in units(&joining.exchange) {
            let name = format!("{UNIT_LEASE_PREFIX}{unit}");
            unit_leases.insert(unit, Lease::open(database.clone(), &name).await?);
        }
        let shard_count = joining.remoting.placement().shard_count();
        crate::settings::agree_shard_count(&database, shard_count).await?;
        if let Some(row) = allocation
            .assignments()
            .await?
            .into_iter()
            .find(|row| row.shard >= shard_count)
        {
            return Err(Error::Misconfigured(format!(
                "the cluster has shard {} but this node's trading.shard_count is {shard_count}",
                row.shard
            )));
        }
        authenticate(&joining, &membership).await?;
        let member = membership.join(&joining.node, Timestamp::now()).await?;
        membership
            .mark_up(&joining.node.node_id, member.incarnation, Timestamp::now())
            .await?;
        tracing::info!(
            node = %joining.node.node_id,
            incarnation = member.incarnation,
            "joined the cluster"
        );
        let inner = Arc::new(Inner {
            node: joining.node,
            incarnation: member.incarnation,
            config: joining.config,
            membership,
            allocation,
            coordinator,
            unit_leases,
            risk_partitions: Mutex::new(BTreeSet::new()),
            journal: joining.journal,
            exchange: joining.exchange,
            remoting: joining.remoting,
            endpoint: joining.endpoint,
            exit: watch::Sender::new(None),
            running: Mutex::new(BTreeMap::new()),
            balanced_for: Mutex::new(None),
            leading: AtomicBool::new(false),
            peers_seen: Mutex::new(HashMap::new()),
            heartbeats_taken: Mutex::new(None),
            wake: Notify::new(),
        });
        let tasks = vec![
            tokio::spawn(heartbeats(inner.clone())),
            tokio::spawn(reconciler(inner.clone())),
        ];
        Ok(Self { inner, tasks })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.node.node_id
    }

    /// Completes when the node is no longer a member, saying why.
    pub async fn exited(&self) -> Exit {
        let mut exit = self.inner.exit.subscribe();
        let exited = exit.wait_for(Option::is_some).await;
        match exited {
            Ok(exit) => exit.clone().expect("waited for it"),
            Err(_) => Exit::Evicted("the cluster loops stopped".to_owned()),
        }
    }

    /// The node's routing and remote calls.
    pub fn remoting(&self) -> &Arc<Remoting> {
        &self.inner.remoting
    }

    /// The membership table.
    pub fn membership(&self) -> &Membership {
        &self.inner.membership
    }

    /// The shard table.
    pub fn allocation(&self) -> &Allocation {
        &self.inner.allocation
    }

    /// The shards running on this node.
    pub fn running(&self) -> BTreeMap<u32, u64> {
        self.inner
            .running
            .lock()
            .expect("no panics under the lock")
            .clone()
    }

    /// How many of the log's consumers (services, risk partitions) run on this node.
    pub async fn units_running(&self) -> usize {
        let services = self.inner.exchange.running_services().await.len();
        services + self.inner.exchange.risk_partitions_held().len()
    }

    /// Whether this node coordinates the shards right now.
    pub fn is_coordinator(&self) -> bool {
        self.inner.leading.load(Ordering::Acquire)
    }

    /// Plans a rebalance of the current table (what the coordinator would do next round).
    pub async fn plan(&self) -> Result<Plan, Error> {
        let (assignments, up, leaving) = self.inner.view().await?;
        Ok(plan(
            &assignments,
            self.inner.remoting.placement().shard_count(),
            &up,
            &leaving,
            self.inner.config.moves_max,
        ))
    }

    /// A manual rebalance: plans a round and begins its hand-offs (at most `moves_max` in
    /// flight; ask again for the rest), each conditional on the shard's epoch, so it races
    /// safely with the coordinator, which completes them. Answers the plan.
    pub async fn rebalance(&self) -> Result<Plan, Error> {
        let planned = self.plan().await?;
        let now = Timestamp::now();
        for step in &planned.moves {
            self.inner
                .allocation
                .begin_move(step.shard, step.epoch, &step.to, now)
                .await?;
        }
        self.inner.wake.notify_waiters();
        Ok(planned)
    }

    /// Begins a graceful hand-off of `shard` to `target` (an up member). `false` if the shard
    /// is in a hand-off already or `target` owns it.
    pub async fn move_shard(&self, shard: u32, target: &str) -> Result<bool, Error> {
        let assignments = self.inner.allocation.assignments().await?;
        let Some(row) = assignments.iter().find(|row| row.shard == shard) else {
            return Err(Error::InvalidRequest(format!("no shard {shard}")));
        };
        let member = self.inner.membership.member(target).await?;
        if member.is_none_or(|member| member.status != Status::Up) {
            return Err(Error::InvalidRequest(format!(
                "{target} is not an up member"
            )));
        }
        let begun = self
            .inner
            .allocation
            .begin_move(shard, row.epoch, target, Timestamp::now())
            .await?;
        self.inner.wake.notify_waiters();
        Ok(begun)
    }

    /// Marks `node_id` leaving: the coordinator moves its shards away; the node departs once
    /// it owns none ([`ClusterNode::leave`] does all of it for this node).
    pub async fn ask_to_leave(&self, node_id: &str) -> Result<(), Error> {
        let Some(member) = self.inner.membership.member(node_id).await? else {
            return Err(Error::InvalidRequest(format!("no member {node_id}")));
        };
        self.inner
            .membership
            .leave(node_id, member.incarnation, Timestamp::now())
            .await?;
        self.inner.wake.notify_waiters();
        Ok(())
    }

    /// Leaves gracefully: marked leaving, the node's shards are handed off, its services
    /// stop, then it departs. Waits at most `timeout` for the hand-offs.
    pub async fn leave(&self, timeout: Duration) -> Result<(), Error> {
        let node_id = self.inner.node.node_id.clone();
        self.ask_to_leave(&node_id).await?;
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let owned = self
                .inner
                .allocation
                .assignments()
                .await?
                .iter()
                .filter(|row| row.owner == node_id)
                .count();
            let alone = self.inner.view().await?.1.is_empty();
            if (owned == 0 && self.running().is_empty()) || alone {
                break;
            }
            if tokio::time::Instant::now() >= until {
                tracing::warn!(owned, "leaving before every shard was handed off");
                break;
            }
            tokio::time::sleep(self.inner.config.reconcile_interval).await;
        }
        self.inner.hand_back_units().await?;
        self.inner
            .membership
            .depart(&node_id, self.inner.incarnation, Timestamp::now())
            .await?;
        self.inner.exit.send_replace(Some(Exit::Left));
        Ok(())
    }

    /// Stops the loops and the remoting endpoint (after [`leave`](Self::leave), or when
    /// evicted). Shards still running stop with the application.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.inner.endpoint.stop();
    }
}

/// The log's consumers spread over the nodes: every service, every risk partition.
fn units(exchange: &Exchange) -> Vec<String> {
    SERVICES
        .iter()
        .map(|service| (*service).to_owned())
        .chain((0..exchange.risk_partition_count()).map(|partition| format!("risk-{partition}")))
        .collect()
}

/// Dials the seeds and the members up already, and, if there are any, waits (up to the
/// failure timeout) until one connection authenticated: a node with another cluster secret
/// must not join the table and be given shards nobody can reach.
async fn authenticate(joining: &Joining, membership: &Membership) -> Result<(), Error> {
    let me = &joining.node.node_id;
    let others: Vec<Member> = membership
        .members()
        .await?
        .into_iter()
        .filter(|member| member.status == Status::Up && member.node.node_id != *me)
        .collect();
    let addresses: BTreeSet<&str> = joining
        .seeds
        .iter()
        .map(String::as_str)
        .chain(
            others
                .iter()
                .map(|member| member.node.cluster_addr.as_str()),
        )
        .filter(|address| *address != joining.node.cluster_addr)
        .collect();
    let timeout = joining.config.cluster.failure_timeout;
    for address in &addresses {
        // An address not up yet is no error: the membership table names the others.
        joining.endpoint.dial(address, timeout);
    }
    if others.is_empty() {
        return Ok(());
    }
    let until = tokio::time::Instant::now() + timeout;
    while joining.endpoint.connected().await?.is_empty() {
        if tokio::time::Instant::now() >= until {
            return Err(Error::Remoting(format!(
                "no connection to any of the {} members up authenticated within {timeout:?}: \
                 is this node's cluster secret the cluster's?",
                others.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn actors(error: tradefloor_actors::Error) -> Error {
    Error::Remoting(error.to_string())
}

impl Inner {
    /// The shard table, the members that may own shards, and those leaving.
    async fn view(&self) -> Result<(Vec<Assignment>, Vec<String>, Vec<String>), Error> {
        let members = self.membership.members().await?;
        let ids = |status: Status| -> Vec<String> {
            members
                .iter()
                .filter(|member| member.status == status)
                .map(|member| member.node.node_id.clone())
                .collect()
        };
        Ok((
            self.allocation.assignments().await?,
            ids(Status::Up),
            ids(Status::Leaving),
        ))
    }

    /// Whether this node owns no shard and runs none.
    async fn drained(&self) -> Result<bool, Error> {
        let me = &self.node.node_id;
        let owned = self
            .allocation
            .assignments()
            .await?
            .iter()
            .any(|row| row.owner == *me);
        Ok(!owned
            && self
                .running
                .lock()
                .expect("no panics under the lock")
                .is_empty())
    }

    fn evict(&self, reason: String) {
        tracing::error!(node = %self.node.node_id, %reason, "no longer a cluster member");
        self.exit.send_replace(Some(Exit::Evicted(reason)));
    }

    fn exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Records that a heartbeat was taken at `taken`, and says whether this node may declare
    /// others down: only once its own heartbeats have reached the database without a gap of
    /// half the failure timeout for a whole failure timeout. After the database was
    /// unreachable (or stalled), every node's last heartbeat is old; the first node back
    /// must give the others that long to heartbeat again, or a database restart would evict
    /// most of the cluster.
    fn may_judge_others(&self, taken: Timestamp) -> bool {
        let mut run = self
            .heartbeats_taken
            .lock()
            .expect("no panics under the lock");
        let next = HeartbeatRun::after(*run, taken, self.config.cluster.failure_timeout);
        *run = Some(next);
        next.judges(taken, self.config.cluster.failure_timeout)
    }

    /// One heartbeat round: liveness, sweep, connections, partition check, leases.
    async fn heartbeat(&self) -> Result<(), Error> {
        let now = Timestamp::now();
        let me = &self.node.node_id;
        match self.membership.heartbeat(me, self.incarnation, now).await {
            Ok(_) => {}
            Err(Error::Evicted { reason, .. }) => {
                self.evict(format!("refused by the membership table: {reason}"));
                return Ok(());
            }
            Err(error) => {
                *self
                    .heartbeats_taken
                    .lock()
                    .expect("no panics under the lock") = None;
                return Err(error);
            }
        }
        if self.may_judge_others(Timestamp::now()) {
            for dead in self
                .membership
                .declare_dead(self.config.cluster.failure_timeout, now)
                .await?
            {
                tracing::warn!(node = %dead.node.node_id, "declared down: silent past the failure timeout");
                self.wake.notify_waiters();
            }
        }
        let members = self.membership.members().await?;
        self.watch_peers(&members, now).await?;
        if self.exited() {
            return Ok(());
        }
        let duration = self.config.cluster.lease_duration;
        let leading = self
            .coordinator
            .try_acquire(me, now, duration)
            .await
            .is_ok();
        if leading != self.leading.swap(leading, Ordering::AcqRel) {
            tracing::info!(leading, "shard coordinator");
        }
        let leaving = members
            .iter()
            .any(|member| member.node.node_id == *me && member.status == Status::Leaving);
        if leaving && self.drained().await? {
            // Asked to leave (by an operator, through any node): drained, so depart.
            self.hand_back_units().await?;
            self.membership.depart(me, self.incarnation, now).await?;
            tracing::info!("drained: left the cluster");
            self.exit.send_replace(Some(Exit::Left));
            return Ok(());
        }
        let up = members
            .iter()
            .filter(|member| member.status == Status::Up)
            .count();
        self.balance_units(up, leaving, now).await
    }

    fn unit_lease(&self, unit: &str) -> &Lease {
        &self.unit_leases[unit]
    }

    /// Holds this node's share of the units (none when leaving): renews what it keeps, takes
    /// free units up to the share, runs exactly the units it keeps, and releases the lease of
    /// a unit handed back once it stopped here.
    async fn balance_units(&self, up: usize, leaving: bool, now: Timestamp) -> Result<(), Error> {
        let me = &self.node.node_id;
        let duration = self.config.cluster.lease_duration;
        let units: Vec<String> = self.unit_leases.keys().cloned().collect();
        let share = if leaving {
            0
        } else {
            units.len().div_ceil(up.max(1))
        };
        let terms: BTreeMap<String, Term> =
            Lease::terms_with_prefix(self.journal.database(), UNIT_LEASE_PREFIX, now)
                .await?
                .into_iter()
                .map(|(name, term)| (name[UNIT_LEASE_PREFIX.len()..].to_owned(), term))
                .collect();
        // Each unit kept, with the epoch of this node's term: its commits are fenced by it.
        let mut kept = BTreeMap::new();
        let mut handing_back = Vec::new();
        for unit in units
            .iter()
            .filter(|unit| terms.get(*unit).is_some_and(|term| term.holder == *me))
        {
            if kept.len() < share {
                if let Ok(term) = self.unit_lease(unit).try_acquire(me, now, duration).await {
                    kept.insert(unit.clone(), term.epoch);
                }
            } else {
                handing_back.push((unit.clone(), terms[unit].clone()));
            }
        }
        for unit in units.iter().filter(|unit| !terms.contains_key(*unit)) {
            if kept.len() >= share {
                break;
            }
            if let Ok(term) = self.unit_lease(unit).try_acquire(me, now, duration).await {
                tracing::info!(%unit, epoch = term.epoch, "consumer taken over");
                kept.insert(unit.clone(), term.epoch);
            }
        }
        self.run_units(&kept).await?;
        let held = self.exchange.risk_partitions_held();
        for (unit, term) in handing_back {
            let lease = self.unit_lease(&unit);
            let still_held = unit
                .strip_prefix("risk-")
                .and_then(|partition| partition.parse::<u32>().ok())
                .is_some_and(|partition| held.contains(&partition));
            if still_held {
                // Its member finishes and commits first: the lease fences the partition until then.
                let _ = lease.try_acquire(me, now, duration).await;
            } else {
                lease.release(&term, now).await?;
                tracing::info!(%unit, "consumer handed back");
            }
        }
        Ok(())
    }

    /// Runs exactly `kept` of the units on this node, each at its lease epoch.
    async fn run_units(&self, kept: &BTreeMap<String, u64>) -> Result<(), Error> {
        for service in SERVICES {
            if let Some(epoch) = kept.get(service) {
                self.exchange
                    .start_service(service, Some(*epoch))
                    .await
                    .map_err(actors)?;
            }
        }
        for service in self.exchange.running_services().await {
            if !kept.contains_key(&service) {
                self.exchange.stop_service(&service).await.map_err(actors)?;
            }
        }
        let partitions: BTreeSet<u32> = kept
            .keys()
            .filter_map(|unit| unit.strip_prefix("risk-")?.parse().ok())
            .collect();
        let mut serving = self
            .risk_partitions
            .lock()
            .expect("no panics under the lock");
        if *serving != partitions {
            self.exchange.serve_risk_partitions(&partitions);
            *serving = partitions;
        }
        Ok(())
    }

    /// Stops every unit here and releases their leases (leaving the cluster).
    async fn hand_back_units(&self) -> Result<(), Error> {
        self.run_units(&BTreeMap::new()).await?;
        self.exchange.stop_services().await.map_err(actors)?;
        let now = Timestamp::now();
        for (name, term) in
            Lease::terms_with_prefix(self.journal.database(), UNIT_LEASE_PREFIX, now).await?
        {
            let unit = &name[UNIT_LEASE_PREFIX.len()..];
            if term.holder == self.node.node_id
                && let Some(lease) = self.unit_leases.get(unit)
            {
                lease.release(&term, now).await?;
            }
        }
        Ok(())
    }

    /// Dials the members with a smaller node id (one connection per pair, dialled by the
    /// larger id), and leaves the cluster if this node has been cut off from most of it.
    async fn watch_peers(&self, members: &[Member], now: Timestamp) -> Result<(), Error> {
        let me = &self.node.node_id;
        let connected = self.endpoint.connected().await?;
        let live: Vec<&Member> = members
            .iter()
            .filter(|member| member.node.node_id != *me)
            .filter(|member| {
                matches!(
                    member.status,
                    Status::Joining | Status::Up | Status::Leaving
                )
            })
            .collect();
        for member in &live {
            if member.node.node_id < *me && !connected.contains(&member.node.node_id) {
                self.endpoint.dial(
                    &member.node.cluster_addr,
                    self.config.cluster.heartbeat_interval,
                );
            }
        }
        let timeout = self.config.cluster.failure_timeout;
        let cutoff = now.checked_sub(timeout)?;
        let reachable: BTreeSet<String> = {
            let mut seen = self.peers_seen.lock().expect("no panics under the lock");
            seen.retain(|node, _| live.iter().any(|member| member.node.node_id == *node));
            for member in &live {
                let id = &member.node.node_id;
                // A peer first seen now gets a full timeout to connect.
                let entry = seen.entry(id.clone()).or_insert(now);
                if connected.contains(id) {
                    *entry = now;
                }
            }
            seen.iter()
                .filter(|(_, last)| **last >= cutoff)
                .map(|(node, _)| node.clone())
                .collect()
        };
        let cluster = live.len() + 1;
        let reached = reachable.len() + 1;
        let smallest_here = reachable.iter().all(|node| node > me);
        let majority = reached * 2 > cluster || (reached * 2 == cluster && smallest_here);
        if !majority {
            tracing::error!(
                reached,
                cluster,
                "cut off from most of the cluster for the failure timeout: leaving"
            );
            self.membership.depart(me, self.incarnation, now).await?;
            self.evict("cut off from most of the cluster (partition)".to_owned());
        }
        Ok(())
    }

    /// One coordinator round: plan and apply, if this node still holds the lease (a
    /// deposed coordinator's plan may stand on a stale view; each step is conditional on the
    /// row's epoch besides).
    async fn coordinate(&self) -> Result<(), Error> {
        let term = self.coordinator.current(Timestamp::now()).await?;
        if term.is_none_or(|term| term.holder != self.node.node_id) {
            self.leading.store(false, Ordering::Release);
            return Ok(());
        }
        let (assignments, up, leaving) = self.view().await?;
        let shard_count = self.remoting.placement().shard_count();
        let mut round = plan(
            &assignments,
            shard_count,
            &up,
            &leaving,
            self.config.moves_max,
        );
        // Shards are evened out when the up members change (a join, a leave, a death), until
        // balanced, and on request; otherwise an operator's shard moves stand. Draining a
        // leaving node always goes on.
        let members: BTreeSet<String> = up.iter().cloned().collect();
        let balancing_moves = round.moves.iter().any(|step| !leaving.contains(&step.from));
        {
            let mut balanced_for = self.balanced_for.lock().expect("no panics under the lock");
            if balanced_for.as_ref() == Some(&members) {
                round.moves.retain(|step| leaving.contains(&step.from));
            } else if !balancing_moves
                && assignments.iter().all(|row| row.handoff == HandOff::Active)
            {
                *balanced_for = Some(members);
            }
        }
        if round.is_empty() {
            return Ok(());
        }
        let now = Timestamp::now();
        let table = &self.allocation;
        for (shard, owner) in &round.initial {
            table.create(*shard, owner, now).await?;
        }
        for step in &round.reassign {
            if table
                .reassign(step.shard, step.epoch, &step.to, now)
                .await?
            {
                tracing::info!(shard = step.shard, from = %step.from, to = %step.to, "shard reassigned");
            }
        }
        for step in &round.cancel {
            table.cancel_move(step.shard, step.epoch, now).await?;
        }
        for step in &round.complete {
            table.complete_move(step.shard, step.epoch, now).await?;
        }
        for step in &round.moves {
            table
                .begin_move(step.shard, step.epoch, &step.to, now)
                .await?;
        }
        tracing::debug!(
            initial = round.initial.len(),
            reassigned = round.reassign.len(),
            completed = round.complete.len(),
            moves = round.moves.len(),
            "coordinator round"
        );
        Ok(())
    }

    /// Makes this node's shards match the table, and the placement with them.
    async fn reconcile(&self) -> Result<(), Error> {
        let members = self.membership.members().await?;
        let live: BTreeSet<&str> = members
            .iter()
            .filter(|member| member.status != Status::Down)
            .map(|member| member.node.node_id.as_str())
            .collect();
        let assignments = self.allocation.assignments().await?;
        let me = self.node.node_id.as_str();
        let placement = self.remoting.placement();
        let running = self
            .running
            .lock()
            .expect("no panics under the lock")
            .clone();
        let mut adopt = Vec::new();
        let mut release = Vec::new();
        for row in &assignments {
            let mine = row.owner == me;
            let here = running.get(&row.shard).copied();
            match (&row.handoff, mine) {
                (HandOff::Active, true) if here == Some(row.epoch) => {
                    placement.set(row.shard, Location::Here);
                }
                (HandOff::Active, true) => {
                    if here.is_some() {
                        release.push((row.shard, None));
                    }
                    adopt.push((row.shard, row.epoch));
                }
                (HandOff::Draining { .. }, true) => {
                    placement.set(row.shard, Location::Moving);
                    release.push((row.shard, Some(row.epoch)));
                }
                (HandOff::Released { .. }, true) => placement.set(row.shard, Location::Moving),
                (HandOff::Active, false) => {
                    if here.is_some() {
                        release.push((row.shard, None));
                    }
                    let location = if live.contains(row.owner.as_str()) {
                        Location::Node(row.owner.clone())
                    } else {
                        Location::Moving
                    };
                    placement.set(row.shard, location);
                }
                (_, false) => {
                    if here.is_some() {
                        release.push((row.shard, None));
                    }
                    placement.set(row.shard, Location::Moving);
                }
            }
        }
        for (shard, report) in release {
            self.exchange.release_shard(shard).await.map_err(actors)?;
            self.running
                .lock()
                .expect("no panics under the lock")
                .remove(&shard);
            if let Some(epoch) = report {
                self.allocation
                    .release(shard, me, epoch, Timestamp::now())
                    .await?;
                tracing::info!(shard, epoch, "shard handed off");
                self.wake.notify_waiters();
            }
        }
        if adopt.is_empty() {
            return Ok(());
        }
        let mut fenced = Vec::with_capacity(adopt.len());
        for (shard, epoch) in adopt {
            let key = fence_key(shard);
            match self.journal.claim_fence(&key, epoch).await {
                Ok(()) => fenced.push((shard, Fence { key, epoch })),
                Err(error) => tracing::error!(shard, epoch, %error, "fence not claimed"),
            }
        }
        let shards: Vec<(u32, Fence)> = fenced.clone();
        self.exchange.adopt_shards(&shards).await.map_err(actors)?;
        let mut running = self.running.lock().expect("no panics under the lock");
        for (shard, fence) in fenced {
            running.insert(shard, fence.epoch);
            placement.set(shard, Location::Here);
        }
        tracing::info!(adopted = shards.len(), "shards started here");
        Ok(())
    }
}

async fn heartbeats(inner: Arc<Inner>) {
    let mut interval = tokio::time::interval(inner.config.cluster.heartbeat_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !inner.exited() {
        interval.tick().await;
        if let Err(error) = inner.heartbeat().await {
            tracing::warn!(%error, "heartbeat round failed");
        }
    }
}

async fn reconciler(inner: Arc<Inner>) {
    while !inner.exited() {
        if inner.leading.load(Ordering::Acquire)
            && let Err(error) = inner.coordinate().await
        {
            tracing::warn!(%error, "coordinator round failed");
        }
        if let Err(error) = inner.reconcile().await {
            tracing::warn!(%error, "reconcile round failed");
        }
        let _ = tokio::time::timeout(inner.config.reconcile_interval, inner.wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms)
    }

    /// Heartbeats every `step` ms from `from` to `to`, after `run`; the run and whether the
    /// node may judge others at the end.
    fn beat(mut run: Option<HeartbeatRun>, from: i64, to: i64, step: i64) -> (HeartbeatRun, bool) {
        let mut judges = false;
        let mut ms = from;
        while ms <= to {
            let next = HeartbeatRun::after(run, at(ms), TIMEOUT);
            judges = next.judges(at(ms), TIMEOUT);
            run = Some(next);
            ms += step;
        }
        (run.expect("at least one heartbeat"), judges)
    }

    #[test]
    fn a_node_judges_others_only_after_a_failure_timeout_of_heartbeats_without_a_gap() {
        // Fresh: not before two seconds of heartbeats.
        assert!(!beat(None, 0, 1_500, 500).1);
        let (run, judges) = beat(None, 0, 2_000, 500);
        assert!(judges);
        // The database was away for 3 s: the first heartbeat back starts a new run, and the
        // others get a whole failure timeout to heartbeat again.
        let (back, judges) = beat(Some(run), 5_000, 6_500, 500);
        assert_eq!(back.since, at(5_000));
        assert!(!judges);
        assert!(beat(Some(back), 7_000, 7_000, 500).1);
        // A slow round under load (a second's gap is the most allowed) keeps the run.
        let (slow, judges) = beat(Some(run), 3_000, 3_000, 500);
        assert_eq!(slow.since, run.since);
        assert!(judges);
    }
}
