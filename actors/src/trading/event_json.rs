//! A stored event as JSON for consumers outside the node (the broker sink, `GET /v1/events`):
//! its envelope and the decoded event, as the history routes show events.

use serde::Serialize;
use serde_json::{Value, json};
use tradefloor_domain::Aggregate;
use tradefloor_domain::account::Account;
use tradefloor_domain::book::OrderBook;
use tradefloor_domain::saga::OrderSaga;
use tradefloor_persistence::StoredEvent;

use super::{alerts, quotes, strategies};
use crate::hosting::entity::Persistent;

/// `{offset, stream, kind, sequence, name, schema_version, recorded_at, effective_at, tags,
/// event}`; an event that cannot be decoded has `"event": null` and its `decode_error`.
pub fn envelope(stored: &StoredEvent) -> Value {
    let mut body = json!({
        "offset": stored.global_offset,
        "stream": stored.stream,
        "kind": stored.kind,
        "sequence": stored.sequence,
        "name": stored.name,
        "schema_version": stored.schema_version,
        "recorded_at": stored.recorded_at,
        "effective_at": stored.effective_at,
        "tags": stored.tags,
    });
    match decoded(stored) {
        Ok(event) => body["event"] = event,
        Err(reason) => {
            body["event"] = Value::Null;
            body["decode_error"] = Value::String(reason);
        }
    }
    body
}

/// The event decoded, by its kind.
fn decoded(stored: &StoredEvent) -> Result<Value, String> {
    fn value<T: Serialize>(event: Result<T, impl std::fmt::Display>) -> Result<Value, String> {
        let event = event.map_err(|error| error.to_string())?;
        serde_json::to_value(event).map_err(|error| error.to_string())
    }
    match stored.kind.as_str() {
        <Account as Aggregate>::KIND => value(Account::codec().decode_shared(stored)),
        <OrderBook as Aggregate>::KIND => value(OrderBook::codec().decode_shared(stored)),
        <OrderSaga as Aggregate>::KIND => value(OrderSaga::codec().decode_shared(stored)),
        quotes::QUOTES_KIND => value(quotes::quote_codec().decode_shared(stored)),
        strategies::STRATEGY_KIND => value(strategies::strategy_codec().decode_shared(stored)),
        alerts::ALERT_KIND => value(alerts::alert_codec().decode_shared(stored)),
        other => Err(format!("no codec for events of kind {other}")),
    }
}

/// Whether the envelope's event concerns `symbol`: its stream is the symbol's book or quotes,
/// or the event names the symbol in a top-level `symbol` field (an account's hold, a saga's
/// start, a strategy's spec).
pub fn concerns_symbol(envelope: &Value, symbol: &str) -> bool {
    let stream = envelope["stream"].as_str().unwrap_or_default();
    if stream.split_once('|').is_some_and(|(kind, entity)| {
        entity == symbol && (kind == "order_book" || kind == "quotes")
    }) {
        return true;
    }
    // The decoded event is `{variant: {fields…}}`; look one level into it and into `order`.
    let Some(fields) = envelope["event"]
        .as_object()
        .and_then(|event| event.values().next())
    else {
        return false;
    };
    let named = |value: &Value| value["symbol"].as_str() == Some(symbol);
    named(fields) || named(&fields["order"]) || named(&fields["spec"])
}
