//! The log's price prints as strategies read them: the trades of a market's book and the
//! quotes a feed published for a reference symbol.

use tradefloor_domain::Aggregate;
use tradefloor_domain::book::{BookEvent, OrderBook};
use tradefloor_domain::quote::QuoteEvent;
use tradefloor_persistence::{Filter, StoredEvent};
use tradefloor_strategy::Tick;
use tradefloor_strategy::spec::PrintSource;

use crate::error::Error;
use crate::hosting::entity::Persistent;
use crate::trading::quotes::{QUOTES_KIND, quote_codec};

/// The filter strategies read the log with: every event (a filter takes one tag, and prints
/// are tagged `trade` on books and `quote` on feeds' streams); [`ticks_of`] keeps the prints
/// of one symbol, testing the stream's name before it decodes anything.
pub fn prints() -> Filter {
    Filter::All
}

/// The ticks of `symbol` from `source` in `stored`: its trades if it is the symbol's book's
/// (for [`PrintSource::Trades`]), its quotes if it is the symbol's quotes' (for
/// [`PrintSource::Quotes`]), nothing otherwise.
///
/// # Errors
///
/// [`Error::Persistence`] if the event does not decode.
pub fn ticks_of(
    stored: &StoredEvent,
    symbol: &str,
    source: PrintSource,
) -> Result<Vec<Tick>, Error> {
    let Some((_, id)) = stored.stream.split_once('|') else {
        return Ok(Vec::new());
    };
    if id != symbol {
        return Ok(Vec::new());
    }
    let undecodable = |error: tradefloor_persistence::Error| Error::Persistence {
        actor: "strategies".to_owned(),
        reason: error.to_string(),
    };
    if source == PrintSource::Trades && stored.kind == <OrderBook as Aggregate>::KIND {
        let event = <OrderBook as Persistent>::codec()
            .decode(stored)
            .map_err(undecodable)?;
        return Ok(match event {
            BookEvent::Traded(trade) => vec![Tick {
                at: trade.at.micros(),
                price: trade.price.get(),
                quantity: trade.quantity.get(),
            }],
            _ => Vec::new(),
        });
    }
    if source == PrintSource::Quotes && stored.kind == QUOTES_KIND {
        let QuoteEvent::Published { quotes } = quote_codec().decode(stored).map_err(undecodable)?;
        return Ok(quotes
            .iter()
            .map(|quote| Tick {
                at: quote.at.micros(),
                price: quote.price.get(),
                quantity: quote.quantity.get(),
            })
            .collect());
    }
    Ok(Vec::new())
}
