//! The services a node runs besides its shards: the book feed and the read models, each
//! under a supervisor of its own, and the members of the risk monitor's consumer group;
//! starting and stopping them one by one (a cluster spreads them over its nodes) and how far
//! each has read the log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ractor::{Actor, ActorRef};
use tokio::task::JoinHandle;
use tradefloor_persistence::{Filter, Journal, OffsetStore};

use super::feed::{self, BookFeed};
use super::{Exchange, READ_MODELS, RiskFlag, SERVICES, projections, risk};
use crate::error::Error;
use crate::hosting::consumer_group::{
    ConsumerMember, ConsumerMemberArgs, ConsumerMessage, GroupStats, MemberStats, partition_of,
};
use crate::hosting::dead_letter_table::DeadLetterTable;
use crate::hosting::projection::{
    PROJECTION_PARTITION, Projection, ProjectionActor, ProjectionHandle, ProjectionStats,
};
use crate::runtime::supervisor::{
    ChildSpec, SupervisionConfig, Supervisor, SupervisorArgs, SupervisorMessage,
};

/// Every single-partition consumer of the log (the book feed and the read models), with the
/// events it reads.
fn consumers() -> [(&'static str, Filter); 5] {
    [
        (feed::FEED_NAME, Filter::Kind("order_book".to_owned())),
        (
            projections::balances::NAME,
            projections::balances::BalancesProjection.filter(),
        ),
        (
            projections::orders::NAME,
            // The sagas' events and the facts of the accounts and the books about orders.
            Filter::All,
        ),
        (
            projections::trades::NAME,
            projections::trades::TradesProjection.filter(),
        ),
        (
            projections::candles::NAME,
            projections::trades::TradesProjection.filter(),
        ),
    ]
}

/// A service's supervisor while it runs.
pub(super) struct Services {
    supervisor: ActorRef<SupervisorMessage>,
    /// Ends when the supervisor has stopped (asked to, or having given up).
    join: JoinHandle<()>,
    /// Set before the supervisor is asked to stop, so its end is not taken for giving up.
    asked_to_stop: Arc<AtomicBool>,
    /// The lease epoch it runs at (`None`: the node holds the journal alone).
    epoch: Option<u64>,
}

/// A running risk monitor member.
pub(super) struct RiskMember {
    actor: ActorRef<ConsumerMessage>,
    join: JoinHandle<()>,
}

impl Exchange {
    /// The events the log's consumers parked (see [`DeadLetterTable`]).
    pub fn dead_letters(&self) -> DeadLetterTable {
        DeadLetterTable::new(self.journal.read_models().clone())
    }

    /// Starts every service on this node: the book feed and the read models, each under its
    /// own supervisor, and the risk monitor's members. Each reads the whole log, so a cluster
    /// spreads them over its nodes instead ([`Exchange::start_service`],
    /// [`Exchange::serve_risk_partitions`]).
    pub async fn start_services(&self) -> Result<(), Error> {
        for service in SERVICES {
            self.start_service(service, None).await?;
        }
        if self.risk_lock().is_empty() {
            for _ in 0..self.config.risk.members {
                self.add_risk_member().await?;
            }
        }
        Ok(())
    }

    /// Stops every service on this node and the risk monitor's members.
    pub async fn stop_services(&self) -> Result<(), Error> {
        let members: Vec<String> = self.risk_lock().keys().cloned().collect();
        for member in members {
            self.remove_risk_member(&member).await?;
        }
        for service in SERVICES {
            self.stop_service(service).await?;
        }
        Ok(())
    }

    /// The child spec of service `name` (one of [`SERVICES`]) held at lease `epoch`.
    fn service_spec(&self, name: &str, epoch: Option<u64>) -> Option<ChildSpec> {
        let journal = &self.journal;
        let config = &self.config;
        let spec = match name {
            feed::SERVICE_NAME => BookFeed::spec(
                self.host.clone(),
                journal.clone(),
                config.feed.clone(),
                self.feed_wake.clone(),
            ),
            projections::balances::NAME => {
                self.projection_spec(epoch, || projections::balances::BalancesProjection)
            }
            projections::orders::NAME => {
                let journal = journal.clone();
                self.projection_spec(epoch, move || {
                    projections::orders::OrdersProjection::new(journal.clone())
                })
            }
            projections::trades::NAME => {
                self.projection_spec(epoch, || projections::trades::TradesProjection)
            }
            projections::candles::NAME => {
                let watermark = config.candle_watermark_micros;
                self.projection_spec(epoch, move || {
                    projections::candles::CandlesProjection::new(watermark)
                })
            }
            _ => return None,
        };
        Some(spec)
    }

    /// The child spec of a read model, reachable through its handle.
    fn projection_spec<P, F>(&self, epoch: Option<u64>, make: F) -> ChildSpec
    where
        P: Projection,
        F: Fn() -> P + Send + Sync + 'static,
    {
        let name = make().name().to_owned();
        let handle = self.projection_handle(&name);
        let config = self.config.projections.clone();
        ProjectionActor::spec_with_handle(name, self.journal.clone(), config, epoch, make, handle)
    }

    /// Where read model `name`'s running incarnation is (one handle per read model, shared
    /// by its incarnations).
    fn projection_handle(&self, name: &str) -> ProjectionHandle {
        self.projection_handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The progress of every read model running on this node.
    pub async fn read_models(&self) -> Result<Vec<ProjectionStats>, Error> {
        let running = self.running_services().await;
        let mut stats = Vec::new();
        for name in READ_MODELS
            .iter()
            .filter(|name| running.iter().any(|r| r == *name))
        {
            stats.extend(self.projection_handle(name).stats().await?);
        }
        Ok(stats)
    }

    /// Rebuilds read model `name` in place, from offset 0 (see [`ProjectionMessage::Rebuild`]);
    /// answers the head it rebuilds up to. `Ok(None)`: it does not run on this node.
    pub async fn rebuild_read_model(&self, name: &str) -> Result<Option<u64>, Error> {
        if !self.running_services().await.iter().any(|r| r == name) {
            return Ok(None);
        }
        let Some(answer) = self.projection_handle(name).rebuild().await? else {
            return Ok(None);
        };
        answer.map(Some).map_err(|reason| Error::Failed {
            actor: format!("read model {name}"),
            reason,
        })
    }

    /// Starts service `name` (one of [`SERVICES`]) on this node under its own supervisor, at
    /// `{path}/services/{name}`, held at lease `epoch` in a cluster (`None`: the node holds
    /// the journal alone); nothing happens if it runs already at that epoch. At another
    /// epoch it is started again: the node took the lease anew, and the old holder's commits
    /// may have been fenced meanwhile.
    pub async fn start_service(&self, name: &str, epoch: Option<u64>) -> Result<(), Error> {
        let running = self
            .services
            .lock()
            .await
            .get(name)
            .map(|service| service.epoch);
        match running {
            Some(running) if running == epoch => return Ok(()),
            Some(_) => self.stop_service(name).await?,
            None => {}
        }
        let mut services = self.services.lock().await;
        let path = format!("{}/services/{name}", self.config.path);
        let spec = self
            .service_spec(name, epoch)
            .ok_or_else(|| Error::StartFailed {
                actor: path.clone(),
                reason: "no such service".to_owned(),
            })?;
        let arguments = SupervisorArgs::new(path.clone(), SupervisionConfig::default(), vec![spec])
            .with_registry(self.registry.clone());
        let (supervisor, supervisor_join) = Actor::spawn(None, Supervisor, arguments)
            .await
            .map_err(|error| Error::StartFailed {
                actor: path.clone(),
                reason: error.to_string(),
            })?;
        // The supervisor has no parent to escalate to: whoever runs the application learns
        // that it gave up through `services_stopped`.
        let asked_to_stop = Arc::new(AtomicBool::new(false));
        let gave_up = self.services_gave_up.clone();
        let asked = asked_to_stop.clone();
        let join = tokio::spawn(async move {
            let _ = supervisor_join.await;
            if !asked.load(Ordering::Acquire) {
                let _ = gave_up.send(true);
            }
        });
        services.insert(
            name.to_owned(),
            Services {
                supervisor,
                join,
                asked_to_stop,
                epoch,
            },
        );
        tracing::info!(service = %name, ?epoch, "service started");
        Ok(())
    }

    /// Stops service `name` on this node (another node takes it over); nothing happens if it
    /// does not run here.
    pub async fn stop_service(&self, name: &str) -> Result<(), Error> {
        let Some(service) = self.services.lock().await.remove(name) else {
            return Ok(());
        };
        service.asked_to_stop.store(true, Ordering::Release);
        service.supervisor.stop(None);
        let _ = service.join.await;
        tracing::info!(service = %name, "service stopped");
        Ok(())
    }

    /// The services running on this node.
    pub async fn running_services(&self) -> Vec<String> {
        self.services.lock().await.keys().cloned().collect()
    }

    /// Serves only these risk-monitor partitions on this node (a cluster spreads them):
    /// partitions taken away are finished, committed and released by their members.
    pub fn serve_risk_partitions(&self, partitions: &BTreeSet<u32>) {
        self.risk_group.serve_only(partitions);
    }

    /// The risk-monitor partitions a member on this node holds right now.
    pub fn risk_partitions_held(&self) -> BTreeSet<u32> {
        self.risk_group.held()
    }

    /// How many partitions the risk monitor's log is split into.
    pub fn risk_partition_count(&self) -> u32 {
        self.risk_group.partition_count()
    }

    fn risk_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RiskMember>> {
        self.risk_members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts one more risk monitor member; answers its id. Partitions move to it as their
    /// holders finish what they have in hand.
    pub async fn add_risk_member(&self) -> Result<String, Error> {
        let number = self.risk_member_count.fetch_add(1, Ordering::AcqRel) + 1;
        let member = format!("risk-{number:04}");
        let arguments = ConsumerMemberArgs {
            group: self.risk_group.clone(),
            member: member.clone(),
            journal: self.journal.clone(),
            config: self.config.risk.consumer(),
            handler: risk::RiskHandler::new(self.journal.clone(), self.config.risk.clone()),
            progress: None,
        };
        let (actor, join) = Actor::spawn(None, ConsumerMember::new(), arguments)
            .await
            .map_err(|error| Error::StartFailed {
                actor: format!("{}/risk/{member}", self.config.path),
                reason: error.to_string(),
            })?;
        self.risk_lock()
            .insert(member.clone(), RiskMember { actor, join });
        Ok(member)
    }

    /// Stops the risk member `member` (its partitions go to the others); `false` if no such
    /// member runs.
    pub async fn remove_risk_member(&self, member: &str) -> Result<bool, Error> {
        let Some(running) = self.risk_lock().remove(member) else {
            return Ok(false);
        };
        running.actor.stop(None);
        let _ = running.join.await;
        Ok(true)
    }

    /// The risk monitor group's assignment: members, target and current holder of each
    /// partition.
    pub fn risk_stats(&self) -> GroupStats {
        self.risk_group.stats()
    }

    /// Each live risk member's view (the partitions it holds and how far it read them).
    pub async fn risk_member_stats(&self) -> Result<Vec<MemberStats>, Error> {
        let actors: Vec<ActorRef<ConsumerMessage>> = self
            .risk_lock()
            .values()
            .map(|member| member.actor.clone())
            .collect();
        let mut stats = Vec::with_capacity(actors.len());
        for actor in &actors {
            stats.push(ConsumerMember::<risk::RiskHandler>::stats(actor).await?);
        }
        Ok(stats)
    }

    /// Every account flagged over a position limit, by account then asset.
    pub async fn risk_flags(&self) -> Result<Vec<RiskFlag>, Error> {
        risk::flags(self.journal.read_models())
            .await
            .map_err(|error| projections::storage("risk", error))
    }

    /// Whether the risk monitor committed every account event of every partition (for
    /// tests and readiness checks).
    pub async fn risk_caught_up(&self) -> Result<bool, Error> {
        let failed = |error: tradefloor_persistence::Error| Error::Persistence {
            actor: risk::GROUP_NAME.to_owned(),
            reason: error.to_string(),
        };
        let offsets = OffsetStore::new(self.journal.read_models().clone());
        let partition_count = self.risk_group.partition_count();
        let mut committed = Vec::with_capacity(partition_count as usize);
        for partition in 0..partition_count {
            committed.push(
                offsets
                    .load(risk::GROUP_NAME, partition)
                    .await
                    .map_err(failed)?,
            );
        }
        let filter = self.config.risk.consumer().filter;
        let mut from = committed.iter().copied().min().unwrap_or(0);
        loop {
            let page = self
                .journal
                .read_all(from, self.journal.config().read_rows_max, &filter)
                .await
                .map_err(failed)?;
            let Some(last) = page.last() else {
                return Ok(true);
            };
            from = last.global_offset;
            for event in &page {
                let partition = partition_of(&event.stream, partition_count);
                if event.global_offset > committed[partition as usize] {
                    return Ok(false);
                }
            }
        }
    }

    /// Whether the book feed and the read models run (their supervisor has not stopped).
    pub fn services_running(&self) -> bool {
        !*self.services_gave_up.borrow()
    }

    /// Waits until the book feed's and read models' supervisor stops: after
    /// [`Exchange::shutdown`], or when its children failed more often than its restart
    /// intensity allows. The node then has no read models and no book feed: stop it.
    pub async fn services_stopped(&self) {
        let mut stopped = self.services_gave_up.subscribe();
        let _ = stopped.wait_for(|stopped| *stopped).await;
    }

    /// Whether every read model and the book feed have handled every event of the log that
    /// they read (for tests and readiness checks).
    pub async fn caught_up(&self) -> Result<bool, Error> {
        caught_up(&self.journal).await
    }

    /// How many events each read model and the book feed still have to handle, counted up to
    /// `probe_max` (a consumer further behind shows `probe_max`).
    pub async fn consumer_lags(
        &self,
        probe_max: usize,
    ) -> Result<Vec<(&'static str, usize)>, Error> {
        consumer_lags(&self.journal, probe_max).await
    }
}

/// Whether every read model and the book feed of the application on `journal` have handled
/// every event of the log that they read, wherever they run (a cluster's nodes share it).
pub async fn caught_up(journal: &Journal) -> Result<bool, Error> {
    let lags = consumer_lags(journal, 1).await?;
    Ok(lags.iter().all(|(_, lag)| *lag == 0))
}

/// [`Exchange::consumer_lags`] of the application on `journal`.
async fn consumer_lags(
    journal: &Journal,
    probe_max: usize,
) -> Result<Vec<(&'static str, usize)>, Error> {
    let offsets = OffsetStore::new(journal.read_models().clone());
    let mut lags = Vec::new();
    for (name, filter) in consumers() {
        let failed = |error: tradefloor_persistence::Error| Error::Persistence {
            actor: name.to_owned(),
            reason: error.to_string(),
        };
        let offset = offsets
            .load(name, PROJECTION_PARTITION)
            .await
            .map_err(failed)?;
        let ahead = journal
            .read_all(offset, probe_max, &filter)
            .await
            .map_err(failed)?;
        lags.push((name, ahead.len()));
    }
    Ok(lags)
}
