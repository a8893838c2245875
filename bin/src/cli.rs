//! The command line: `tradefloor node`, `tradefloor ctl …`, `tradefloor bench`,
//! `tradefloor backtest`, `tradefloor feed` and `tradefloor completions`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;

use crate::api::{Side, TimeInForce};

/// Tradefloor: an event-sourced trading platform on a clustered actor system.
#[derive(Debug, Parser)]
#[command(name = "tradefloor", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The programs in one binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: the trading application and its HTTP endpoint.
    Node(NodeArgs),
    /// Talk to a running node from a terminal.
    Ctl(CtlArgs),
    /// Generate load against a running node and report throughput and latency.
    Bench(BenchArgs),
    /// Replay recorded market data through a strategy and report how it did.
    Backtest(BacktestArgs),
    /// Replay a recorded tick file into a node as a feed's quotes, at a given rate.
    Feed(FeedArgs),
    /// Print a shell's completion script, e.g. `tradefloor completions bash >
    /// /etc/bash_completion.d/tradefloor`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `shell`'s completion script for the whole command line.
pub fn completions(shell: clap_complete::Shell) -> String {
    let mut command = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "tradefloor", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// Flags of `tradefloor node`. Each overrides the same setting from `TRADEFLOOR_*` variables,
/// which override the configuration file (see the README's configuration reference).
#[derive(Debug, Default, Args)]
pub struct NodeArgs {
    /// A TOML configuration file.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// This node's id, unique in the cluster.
    #[arg(long)]
    pub node_id: Option<String>,
    /// The HTTP address to listen on, e.g. `127.0.0.1:8081`.
    #[arg(long)]
    pub http: Option<String>,
    /// The cluster address to listen on.
    #[arg(long)]
    pub cluster_addr: Option<String>,
    /// The cluster address other nodes dial (default: `--cluster-addr`).
    #[arg(long)]
    pub cluster_advertise: Option<String>,
    /// Cluster addresses of nodes to join through, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Option<Vec<String>>,
    /// The journal: `postgres://…` or `sqlite:<file>` (default: SQLite in the data directory).
    #[arg(long)]
    pub journal: Option<String>,
    /// Where the embedded SQLite journal lives.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Log format: `text` or `json`.
    #[arg(long)]
    pub log_format: Option<String>,
}

/// Where `ctl` finds the node, how it authenticates and how it prints.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The node's HTTP address.
    #[arg(
        long,
        env = "TRADEFLOOR_NODE",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub node: String,
    /// A bearer token.
    #[arg(long, env = "TRADEFLOOR_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of the CA that issued an `https://` node's certificate.
    #[arg(long, env = "TRADEFLOOR_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Print the node's JSON instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// The `ctl` commands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// The cluster's members.
    Members,
    /// Every shard and its owner.
    Shards,
    /// The actor tree, indented like `pstree`.
    Tree {
        /// Only this node's tree.
        #[arg(long = "of")]
        node_id: Option<String>,
        /// Levels to show below the root.
        #[arg(long)]
        depth: Option<u32>,
    },
    /// Plan (`--dry-run`) or run a rebalance, with progress.
    Rebalance {
        /// Only show the plan.
        #[arg(long)]
        dry_run: bool,
    },
    /// Hand a shard to another member (drained on its owner, then started there).
    Move {
        /// The shard.
        shard: u32,
        /// The member to move it to.
        #[arg(long)]
        to: String,
    },
    /// Drain a member: its shards and consumers go to the others, then it stops. Shows the
    /// drain's progress.
    Leave {
        /// The member.
        node_id: String,
    },
    /// An account's balances and open orders.
    Account {
        /// The account.
        account_id: String,
    },
    /// Credit an account.
    Deposit {
        /// The account.
        account_id: String,
        /// The asset.
        asset: String,
        /// The amount, in the asset's units.
        amount: u64,
        /// Idempotency key.
        #[arg(long)]
        command_id: Option<String>,
    },
    /// Place an order.
    Order {
        /// The account.
        account_id: String,
        /// The market, e.g. BTC-USD.
        symbol: String,
        /// `buy` or `sell`.
        #[arg(value_parser = wire_name::<Side>)]
        side: Side,
        /// The quantity.
        quantity: u64,
        /// The limit price (omit for a market order).
        #[arg(long)]
        price: Option<u64>,
        /// A market order (with `--price` as its protection price).
        #[arg(long)]
        market: bool,
        /// `gtc`, `ioc` or `fok`.
        #[arg(long, default_value = "gtc", value_parser = wire_name::<TimeInForce>)]
        time_in_force: TimeInForce,
        /// Refuse the order if it would trade on arrival.
        #[arg(long)]
        post_only: bool,
        /// The account's own id for the order (the venue's id, shown in the answer, is derived
        /// from it per account; default: from `--command-id`, else generated by the node).
        #[arg(long)]
        order_id: Option<u64>,
        /// Idempotency key: running the same command again repeats the first answer.
        #[arg(long)]
        command_id: Option<String>,
    },
    /// Cancel an order.
    Cancel {
        /// The order.
        order_id: u64,
    },
    /// A market's book.
    Book {
        /// The market.
        symbol: String,
        /// Levels per side.
        #[arg(long, default_value_t = 10)]
        depth: u32,
    },
    /// Prints a market's or an account's live stream, reconnecting after the last message
    /// seen if the connection drops.
    Watch {
        /// A market (e.g. `BTC-USD`) or an account; `market:…` or `account:…` to say which.
        target: String,
        /// Resume after this message id.
        #[arg(long)]
        after: Option<u64>,
        /// Stop after this many messages with an id (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// The strategies, one a line: state, market, account, position, PnL, last signal.
    Strategies,
    /// The read models on the node: offset, lag, dead letters, a rebuild's progress.
    Projections,
    /// Rebuild a read model in place from offset 0, following its progress.
    Rebuild {
        /// The read model, e.g. `trading.balances`.
        name: String,
    },
    /// Archive old events (retention): start a run and follow its progress, or show what the
    /// archive holds.
    Archive {
        /// Archive the events recorded more than this many seconds ago (default: the node's
        /// `retention.horizon_seconds`).
        #[arg(long)]
        older_than_seconds: Option<u64>,
        /// Only show what the archive holds and the last run.
        #[arg(long, conflicts_with = "older_than_seconds")]
        status: bool,
    },
    /// Replay a subscription: set its offset back to an offset or a time.
    Replay {
        /// The subscription.
        name: String,
        /// Deliver again every event after this offset.
        #[arg(long, conflicts_with = "at", required_unless_present = "at")]
        offset: Option<u64>,
        /// Deliver again every event recorded at or after this time (RFC 3339, e.g.
        /// `2026-12-07T18:00:00Z`).
        #[arg(long)]
        at: Option<String>,
    },
    /// Events the log's consumers parked (one a line), and undeliverable actor messages; or
    /// retry or delete one.
    DeadLetters {
        /// What to do (default: list them).
        #[command(subcommand)]
        command: Option<DeadLetterCommand>,
        /// Only this consumer's (e.g. `trading.balances`).
        #[arg(long)]
        consumer: Option<String>,
    },
    /// One strategy: show, create, start or stop it.
    Strategy {
        /// What to do with it.
        #[command(subcommand)]
        command: StrategyCommand,
    },
}

/// The `ctl dead-letters` commands.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// Apply a parked event again (after a fix), with the letters of its key behind it.
    Retry {
        /// The letter: `{consumer}:{offset}`.
        id: String,
    },
    /// Give a parked event up: its letter is deleted, the event never applied.
    Delete {
        /// The letter: `{consumer}:{offset}`.
        id: String,
    },
}

