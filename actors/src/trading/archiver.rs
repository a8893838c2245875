//! Retention for operators: archive runs over the journal (see
//! [`tradefloor_persistence::archive`]), one at a time per node, started by an operator
//! (`POST /v1/archive`, `tradefloor ctl archive`) or every interval once a horizon is
//! configured, and followed through [`Archiver::current`] (`GET /v1/archive`).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::task::JoinHandle;
use tradefloor_persistence::Journal;
use tradefloor_persistence::archive::{ArchiveProgress, ArchiveTotals};

use crate::error::Error;
use crate::hosting::saga_host::system_clock;

/// One archive run: what it moves, and how far it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArchiveRun {
    /// It moves events recorded before this (microseconds since the epoch).
    pub recorded_before: i64,
    /// When it started (milliseconds since the epoch).
    pub started_at_unix_ms: u64,
    /// How far it is.
    pub progress: ArchiveProgress,
    /// How long it took, once done.
    pub took_ms: Option<u64>,
    /// Why it stopped short, if it failed.
    pub error: Option<String>,
}

impl ArchiveRun {
    /// Whether it still runs.
    pub fn is_running(&self) -> bool {
        self.took_ms.is_none()
    }
}

/// The node's archive runs.
#[derive(Clone, Debug)]
pub struct Archiver {
    journal: Journal,
    /// The run in progress, or the last one.
    run: Arc<Mutex<Option<ArchiveRun>>>,
    /// The horizon the node archives at by itself ([`Archiver::every`]), if any.
    horizon: Arc<Mutex<Option<Duration>>>,
}

impl Archiver {
    /// The archive runs of `journal`.
    pub fn new(journal: Journal) -> Self {
        Self {
            journal,
            run: Arc::default(),
            horizon: Arc::default(),
        }
    }

    /// What the archive holds.
    pub async fn totals(&self) -> Result<ArchiveTotals, Error> {
        self.journal
            .archive_totals()
            .await
            .map_err(|error| Error::Persistence {
                actor: "/archive".to_owned(),
                reason: error.to_string(),
            })
    }

    /// The run in progress, or the last one.
    pub fn current(&self) -> Option<ArchiveRun> {
        self.lock().clone()
    }

    /// Starts a run moving the events recorded before `recorded_before` (microseconds since
    /// the epoch); `Err` with the run in progress if there is one.
    pub fn start(&self, recorded_before: i64) -> Result<ArchiveRun, ArchiveRun> {
        let run = {
            let mut current = self.lock();
            if let Some(running) = current.as_ref().filter(|run| run.is_running()) {
                return Err(running.clone());
            }
            let run = ArchiveRun {
                recorded_before,
                started_at_unix_ms: u64::try_from(system_clock()().micros() / 1_000).unwrap_or(0),
                progress: ArchiveProgress::default(),
                took_ms: None,
                error: None,
            };
            *current = Some(run.clone());
            run
        };
        let archiver = self.clone();
        tokio::spawn(async move { archiver.run(recorded_before).await });
        Ok(run)
    }

    async fn run(&self, recorded_before: i64) {
        let begun = Instant::now();
        tracing::info!(recorded_before, "archive run started");
        let outcome = self
            .journal
            .archive(recorded_before, |progress| {
                if let Some(run) = self.lock().as_mut() {
                    run.progress = *progress;
                }
                metrics::gauge!("tradefloor_archive_run_through_offset")
                    .set(progress.through_offset as f64);
            })
            .await;
        let took_ms = u64::try_from(begun.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut current = self.lock();
        let Some(run) = current.as_mut() else { return };
        run.took_ms = Some(took_ms);
        match outcome {
            Ok(progress) => {
                run.progress = progress;
                metrics::counter!("tradefloor_archive_runs_total", "outcome" => "done")
                    .increment(1);
                metrics::counter!("tradefloor_archive_events_total").increment(progress.events);
                metrics::counter!("tradefloor_archive_files_total").increment(progress.files);
                tracing::info!(
                    events = progress.events,
                    files = progress.files,
                    bytes = progress.bytes,
                    took_ms,
                    "archive run done"
                );
            }
            Err(error) => {
                metrics::counter!("tradefloor_archive_runs_total", "outcome" => "failed")
                    .increment(1);
                tracing::error!(%error, took_ms, "archive run failed");
                run.error = Some(error.to_string());
            }
        }
    }

    /// The horizon the node archives at by itself, if any.
    pub fn horizon(&self) -> Option<Duration> {
        *self.horizon.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every `interval`, starts a run moving what is older than `horizon` (unless one runs).
    pub fn every(&self, horizon: Duration, interval: Duration) -> JoinHandle<()> {
        *self.horizon.lock().unwrap_or_else(PoisonError::into_inner) = Some(horizon);
        let archiver = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(running) = archiver.start(recorded_before(horizon)) {
                    tracing::debug!(
                        started_at = running.started_at_unix_ms,
                        "archive run still going"
                    );
                }
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<ArchiveRun>> {
        self.run.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The time `horizon` ago, in microseconds since the epoch (the journal's clock: the
/// system's).
pub fn recorded_before(horizon: Duration) -> i64 {
    let horizon = i64::try_from(horizon.as_micros()).unwrap_or(i64::MAX);
    system_clock()().micros().saturating_sub(horizon)
}
