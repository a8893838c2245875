//! The one error type of the node, `ctl`, `bench`, `backtest` and `feed` (the binary's `main`
//! wraps it in `anyhow` for its exit message).

/// Why the node, `ctl` or `bench` could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid; the message names the setting. Fix it and start again.
    #[error("configuration: {0}")]
    Config(String),
    /// The journal could not be opened or migrated.
    #[error("journal: {0}")]
    Journal(#[from] tradefloor_persistence::Error),
    /// The trading application could not start or stop.
    #[error("actors: {0}")]
    Actors(#[from] tradefloor_actors::Error),
    /// The cluster (membership, shard table, remoting) failed.
    #[error("cluster: {0}")]
    Cluster(#[from] tradefloor_cluster::Error),
    /// A part of the node failed for good and the node stopped; restart it (it recovers
    /// from the journal).
    #[error("node failed: {0}")]
    NodeFailed(String),
    /// A socket or file could not be used.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The node answered a `ctl` or `bench` request with an error.
    #[error("{status} {code}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The node's message.
        message: String,
    },
    /// The node could not be reached or answered something unreadable.
    #[error("http: {0}")]
    Http(String),
    /// A file named on the command line (a strategy, tick data, a model, a checkpoint, an
    /// output) is missing, unreadable or invalid; the message names it and says why.
    #[error("{path}: {reason}")]
    File {
        /// The file as given.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A command cannot go on with the data it was given (`backtest` or `feed`: too short to
    /// fit a model, a checkpoint beyond the data or of other data; `ctl`: an argument it
    /// cannot read); the message says why.
    #[error("{0}")]
    Data(String),
}

impl Error {
    /// [`Error::File`] about `path`.
    pub fn file(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<config::ConfigError> for Error {
    fn from(error: config::ConfigError) -> Self {
        Error::Config(error.to_string())
    }
}
