//! What the actors crate's integration tests share: a journal on a real SQLite file, account
//! commands, and a market and trading configuration tuned for quick tests.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use tradefloor_actors::EntityConfig;
use tradefloor_actors::hosting::projection::ProjectionConfig;
use tradefloor_actors::trading::TradingConfig;
use tradefloor_actors::trading::feed::FeedConfig;
use tradefloor_domain::account::{AccountCommand, AccountReply};
use tradefloor_domain::saga::SagaConfig;
use tradefloor_domain::{
    AccountId, Amount, Asset, CommandId, MarketSpec, Price, Quantity, Symbol, Timestamp,
};
use tradefloor_persistence::{Database, Journal, JournalConfig};

pub(crate) struct Fixture {
    pub(crate) journal: Journal,
    pub(crate) url: String,
    _directory: tempfile::TempDir,
}

pub(crate) async fn fixture_with(journal_config: JournalConfig) -> Fixture {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", directory.path().join("journal.db").display());
    let database = Database::connect(&url, &journal_config).await.unwrap();
    let journal = Journal::open(database, journal_config).await.unwrap();
    Fixture {
        journal,
        url,
        _directory: directory,
    }
}

pub(crate) async fn fixture() -> Fixture {
    fixture_with(JournalConfig::default()).await
}

pub(crate) fn usd() -> Asset {
    Asset::new("USD").unwrap()
}

pub(crate) fn deposit(id: &str, amount: u64) -> AccountCommand {
    AccountCommand::Deposit {
        command_id: CommandId::new(id).unwrap(),
        asset: usd(),
        amount: Amount(amount),
        effective_at: None,
        at: Timestamp(1),
    }
}

pub(crate) fn withdraw(id: &str, amount: u64) -> AccountCommand {
    AccountCommand::Withdraw {
        command_id: CommandId::new(id).unwrap(),
        asset: usd(),
        amount: Amount(amount),
        effective_at: None,
        at: Timestamp(2),
    }
}

pub(crate) fn total(reply: &AccountReply) -> u64 {
    reply.balances[&usd()].total.get()
}

pub(crate) async fn stored_events(journal: &Journal, stream: &str) -> usize {
    journal.read_stream(stream, 1, 100_000).await.unwrap().len()
}

pub(crate) fn asset(code: &str) -> Asset {
    Asset::new(code).unwrap()
}

pub(crate) fn account(id: &str) -> AccountId {
    AccountId::new(id).unwrap()
}

pub(crate) fn symbol() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

pub(crate) fn market() -> MarketSpec {
    MarketSpec {
        symbol: symbol(),
        base: asset("BTC"),
        quote: asset("USD"),
        tick_size: Price(1),
        lot_size: Quantity(1),
        min_quantity: Quantity(1),
        max_quantity: Quantity(1_000),
        band_bps: 5_000,
        reference_price: Some(Price(100)),
    }
}

pub(crate) fn trading_config() -> TradingConfig {
    TradingConfig {
        entities: EntityConfig {
            shard_count: 4,
            ..EntityConfig::default()
        },
        saga: SagaConfig {
            step_timeout_micros: 200_000,
            step_timeout_max_micros: 1_000_000,
            attempts_max: 8,
        },
        feed: FeedConfig {
            batch_events_max: 256,
            poll_interval: Duration::from_millis(20),
            batch_interval_min: Duration::from_millis(5),
        },
        projections: ProjectionConfig {
            batch_events_max: 256,
            poll_interval: Duration::from_millis(20),
            batch_interval_min: Duration::from_millis(5),
            ..ProjectionConfig::default()
        },
        ..TradingConfig::default()
    }
}
