//! `tradefloor ctl dead-letters`: the events the log's consumers parked, one a line, and the
//! undeliverable actor messages; `retry ID` and `delete ID`.

use std::fmt::Write as _;

use super::{Align, pretty, show, table};
use crate::api;
use crate::cli::DeadLetterCommand;
use crate::client::Client;
use crate::error::Error;

/// Letters one listing shows (the node pages them; `--json` gives `next_after`).
pub const LETTERS_SHOWN_MAX: u32 = 1_000;

/// Runs one `ctl dead-letters` command: the text to print.
pub async fn run(
    client: &Client,
    command: Option<DeadLetterCommand>,
    consumer: Option<String>,
    json: bool,
) -> Result<String, Error> {
    match command {
        None => {
            let query = api::DeadLettersQuery {
                consumer,
                after: None,
                limit: Some(LETTERS_SHOWN_MAX),
            };
            show(client.dead_letters(&query), json, render_letters).await
        }
        Some(DeadLetterCommand::Retry { id }) => {
            if json {
                return Ok(pretty(&client.retry_dead_letter(&id).json_value().await?));
            }
            let answer = client.retry_dead_letter(&id).await?;
            Ok(format!(
                "retry asked for {} ({} letter{}); the consumer tries within its poll interval",
                answer.id,
                answer.letters,
                if answer.letters == 1 { "" } else { "s" }
            ))
        }
        Some(DeadLetterCommand::Delete { id }) => {
            client.delete_dead_letter(&id).status().await?;
            Ok(if json {
                pretty(&serde_json::json!({ "id": id, "deleted": true }))
            } else {
                format!("deleted {id}: the event will not be applied")
            })
        }
    }
}

/// The letters, one a line, then the counts and the undeliverable messages.
pub fn render_letters(page: &api::DeadLettersPage) -> String {
    let mut text = if page.letters.is_empty() {
        "no parked events".to_owned()
    } else {
        let rows: Vec<Vec<String>> = page
            .letters
            .iter()
            .map(|letter| {
                vec![
                    letter.id.clone(),
                    letter.event["stream"].as_str().unwrap_or("").to_owned(),
                    letter.event["name"].as_str().unwrap_or("").to_owned(),
                    letter.attempts.to_string(),
                    if letter.retry_requested { "yes" } else { "" }.to_owned(),
                    letter.error.clone(),
                ]
            })
            .collect();
        table(
            &[
                ("ID", Align::Left),
                ("STREAM", Align::Left),
                ("EVENT", Align::Left),
                ("ATTEMPTS", Align::Right),
                ("RETRY", Align::Left),
                ("ERROR", Align::Left),
            ],
            &rows,
        )
    };
    if page.next_after.is_some() {
        let _ = write!(text, "\n… more (the first {} shown)", page.letters.len());
    }
    for (consumer, count) in &page.counts {
        let _ = write!(text, "\n{consumer}: {count} parked");
    }
    let undelivered = &page.undelivered;
    let _ = write!(
        text,
        "\nundeliverable actor messages: {} since start",
        undelivered.total
    );
    for letter in &undelivered.recent {
        let _ = write!(
            text,
            "\n  {} ← {}: {}",
            letter["recipient"].as_str().unwrap_or("?"),
            letter["message_type"].as_str().unwrap_or("?"),
            letter["reason"].as_str().unwrap_or("?"),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_render_one_a_line_with_counts_and_undelivered_messages() {
        let page = api::DeadLettersPage {
            letters: vec![api::DeadLetterBody {
                id: "trading.trades:42".to_owned(),
                consumer: "trading.trades".to_owned(),
                offset: 42,
                error: "trigger refused".to_owned(),
                attempts: 5,
                parked_at: 0,
                order_key: None,
                held_by: None,
                retry_requested: true,
                event: serde_json::json!({"stream": "order_book|BTC-USD", "name": "book.traded"}),
            }],
            next_after: None,
            counts: [("trading.trades".to_owned(), 1)].into_iter().collect(),
            undelivered: api::UndeliveredBody {
                total: 3,
                recent: vec![serde_json::json!({
                    "recipient": "/shards/7", "message_type": "Deliver", "reason": "stopped"
                })],
            },
        };
        let text = render_letters(&page);
        assert!(text.starts_with("ID "), "{text}");
        assert!(
            text.contains("trading.trades:42")
                && text.contains("order_book|BTC-USD")
                && text.contains("book.traded")
                && text.contains("trigger refused"),
            "{text}"
        );
        assert!(text.contains("trading.trades: 1 parked"), "{text}");
        assert!(
            text.contains("undeliverable actor messages: 3 since start"),
            "{text}"
        );
        assert!(text.contains("/shards/7 ← Deliver: stopped"), "{text}");
    }
}
