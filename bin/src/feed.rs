//! `tradefloor feed`: replays a recorded tick file into a node as a feed's quotes
//! (`POST /v1/markets/{symbol}/quotes`), in batches paced so that `--rate` ticks a second are
//! published, with progress on stderr and a summary at the end.
//!
//! Batch `k` is due when the ticks before it would have gone out at the rate, measured from the
//! start: a slow answer delays the next batch but the replay catches up after it, so the rate
//! holds over the run rather than per request. With `--restamp` each tick is stamped
//! `now + (its time − the first tick's time)`, so a recording replays as if live.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tradefloor_strategy::Tick;

use crate::api::{QuoteRequest, QuotesRequest};
use crate::cli::FeedArgs;
use crate::client::Client;
use crate::error::Error;

/// What a replay published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Ticks published.
    pub ticks: u64,
    /// Requests sent.
    pub batches: u64,
    /// The log offset of the last batch.
    pub last_offset: Option<u64>,
}

/// Replays the file and prints the summary.
pub async fn run(args: FeedArgs) -> Result<(), Error> {
    let ticks = read_ticks(&args.csv)?;
    let client = Client::new(&args.node, args.token.as_deref(), args.ca.as_deref())?;
    let started = Instant::now();
    let summary = replay(&client, &args, &ticks).await?;
    let seconds = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)] // a rate for people to read
    let rate = summary.ticks as f64 / seconds.max(f64::EPSILON);
    println!(
        "published {} ticks of {} in {} batches in {seconds:.1} s ({rate:.0} ticks/s); last offset {}",
        summary.ticks,
        args.symbol,
        summary.batches,
        summary
            .last_offset
            .map_or_else(|| "none".to_owned(), |offset| offset.to_string())
    );
    Ok(())
}

/// The ticks of a CSV file; an error names the file (and the line).
///
/// # Errors
///
/// [`Error::File`] if it cannot be read or a line is not a tick, [`Error::Data`] if it has
/// no tick.
pub fn read_ticks(path: &Path) -> Result<Vec<Tick>, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::file(path, error))?;
    let ticks = Tick::parse_csv(&text).map_err(|error| Error::file(path, error))?;
    if ticks.is_empty() {
        return Err(Error::file(path, "no tick in the file"));
    }
    Ok(ticks)
}

/// Publishes `ticks` in batches at the rate.
async fn replay(client: &Client, args: &FeedArgs, ticks: &[Tick]) -> Result<Summary, Error> {
    let shift = if args.restamp {
        now_micros() - ticks[0].at
    } else {
        0
    };
    let progress = progress_bar(ticks.len() as u64);
    let started = tokio::time::Instant::now();
    let mut summary = Summary {
        ticks: 0,
        batches: 0,
        last_offset: None,
    };
    for batch in ticks.chunks(usize::from(args.batch)) {
        tokio::time::sleep_until(started + due_after(summary.ticks, args.rate)).await;
        let request = QuotesRequest {
            quotes: batch
                .iter()
                .map(|tick| QuoteRequest {
                    at: Some(tick.at.saturating_add(shift)),
                    price: tick.price,
                    quantity: Some(tick.quantity),
                })
                .collect(),
        };
        let accepted = client.publish_quotes(&args.symbol, &request).await?;
        summary.ticks += accepted.accepted;
        summary.batches += 1;
        summary.last_offset = Some(accepted.offset);
        progress.set_position(summary.ticks);
    }
    progress.finish_and_clear();
    Ok(summary)
}

/// When the batch after `published` ticks is due, from the start, at `rate` ticks a second.
pub fn due_after(published: u64, rate: u64) -> Duration {
    assert!(rate > 0, "a rate is positive");
    Duration::from_micros(published.saturating_mul(1_000_000) / rate)
}

fn progress_bar(length: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ticks {per_sec} eta {eta}")
            .expect("the template is valid"),
    )
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_due_at_the_rate_from_the_start() {
        assert_eq!(due_after(0, 1_000), Duration::ZERO);
        assert_eq!(due_after(500, 1_000), Duration::from_millis(500));
        assert_eq!(due_after(3, 2), Duration::from_millis(1_500));
    }
}
