//! Every limit of the journal, named, with its default.

use std::time::Duration;

/// How the journal batches and bounds its work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// Most events committed in one group-commit transaction.
    pub batch_events_max: usize,
    /// Longest a batch waits for more appends once it has one. Zero commits as soon as the
    /// previous commit is done (appends queued meanwhile still share a transaction).
    pub batch_wait: Duration,
    /// Appends queued for the writer before callers wait (backpressure).
    pub queue_appends_max: usize,
    /// Most events in one append.
    pub append_events_max: usize,
    /// Largest payload of one event or snapshot, in bytes.
    pub payload_bytes_max: usize,
    /// Most rows one read returns.
    pub read_rows_max: usize,
    /// Connections in the pool.
    pub pool_connections_max: u32,
    /// How long SQLite waits on a lock held by another connection or process.
    pub sqlite_busy_timeout: Duration,
    /// SQLite `synchronous=FULL` (fsync every commit: survives power loss) rather than
    /// `NORMAL` (survives a process crash).
    pub sqlite_synchronous_full: bool,
    /// The nice value of the SQLite journal's writer thread (Linux; lower runs first; below 0
    /// needs `CAP_SYS_NICE`, else the default is kept): every order waits for its commits.
    pub journal_writer_nice: i32,
    /// The nice value of the SQLite read models' writer thread: its work trails the log.
    pub read_models_writer_nice: i32,
    /// Committed batches the log bus (see [`crate::Journal::subscribe`]) keeps for its
    /// slowest subscriber. A subscriber further behind is told it lagged and reads the
    /// database to catch up; the writer never waits for it. Memory: up to this many batches
    /// (each up to `batch_events_max` events) stay alive while a subscriber has not read them.
    pub bus_batches_max: usize,
    /// Where archive files go (see [`crate::Journal::archive`]); `None`: archiving is refused.
    /// Every node of a cluster must see the same directory (shared storage).
    pub archive_dir: Option<std::path::PathBuf>,
    /// Most events per zstd frame of an archive file: a read of one archived event
    /// decompresses its frame.
    pub archive_frame_events_max: usize,
    /// Most events per archive file: one file, one transaction moving its events.
    pub archive_file_events_max: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            batch_events_max: 1_024,
            batch_wait: Duration::ZERO,
            queue_appends_max: 16_384,
            append_events_max: 1_024,
            payload_bytes_max: 1 << 20,
            read_rows_max: 10_000,
            pool_connections_max: 8,
            sqlite_busy_timeout: Duration::from_secs(5),
            sqlite_synchronous_full: true,
            journal_writer_nice: -10,
            read_models_writer_nice: 10,
            bus_batches_max: 512,
            archive_dir: None,
            archive_frame_events_max: 100,
            archive_file_events_max: 20_000,
        }
    }
}

impl JournalConfig {
    /// Checks the limits fit together.
    pub fn validate(&self) -> Result<(), crate::Error> {
        let invalid = |reason: &str| Err(crate::Error::InvalidRequest(reason.to_owned()));
        if self.batch_events_max == 0 || self.queue_appends_max == 0 || self.read_rows_max == 0 {
            return invalid("batch, queue and read limits must be positive");
        }
        if self.append_events_max == 0 || self.append_events_max > self.batch_events_max {
            return invalid("append_events_max must be in 1..=batch_events_max");
        }
        if self.pool_connections_max == 0 {
            return invalid("the pool needs a connection");
        }
        if self.bus_batches_max == 0 {
            return invalid(
                "bus_batches_max must be positive: the log bus keeps at least one batch",
            );
        }
        if self.archive_frame_events_max == 0 || self.archive_file_events_max == 0 {
            return invalid("archive frames and files hold at least one event");
        }
        Ok(())
    }
}
