//! Accounts: deposits and withdrawals (each an account command, idempotent by command id)
//! and the bitemporal history of an account.

use std::collections::BTreeMap;

use tradefloor_domain::account::{Account, AccountCommand, AccountEvent, AccountReply};
use tradefloor_domain::history::{RecordedEvent, account_as_of};
use tradefloor_domain::{AccountId, Amount, Asset, CommandId, Timestamp};

use super::{AccountHistory, BalanceView, Exchange, balance_view};
use crate::error::Error;
use crate::hosting::entity::{Persistent, stream_of};

impl Exchange {
    pub(super) fn command_id(
        &self,
        given: Option<CommandId>,
        kind: &str,
    ) -> Result<CommandId, Error> {
        match given {
            Some(command_id) => Ok(command_id),
            None => CommandId::new(&format!("{kind}-{}", self.next_id())).map_err(Error::Rejected),
        }
    }

    /// Credits `amount` of `asset`; answers the touched balance. A repeated `command_id`
    /// repeats the first answer; `effective_at` in the past records a correction.
    pub async fn deposit(
        &self,
        account_id: AccountId,
        asset: Asset,
        amount: Amount,
        command_id: Option<CommandId>,
        effective_at: Option<Timestamp>,
    ) -> Result<BTreeMap<Asset, BalanceView>, Error> {
        let command = AccountCommand::Deposit {
            command_id: self.command_id(command_id, "deposit")?,
            asset,
            amount,
            effective_at,
            at: self.now(),
        };
        self.account_command(account_id, command).await
    }

    /// Debits `amount` of `asset` from what is available; answers the touched balance.
    pub async fn withdraw(
        &self,
        account_id: AccountId,
        asset: Asset,
        amount: Amount,
        command_id: Option<CommandId>,
        effective_at: Option<Timestamp>,
    ) -> Result<BTreeMap<Asset, BalanceView>, Error> {
        let command = AccountCommand::Withdraw {
            command_id: self.command_id(command_id, "withdraw")?,
            asset,
            amount,
            effective_at,
            at: self.now(),
        };
        self.account_command(account_id, command).await
    }

    async fn account_command(
        &self,
        account_id: AccountId,
        command: AccountCommand,
    ) -> Result<BTreeMap<Asset, BalanceView>, Error> {
        let reply: AccountReply = self
            .accounts
            .ask(account_id.as_str(), command, self.config.ask_deadline)
            .await?;
        Ok(reply
            .balances
            .into_iter()
            .map(|(asset, balance)| (asset, balance_view(balance)))
            .collect())
    }

    /// The account as of `valid_at`, as known at `known_at` (bitemporal).
    pub async fn account_history(
        &self,
        account_id: AccountId,
        valid_at: Timestamp,
        known_at: Timestamp,
    ) -> Result<AccountHistory, Error> {
        let stream = stream_of::<Account>(account_id.as_str());
        let codec = <Account as Persistent>::codec();
        let failed = |error: tradefloor_persistence::Error| Error::Persistence {
            actor: stream.clone(),
            reason: error.to_string(),
        };
        let mut stored = Vec::new();
        loop {
            let page = self
                .journal
                .read_stream(
                    &stream,
                    stored.len() as u64 + 1,
                    self.journal.config().read_rows_max,
                )
                .await
                .map_err(failed)?;
            if page.is_empty() {
                break;
            }
            stored.extend(page);
        }
        let events = stored
            .iter()
            .map(|event| Ok((Timestamp(event.recorded_at), codec.decode(event)?)))
            .collect::<Result<Vec<(Timestamp, AccountEvent)>, tradefloor_persistence::Error>>()
            .map_err(failed)?;
        let view = account_as_of(
            events.iter().map(|(recorded_at, event)| RecordedEvent {
                recorded_at: *recorded_at,
                event,
            }),
            valid_at,
            known_at,
        );
        Ok(AccountHistory {
            balances: view.balances,
            events: view
                .events
                .iter()
                .map(|recorded| (recorded.recorded_at, recorded.event.clone()))
                .collect(),
        })
    }
}
