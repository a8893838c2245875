//! Risk an account's owner sets and reads: its limits (enforced by the account before every
//! hold), its positions per market, and the flags the risk monitor raised on it.

use serde::Serialize;
use tradefloor_domain::account::{Account, AccountCommand, RiskLimits};
use tradefloor_domain::{AccountId, CommandId};

use super::projections::{self, from_sql};
use super::{Exchange, RiskFlag, risk};
use crate::error::Error;

/// What an account has traded on one market (the positions read model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Position {
    /// The market.
    pub symbol: String,
    /// Base units bought.
    pub bought: u64,
    /// Base units sold.
    pub sold: u64,
    /// Trades it took part in.
    pub trades: u64,
}

impl Exchange {
    /// Replaces `account_id`'s risk limits (idempotent by `command_id`); answers them.
    pub async fn set_limits(
        &self,
        account_id: AccountId,
        limits: RiskLimits,
        command_id: Option<CommandId>,
    ) -> Result<RiskLimits, Error> {
        limits.validate().map_err(Error::Rejected)?;
        let command = AccountCommand::SetRiskLimits {
            command_id: self.command_id(command_id, "limits")?,
            limits: limits.clone(),
            at: self.now(),
        };
        self.accounts
            .ask(account_id.as_str(), command, self.config.ask_deadline)
            .await?;
        Ok(limits)
    }

    /// The risk limits in force on `account_id` (the defaults until set).
    pub async fn limits(&self, account_id: AccountId) -> Result<RiskLimits, Error> {
        self.look(&self.accounts, account_id.as_str(), |account: &Account| {
            account.limits().clone()
        })
        .await
    }

    /// What `account_id` has traded, per market (trails the log by the read model's lag).
    pub async fn positions(&self, account_id: AccountId) -> Result<Vec<Position>, Error> {
        let rows = self
            .journal
            .read_models()
            .fetch(
                "SELECT symbol, bought, sold, trades FROM trading_positions \
                 WHERE account_id = $1 ORDER BY symbol",
                &[account_id.as_str().into()],
            )
            .await
            .map_err(|error| projections::storage("positions", error))?;
        rows.iter()
            .map(|row| {
                Ok(Position {
                    symbol: row[0].text().unwrap_or_default().to_owned(),
                    bought: from_sql(&row[1], "bought")?,
                    sold: from_sql(&row[2], "sold")?,
                    trades: from_sql(&row[3], "trades")?,
                })
            })
            .collect::<Result<_, projections::ReadModelError>>()
            .map_err(|error| projections::storage("positions", error))
    }

    /// The flags the risk monitor raised on `account_id`, by asset.
    pub async fn account_risk_flags(&self, account_id: AccountId) -> Result<Vec<RiskFlag>, Error> {
        risk::flags_matching(self.journal.read_models(), Some(account_id.as_str()), 0)
            .await
            .map_err(|error| projections::storage("risk", error))
    }
}
