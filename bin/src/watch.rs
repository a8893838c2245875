//! `tradefloor ctl watch`: a market's or an account's live stream in the terminal.
//!
//! Prints one line per message as it comes (`--json`: the message as JSON, one per line). A
//! connection that drops, or that the node ends (a slow terminal, a node shutting down), is
//! opened again after the last id printed, so nothing is missed or printed twice; a refusal
//! (403, 404, 410) ends the command with the node's error.

use std::time::Duration;

use crate::client::{Client, StreamEvent};
use crate::ctl::print;
use crate::error::Error;

/// Reconnections in a row without a message before `watch` gives up.
const RECONNECTS_MAX: u32 = 5;
/// The pause before a reconnection, times the attempt number.
const RECONNECT_STEP: Duration = Duration::from_millis(200);

/// What `ctl watch` follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A market's stream.
    Market(String),
    /// An account's stream.
    Account(String),
}

impl Target {
    /// The stream's path.
    pub fn path(&self) -> String {
        match self {
            Target::Market(symbol) => format!("/v1/markets/{symbol}/stream"),
            Target::Account(account) => format!("/v1/accounts/{account}/stream"),
        }
    }
}

/// `market:X` or `account:X` as said; otherwise a market if the node lists one by that name,
/// else an account.
pub async fn resolve(client: &Client, target: &str) -> Result<Target, Error> {
    if let Some(symbol) = target.strip_prefix("market:") {
        return Ok(Target::Market(symbol.to_owned()));
    }
    if let Some(account) = target.strip_prefix("account:") {
        return Ok(Target::Account(account.to_owned()));
    }
    match client.market(target).await {
        Ok(_) => Ok(Target::Market(target.to_owned())),
        Err(Error::Api {
            status: 400 | 404, ..
        }) => Ok(Target::Account(target.to_owned())),
        Err(error) => Err(error),
    }
}

/// Prints `target`'s stream after `after` until `count` messages with an id were printed (or
/// forever), reconnecting as the [module](self) says.
pub async fn watch(
    client: &Client,
    target: &Target,
    mut after: Option<u64>,
    count: Option<u64>,
    json: bool,
) -> Result<(), Error> {
    let mut printed = 0;
    let mut failures = 0;
    loop {
        let ended = match client.stream(&target.path(), after).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Ok(Some(event)) => {
                        failures = 0;
                        if event.event == "error" {
                            break format!("the node ended the stream: {}", event.data);
                        }
                        print(&render(&event, json))?;
                        if let Some(id) = event.id {
                            after = Some(id);
                            printed += 1;
                            if count.is_some_and(|count| printed >= count) {
                                return Ok(());
                            }
                        }
                    }
                    Ok(None) => break "the node closed the stream".to_owned(),
                    Err(error) => break error.to_string(),
                }
            },
            Err(Error::Api { status: 503, .. }) => "the node is busy".to_owned(),
            Err(error @ Error::Api { .. }) => return Err(error),
            Err(error) => error.to_string(),
        };
        failures += 1;
        if failures > RECONNECTS_MAX {
            return Err(Error::Http(format!(
                "gave up after {RECONNECTS_MAX} reconnections: {ended}"
            )));
        }
        eprintln!("{ended}; reconnecting after {after:?}");
        tokio::time::sleep(RECONNECT_STEP * failures).await;
    }
}

/// One line: `--json` the event as JSON; otherwise its id, name and fields.
pub fn render(event: &StreamEvent, json: bool) -> String {
    if json {
        return serde_json::json!({"id": event.id, "event": event.event, "data": event.data})
            .to_string();
    }
    let id = event.id.map_or_else(|| "-".to_owned(), |id| id.to_string());
    let fields = match &event.data {
        serde_json::Value::Object(fields) => fields
            .iter()
            .map(|(key, value)| match value {
                serde_json::Value::String(text) => format!("{key}={text}"),
                other => format!("{key}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    format!("{id} {} {fields}", event.event)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_of_its_fields() {
        let event = StreamEvent {
            id: Some(44),
            event: "trade".to_owned(),
            data: serde_json::json!({"symbol": "BTC-USD", "price": 100, "quantity": 2}),
        };
        assert_eq!(
            render(&event, false),
            "44 trade price=100 quantity=2 symbol=BTC-USD"
        );
        let top = StreamEvent {
            id: None,
            event: "top".to_owned(),
            data: serde_json::json!({"bid": null}),
        };
        assert_eq!(render(&top, false), "- top bid=null");
        assert_eq!(
            render(&event, true),
            r#"{"data":{"price":100,"quantity":2,"symbol":"BTC-USD"},"event":"trade","id":44}"#
        );
    }
}
