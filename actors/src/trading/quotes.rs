//! External market data: a feed publishes quotes of reference symbols, journaled on the
//! symbol's stream `quotes|SYMBOL` like any other event (strategies read them from the log).

use tradefloor_domain::quote::{QUOTES_PER_BATCH_MAX, Quote, QuoteEvent};
use tradefloor_domain::{Amount, Message, Symbol};
use tradefloor_persistence::{AppendRequest, EventCodec};

use super::Exchange;
use crate::error::Error;

/// The kind of the quotes' streams.
pub const QUOTES_KIND: &str = "quotes";
/// The tag of quote events (not `trade`: the trades' read models decode every event tagged
/// so as a book's).
pub const QUOTE_TAG: &str = "quote";
/// Appends a batch retries after another writer (a node on the same journal) got there first.
const CONFLICT_RETRIES: usize = 3;

/// The codec of quote events.
pub fn quote_codec() -> EventCodec<QuoteEvent> {
    EventCodec::new(
        QuoteEvent::SCHEMA_VERSION,
        QuoteEvent::name,
        QuoteEvent::NAMES,
    )
}

/// The stream of `symbol`'s quotes.
pub fn quotes_stream(symbol: Symbol) -> String {
    format!("{QUOTES_KIND}|{symbol}")
}

impl Exchange {
    /// Journals a batch of `symbol`'s quotes (1 to [`QUOTES_PER_BATCH_MAX`], each with a
    /// positive price); answers the global offset of the batch.
    ///
    /// # Errors
    ///
    /// [`Error::Rejected`] for an empty, oversized or zero-priced batch; [`Error::Persistence`]
    /// if the journal refuses it.
    pub async fn publish_quotes(&self, symbol: Symbol, quotes: Vec<Quote>) -> Result<u64, Error> {
        if quotes.is_empty() || quotes.len() > QUOTES_PER_BATCH_MAX {
            return Err(Error::Rejected(tradefloor_domain::Error::InvalidQuotes {
                reason: format!("a batch holds 1 to {QUOTES_PER_BATCH_MAX} quotes"),
            }));
        }
        let max = Amount::BALANCE_MAX.get();
        if quotes.iter().any(|quote| {
            quote.price.is_zero() || quote.price.get() > max || quote.quantity.get() > max
        }) {
            return Err(Error::Rejected(tradefloor_domain::Error::InvalidQuotes {
                reason: format!("a quote's price is in 1..={max}, its quantity in 0..={max}"),
            }));
        }
        let storage = |error: tradefloor_persistence::Error| Error::Persistence {
            actor: format!("quotes/{symbol}"),
            reason: error.to_string(),
        };
        let stream = quotes_stream(symbol);
        let event = quote_codec()
            .to_new_event(
                &QuoteEvent::Published { quotes },
                vec![QUOTE_TAG.to_owned()],
                None,
            )
            .map_err(storage)?;
        let _turn = self.quotes_lock.lock().await;
        let mut attempt = 0;
        loop {
            let expected_sequence = self.journal.last_sequence(&stream).await.map_err(storage)?;
            let request = AppendRequest {
                stream: stream.clone(),
                kind: QUOTES_KIND.to_owned(),
                expected_sequence,
                events: vec![event.clone()],
                fence: None,
            };
            match self.journal.append(request).await {
                Ok(outcome) => return Ok(outcome.first_offset),
                Err(tradefloor_persistence::Error::Conflict { .. })
                    if attempt < CONFLICT_RETRIES =>
                {
                    attempt += 1;
                }
                Err(error) => return Err(storage(error)),
            }
        }
    }
}
