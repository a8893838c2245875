//! What the entity-runtime tests share: a journal on a real SQLite file and account commands.

// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use tradefloor_domain::account::{AccountCommand, AccountReply};
use tradefloor_domain::{Amount, Asset, CommandId, Timestamp};
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