/// The `ctl strategy` commands.
#[derive(Debug, Subcommand)]
pub enum StrategyCommand {
    /// Its state, position, PnL, last signal, breakers and last decisions.
    Show {
        /// The strategy.
        id: String,
    },
    /// Define a strategy from its spec (JSON, naming its `account`); it starts at once. A
    /// logistic predictor's relative `model` path is taken from the file's directory, as
    /// `tradefloor backtest` takes it, and sent as an absolute path (the node reads it).
    Create {
        /// The strategy's spec.
        file: PathBuf,
    },
    /// Start a stopped strategy.
    Start {
        /// The strategy.
        id: String,
    },
    /// The kill switch: stop a strategy and cancel its open orders.
    Stop {
        /// The strategy.
        id: String,
        /// Why (kept in the strategy's journal).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Flags of `tradefloor bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The nodes' HTTP addresses, comma-separated: requests go to them in turn (setup
    /// through the first).
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub node: Vec<String>,
    /// An admin bearer token (to list the market), if the node has tokens.
    #[arg(long, env = "TRADEFLOOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of the CA that issued an `https://` node's certificate.
    #[arg(long, env = "TRADEFLOOR_CA")]
    pub ca: Option<PathBuf>,
    /// Accounts trading.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub accounts: u32,
    /// The market to trade (listed if missing).
    #[arg(long, default_value = "BENCH-USD")]
    pub symbol: String,
    /// Orders to place in all (with `--duration-seconds` unset).
    #[arg(long, default_value_t = 100_000)]
    pub orders: u64,
    /// Run for this long instead of a fixed number of orders.
    #[arg(long)]
    pub duration_seconds: Option<u64>,
    /// Open loop: orders per second to offer, whatever the latency.
    #[arg(long, conflicts_with = "concurrency", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Closed loop: requests in flight at once (and deposits at once during setup).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,
    /// Seed of the order flow.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Hit a trivial route (`/health/live`) instead of placing orders: the HTTP ceiling.
    #[arg(long, conflicts_with = "deposits")]
    pub baseline: bool,
    /// Deposit 1 unit of the quote asset per request instead of placing orders: one ask
    /// of one account entity each (with `--owned-by`, a same-node against cross-node ask).
    #[arg(long)]
    pub deposits: bool,
    /// Only accounts whose shard this cluster member owns (per `GET /v1/cluster/shards`).
    #[arg(long)]
    pub owned_by: Option<String>,
    /// Clients following the market's live stream (SSE) while the orders flow; the report
    /// adds what they received and each trade's delay to them.
    #[arg(long, default_value_t = 0)]
    pub stream_subscribers: u32,
}

/// Flags of `tradefloor backtest`.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The strategy (JSON); a logistic predictor's `model` is a path relative to this file's
    /// directory.
    #[arg(long)]
    pub strategy: PathBuf,
    /// Recorded ticks: a CSV file with the header `at,price,quantity`.
    #[arg(long, required_unless_present = "journal", conflicts_with = "journal")]
    pub data: Option<PathBuf>,
    /// A node's journal instead of a file (an SQLite file, `sqlite:FILE` or `postgres://…`):
    /// the trades and quotes of the strategy's symbol.
    #[arg(long)]
    pub journal: Option<String>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the equity curve (SVG) to this file.
    #[arg(long, default_value = "equity.svg")]
    pub svg: PathBuf,
    /// Write where the backtest stopped (a checkpoint, JSON) to this file.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Go on from a checkpoint over the same data (its ticks taken are skipped).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop once this many ticks were taken in all (counting a resumed checkpoint's).
    #[arg(long)]
    pub ticks: Option<u64>,
    /// First fit a logistic regression on the data (per bar: the features, and whether the
    /// next close is higher) and write its model to this file; the backtest then loads its
    /// models as usual (name this file in the strategy to run with it).
    #[arg(long)]
    pub fit: Option<PathBuf>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `tradefloor feed`.
#[derive(Debug, Args)]
pub struct FeedArgs {
    /// The recorded ticks: a CSV file with the header `at,price,quantity`.
    #[arg(long)]
    pub csv: PathBuf,
    /// Ticks published per second.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Ticks per request (1 to 1 000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    pub batch: u16,
    /// The node's HTTP address.
    #[arg(long, env = "TRADEFLOOR_NODE", default_value = "http://127.0.0.1:8080")]
    pub node: String,
    /// A `feed` (or admin) bearer token, if the node has tokens.
    #[arg(long, env = "TRADEFLOOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of the CA that issued an `https://` node's certificate.
    #[arg(long, env = "TRADEFLOOR_CA")]
    pub ca: Option<PathBuf>,
    /// The reference symbol the quotes are published for, e.g. BTC-USD.
    #[arg(long)]
    pub symbol: String,
    /// Stamp the ticks with the current time instead of the recorded one, keeping their
    /// spacing (the first tick is stamped with the time the replay starts).
    #[arg(long)]
    pub restamp: bool,
}

/// An API enum from its wire name (`buy`, `gtc`): the words of the HTTP contract on the
/// command line too.
fn wire_name<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use clap_complete::Shell;

    use super::*;

    /// Each shell's script knows the programs and the subcommands down to `ctl archive`'s
    /// flags: it is generated from the same definitions as the parser.
    #[test]
    fn completions_cover_the_whole_command_line() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let script = completions(shell);
            for word in [
                "node",
                "ctl",
                "bench",
                "dead-letters",
                "archive",
                "older-than-seconds",
            ] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }
}
