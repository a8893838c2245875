//! Markets: listing one, its definition, halting and resuming trading on it (admin).

use tradefloor_domain::book::{BookCommand, OrderBook};
use tradefloor_domain::{MarketSpec, Price, Symbol};

use super::{Exchange, state};
use crate::error::Error;

impl Exchange {
    /// Lists a market (admin). Listing it again is refused (`market_already_listed`).
    pub async fn list_market(&self, spec: MarketSpec) -> Result<(), Error> {
        spec.validate().map_err(Error::Rejected)?;
        let command = BookCommand::List {
            spec: spec.clone(),
            at: self.now(),
        };
        self.books
            .ask(spec.symbol.as_str(), command, self.config.ask_deadline)
            .await?;
        self.remember_market(spec);
        Ok(())
    }

    fn remember_market(&self, spec: MarketSpec) {
        self.markets
            .write()
            .expect("no panics under the lock")
            .insert(spec.symbol, spec);
    }

    /// The market's definition: `unknown_market` if it was never listed.
    pub async fn market(&self, symbol: Symbol) -> Result<MarketSpec, Error> {
        if let Some(spec) = self
            .markets
            .read()
            .expect("no panics under the lock")
            .get(&symbol)
        {
            return Ok(spec.clone());
        }
        let (book, _) = state::load_state::<OrderBook>(&self.journal, symbol.as_str()).await?;
        let spec = book.spec().cloned().ok_or(Error::Rejected(
            tradefloor_domain::Error::UnknownMarket { symbol },
        ))?;
        self.remember_market(spec.clone());
        Ok(spec)
    }

    /// Halts trading on a market (admin): submits are refused, cancels served.
    pub async fn halt(&self, symbol: Symbol) -> Result<(), Error> {
        let command = BookCommand::Halt { at: self.now() };
        self.books
            .ask(symbol.as_str(), command, self.config.ask_deadline)
            .await?;
        Ok(())
    }

    /// Resumes a halted market around `reference_price` (default: the last trade price).
    pub async fn resume(
        &self,
        symbol: Symbol,
        reference_price: Option<Price>,
    ) -> Result<(), Error> {
        let command = BookCommand::Resume {
            reference_price,
            at: self.now(),
        };
        self.books
            .ask(symbol.as_str(), command, self.config.ask_deadline)
            .await?;
        Ok(())
    }
}
