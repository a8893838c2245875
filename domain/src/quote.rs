//! External market data: quotes and trades of reference symbols that a `feed` publishes, so
//! strategies read them from the log like the node's own trades.

use serde::{Deserialize, Serialize};

use crate::aggregate::Message;
use crate::units::{Price, Quantity, Timestamp};

/// Most quotes in one published batch.
pub const QUOTES_PER_BATCH_MAX: usize = 1_000;

/// One external print: a trade of `quantity` at `price`, or a quote (`quantity` 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// When it happened at its source.
    pub at: Timestamp,
    /// Its price, in the symbol's quote units per base unit.
    pub price: Price,
    /// Its size, in base units (0 for a quote without size).
    pub quantity: Quantity,
}

/// What the journal of a reference symbol (`quotes|SYMBOL`) holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuoteEvent {
    /// A feed published a batch of quotes, in its order.
    Published {
        /// The quotes.
        quotes: Vec<Quote>,
    },
}

impl Message for QuoteEvent {
    const SCHEMA_VERSION: u16 = 1;
    const NAMES: &'static [&'static str] = &["quotes.published"];

    fn name(&self) -> &'static str {
        match self {
            QuoteEvent::Published { .. } => "quotes.published",
        }
    }
}
