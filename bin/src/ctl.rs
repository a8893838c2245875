//! `tradefloor ctl`: the HTTP API from a terminal.

use crate::cli::CtlArgs;
use crate::error::Error;

/// Runs one `ctl` command.
pub async fn run(_args: CtlArgs) -> Result<(), Error> {
    Err(Error::Http("ctl is being written".to_owned()))
}
