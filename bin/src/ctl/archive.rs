//! `tradefloor ctl archive`: starts an archive run and follows it with a progress bar, or
//! (`--status`) shows what the archive holds.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::pretty;
use crate::api;
use crate::client::Client;
use crate::error::Error;

/// How often a run's progress is read.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long `ctl archive` follows a run before it leaves it running and says so.
const FOLLOW_MAX: Duration = Duration::from_secs(3_600);
/// Steps of the progress bar.
const BAR_STEPS: u64 = 1_000;

/// Runs `ctl archive`.
pub async fn run(
    client: &Client,
    older_than_seconds: Option<u64>,
    status: bool,
    json: bool,
) -> Result<String, Error> {
    if status {
        return Ok(if json {
            pretty(&client.archive().json_value().await?)
        } else {
            render(&client.archive().await?)
        });
    }
    let request = api::ArchiveRequest { older_than_seconds };
    if json {
        return Ok(pretty(&client.start_archive(&request).json_value().await?));
    }
    client.start_archive(&request).await?;
    let bar = ProgressBar::new(BAR_STEPS).with_style(
        ProgressStyle::with_template(
            "archiving {bar:40} {percent} % of the log, {msg} ({elapsed})",
        )
        .expect("the template is valid"),
    );
    let begun = Instant::now();
    loop {
        let archive = client.archive().await?;
        let Some(run) = &archive.run else {
            bar.abandon();
            return Ok("the node restarted during the run; start it again".to_owned());
        };
        bar.set_position((run.progress * BAR_STEPS as f64) as u64);
        bar.set_message(format!("{} events in {} files", run.events, run.files));
        if run.took_ms.is_some() {
            bar.finish();
            return match &run.error {
                Some(error) => Err(Error::Data(format!("the archive run failed: {error}"))),
                None => Ok(render(&archive)),
            };
        }
        if begun.elapsed() >= FOLLOW_MAX {
            bar.abandon();
            return Ok(format!(
                "still archiving after {} s (see `ctl archive --status`)",
                FOLLOW_MAX.as_secs()
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// What the archive holds and the last run, as lines.
pub fn render(archive: &api::ArchiveBody) -> String {
    let mut text = format!(
        "archive: {} events in {} files, {} bytes",
        archive.events, archive.files, archive.bytes
    );
    match archive.horizon_seconds {
        Some(horizon) => text.push_str(&format!("; the node archives after {horizon} s")),
        None => text.push_str("; the node archives only when asked"),
    }
    if let Some(run) = &archive.run {
        let state = match (run.took_ms, &run.error) {
            (Some(_), Some(error)) => format!("failed: {error}"),
            (Some(took), None) => format!("done in {took} ms"),
            (None, _) => format!("running, {:.0} %", run.progress * 100.0),
        };
        text.push_str(&format!(
            "\nlast run: {} events in {} files ({} bytes), {state}",
            run.events, run.files, run.bytes
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_renders_with_its_last_run() {
        let mut archive = api::ArchiveBody {
            files: 2,
            events: 11,
            bytes: 900,
            horizon_seconds: None,
            run: None,
        };
        assert_eq!(
            render(&archive),
            "archive: 11 events in 2 files, 900 bytes; the node archives only when asked"
        );
        archive.horizon_seconds = Some(86_400);
        archive.run = Some(api::ArchiveRunBody {
            recorded_before: 0,
            started_at_unix_ms: 0,
            files: 1,
            events: 7,
            bytes: 500,
            through_offset: 12,
            last_offset: 24,
            progress: 0.5,
            took_ms: None,
            error: None,
        });
        let text = render(&archive);
        assert!(text.contains("after 86400 s"), "{text}");
        assert!(
            text.ends_with("7 events in 1 files (500 bytes), running, 50 %"),
            "{text}"
        );
    }
}
