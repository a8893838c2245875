//! The `tradefloor` binary: `node`, `ctl` and `bench`.
//!
//! The node, its HTTP endpoint and the terminal client arrive with the node issue. Until
//! then the binary says so and exits with a non-zero status, rather than pretending to run.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "tradefloor {}: the node arrives with a later change; today the workspace holds the \
         trading domain. Run `cargo test --workspace` to exercise it.",
        env!("CARGO_PKG_VERSION"),
    );
    ExitCode::from(2)
}
