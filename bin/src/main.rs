//! `tradefloor`: `node` runs a node, `ctl` talks to one, `bench` loads one, `backtest`
//! replays recorded data through a strategy, `feed` replays it into a node.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use tradefloor::cli::{Cli, Command};
use tradefloor::config::{LogFormat, NodeConfig};

// mimalloc rather than glibc's malloc: per-thread heaps, where glibc's arenas showed up in
// profiles as lock waits between the runtime's threads (≈ 13 % of the node's CPU in malloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tradefloor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Node(args) => {
            let config = NodeConfig::load(&args).context("reading the configuration")?;
            tradefloor::logging::init(config.log_format, &config.log_filter);
            runtime.block_on(tradefloor::node::run(config))?;
        }
        Command::Ctl(args) => {
            tradefloor::logging::init(LogFormat::Text, "warn");
            runtime.block_on(tradefloor::ctl::run(args))?;
        }
        Command::Bench(args) => {
            tradefloor::logging::init(LogFormat::Text, "warn");
            runtime.block_on(tradefloor::bench::run(args))?;
        }
        Command::Backtest(args) => {
            tradefloor::logging::init(LogFormat::Text, "warn");
            runtime.block_on(tradefloor::backtest::run(args))?;
        }
        Command::Feed(args) => {
            tradefloor::logging::init(LogFormat::Text, "warn");
            runtime.block_on(tradefloor::feed::run(args))?;
        }
        Command::Completions { shell } => {
            tradefloor::ctl::print(tradefloor::cli::completions(shell).trim_end())?;
        }
    }
    Ok(())
}
