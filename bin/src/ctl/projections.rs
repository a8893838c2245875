//! `tradefloor ctl projections`, `ctl rebuild NAME` (following the rebuild with a progress
//! bar) and `ctl replay SUBSCRIPTION --offset N | --at TIME`: the read models and the
//! subscriptions for operators.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::{Align, pretty, table};
use crate::api;
use crate::client::Client;
use crate::error::Error;

/// How often a rebuild's progress is read.
pub const REBUILD_POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long `ctl rebuild` follows a rebuild before it leaves it running and says so.
pub const REBUILD_FOLLOW_MAX: Duration = Duration::from_secs(600);
/// Steps of the progress bar.
const BAR_STEPS: u64 = 1_000;

/// The read models, one a line.
pub fn render_projections(list: &api::ProjectionList) -> String {
    if list.projections.is_empty() {
        return "no read models run on this node".to_owned();
    }
    let rows: Vec<Vec<String>> =
        list.projections
            .iter()
            .map(|projection| {
                let rebuild = projection
                    .rebuild
                    .as_ref()
                    .map_or(String::new(), |rebuild| match rebuild.took_ms {
                        Some(took) => format!("rebuilt in {took} ms"),
                        None => format!("rebuilding {:.0} %", rebuild.progress * 100.0),
                    });
                vec![
                    projection.name.clone(),
                    projection.offset.to_string(),
                    projection.lag.to_string(),
                    projection.dead_letters.to_string(),
                    rebuild,
                ]
            })
            .collect();
    table(
        &[
            ("NAME", Align::Left),
            ("OFFSET", Align::Right),
            ("LAG", Align::Right),
            ("PARKED", Align::Right),
            ("REBUILD", Align::Left),
        ],
        &rows,
    )
}

/// Asks for a rebuild of `name` and follows it until it is done.
pub async fn rebuild(client: &Client, name: &str, json: bool) -> Result<String, Error> {
    if json {
        return Ok(pretty(&client.rebuild_projection(name).json_value().await?));
    }
    let started = client.rebuild_projection(name).await?;
    let target = started.rebuild.as_ref().map_or(0, |rebuild| rebuild.target);
    let bar = ProgressBar::new(BAR_STEPS).with_style(
        ProgressStyle::with_template(&format!(
            "rebuilding {name} {{bar:40}} {{percent}} % of {target} events ({{elapsed}})"
        ))
        .expect("the template is valid"),
    );
    let begun = Instant::now();
    loop {
        let list = client.projections().await?;
        let rebuild = list
            .projections
            .iter()
            .find(|projection| projection.name == name)
            .and_then(|projection| projection.rebuild.clone());
        let Some(rebuild) = rebuild else {
            bar.abandon();
            return Ok(format!(
                "{name} restarted during the rebuild; it goes on from its stored offset"
            ));
        };
        bar.set_position((rebuild.progress * BAR_STEPS as f64) as u64);
        if let Some(took) = rebuild.took_ms {
            bar.finish();
            return Ok(format!(
                "rebuilt {name}: {target} events read again in {took} ms"
            ));
        }
        if begun.elapsed() >= REBUILD_FOLLOW_MAX {
            bar.abandon();
            return Ok(format!(
                "{name} still rebuilding after {} s (see `ctl projections`)",
                REBUILD_FOLLOW_MAX.as_secs()
            ));
        }
        tokio::time::sleep(REBUILD_POLL_INTERVAL).await;
    }
}

/// Sets subscription `name` back to `offset`, or to the time `at` (RFC 3339).
pub async fn replay(
    client: &Client,
    name: &str,
    offset: Option<u64>,
    at: Option<&str>,
    json: bool,
) -> Result<String, Error> {
    let at = at.map(micros_of).transpose()?;
    let request = api::ReplayRequest { offset, at };
    if json {
        return Ok(pretty(
            &client
                .replay_subscription(name, &request)
                .json_value()
                .await?,
        ));
    }
    let answer = client.replay_subscription(name, &request).await?;
    Ok(format!(
        "{}: its consumer gets every event after offset {} again",
        answer.name, answer.offset
    ))
}

/// An RFC 3339 time as microseconds since the epoch.
fn micros_of(text: &str) -> Result<i64, Error> {
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|error| Error::Data(format!("--at {text:?}: not an RFC 3339 time ({error})")))?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000)
        .map_err(|_| Error::Data(format!("--at {text:?}: out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_microseconds_and_bad_ones_say_why() {
        assert_eq!(micros_of("1970-01-01T00:00:01.5Z").unwrap(), 1_500_000);
        assert_eq!(
            micros_of("2026-12-07T18:00:00+01:00").unwrap(),
            1_796_662_800_000_000
        );
        assert!(micros_of("yesterday").is_err());
    }

    #[test]
    fn read_models_render_with_their_rebuild() {
        let projection = |name: &str, rebuild: Option<api::RebuildBody>| api::ProjectionBody {
            name: name.to_owned(),
            offset: 40,
            read_to: 40,
            lag: 2,
            events: 40,
            batches: 3,
            dead_letters: 1,
            fenced: false,
            rebuild,
        };
        let list = api::ProjectionList {
            projections: vec![
                projection("trading.balances", None),
                projection(
                    "trading.trades",
                    Some(api::RebuildBody {
                        target: 80,
                        progress: 0.5,
                        started_at_unix_ms: 0,
                        took_ms: None,
                    }),
                ),
            ],
        };
        let text = render_projections(&list);
        assert!(text.starts_with("NAME"), "{text}");
        assert!(
            text.contains("trading.trades") && text.contains("rebuilding 50 %"),
            "{text}"
        );
    }
}
