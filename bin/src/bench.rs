//! `tradefloor bench`: a load generator against a running node.

use crate::cli::BenchArgs;
use crate::error::Error;

/// Runs the benchmark.
pub async fn run(_args: BenchArgs) -> Result<(), Error> {
    Err(Error::Http("bench is being written".to_owned()))
}
