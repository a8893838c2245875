//! The crate's one error type.

/// What can go wrong deciding or backtesting.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// A strategy specification that cannot run.
    #[error("invalid strategy: {0}")]
    InvalidSpec(String),
    /// A model file that does not fit its predictor.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A predictor failed to predict.
    #[error("predictor {predictor} failed: {reason}")]
    Predictor {
        /// Which one.
        predictor: String,
        /// Why.
        reason: String,
    },
    /// A recorded data file that cannot be read.
    #[error("line {line}: {reason}")]
    Data {
        /// Its line, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint that belongs to another strategy or is damaged.
    #[error("invalid checkpoint: {0}")]
    Checkpoint(String),
}
