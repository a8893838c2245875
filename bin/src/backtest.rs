//! `tradefloor backtest`: recorded market data (a tick file, or a node's journal) through a
//! strategy, with the same code a live strategy runs, deterministically: the same inputs give
//! the same report and equity curve, byte for byte.
//!
//! A run can stop after `--ticks` ticks and write a checkpoint; `--resume` goes on from it over
//! the same data (the ticks it took are skipped, and checked to be the same ones), and gives
//! the report an uninterrupted run gives. `--fit` first fits the learned predictor's model on
//! the data ([`fit`]).

pub mod fit;

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tradefloor_actors::trading::strategies::{prints, ticks_of};
use tradefloor_persistence::{Database, Journal, JournalConfig};
use tradefloor_strategy::report::equity_svg;
use tradefloor_strategy::spec::PrintSource;
use tradefloor_strategy::{
    Backtest, Checkpoint, LogisticModel, Report, Strategy, StrategySpec, Tick,
};

use crate::cli::BacktestArgs;
use crate::error::Error;

/// Events read from a journal per page.
pub const JOURNAL_PAGE_EVENTS: usize = 1_000;
/// Ticks between two updates of the progress bar.
const PROGRESS_TICKS: u64 = 1_024;

/// Runs the backtest, writes its files and prints its report.
pub async fn run(args: BacktestArgs) -> Result<(), Error> {
    let spec = read_spec(&args.strategy)?;
    let ticks = match (&args.data, &args.journal) {
        (Some(path), _) => crate::feed::read_ticks(path)?,
        (None, Some(url)) => journal_ticks(url, &spec.symbol, spec.source).await?,
        (None, None) => return Err(Error::Data("give --data FILE or --journal URL".to_owned())),
    };
    if let Some(path) = &args.fit {
        let fitted = fit::fit(&spec, &ticks)?;
        write(path, &json(&fitted.model)?)?;
        eprintln!(
            "fitted {} on {} bars ({} followed by a higher close)",
            path.display(),
            fitted.samples,
            fitted.rises
        );
    }
    let (id, initial_cash) = (spec.id.clone(), spec.backtest.initial_cash);
    let mut backtest = start(&args, spec, &ticks)?;
    replay(&mut backtest, &ticks, args.ticks)?;
    let checkpoint = backtest.checkpoint();
    let report = backtest.report();
    write(
        &args.svg,
        &equity_svg(&id, i128::from(initial_cash), &checkpoint.ledger.equity),
    )?;
    if let Some(path) = &args.report {
        write(path, &json(&report)?)?;
    }
    if let Some(path) = &args.checkpoint {
        write(path, &json(&checkpoint)?)?;
    }
    print!("{}", shown(&report, args.json)?);
    Ok(())
}

/// The report as printed: its text, or its JSON.
fn shown(report: &Report, as_json: bool) -> Result<String, Error> {
    if as_json {
        json(report)
    } else {
        let mut text = report.text();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        Ok(text)
    }
}

/// The strategy file's spec.
fn read_spec(path: &Path) -> Result<StrategySpec, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::file(path, error))?;
    StrategySpec::from_json(&text).map_err(|error| Error::file(path, error))
}

/// A backtest from the start, or from `--resume`'s checkpoint after checking it is this
/// strategy's over this data.
fn start(args: &BacktestArgs, spec: StrategySpec, ticks: &[Tick]) -> Result<Backtest, Error> {
    let directory = args
        .strategy
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let models = move |name: &str| load_model(&directory.join(name));
    let strategy_error = |error| Error::file(&args.strategy, error);
    let Some(path) = &args.resume else {
        return Ok(Backtest::new(
            Strategy::new(spec, &models).map_err(strategy_error)?,
        ));
    };
    let checkpoint = read_checkpoint(path)?;
    if checkpoint.strategy != spec.id {
        return Err(Error::file(
            path,
            format!(
                "the checkpoint is strategy {}'s, not {}'s",
                checkpoint.strategy, spec.id
            ),
        ));
    }
    check_same_data(path, &checkpoint, ticks)?;
    let strategy = Strategy::resume(spec, checkpoint.state.clone(), &models)
        .map_err(|error| Error::file(path, error))?;
    Backtest::resume(strategy, checkpoint).map_err(|error| Error::file(path, error))
}

fn read_checkpoint(path: &Path) -> Result<Checkpoint, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::file(path, error))?;
    serde_json::from_str(&text)
        .map_err(|error| Error::file(path, format!("not a checkpoint: {error}")))
}

/// Refuses a checkpoint that took more ticks than the data has, or whose last tick is not the
/// data's at that place.
fn check_same_data(path: &Path, checkpoint: &Checkpoint, ticks: &[Tick]) -> Result<(), Error> {
    let taken = usize::try_from(checkpoint.state.ticks).unwrap_or(usize::MAX);
    if taken > ticks.len() {
        return Err(Error::file(
            path,
            format!(
                "the checkpoint took {taken} ticks; the data has only {}",
                ticks.len()
            ),
        ));
    }
    let last = taken.checked_sub(1).map(|index| ticks[index]);
    if last != checkpoint.state.last_tick {
        return Err(Error::file(
            path,
            format!("the checkpoint's tick {taken} is not the data's: other data"),
        ));
    }
    Ok(())
}

/// A logistic predictor's model file.
fn load_model(path: &Path) -> Result<LogisticModel, tradefloor_strategy::Error> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        tradefloor_strategy::Error::InvalidModel(format!("{}: {error}", path.display()))
    })?;
    LogisticModel::from_json(&text).map_err(|error| {
        tradefloor_strategy::Error::InvalidModel(format!("{}: {error}", path.display()))
    })
}

/// Takes the ticks after those already taken, up to `ticks_max` in all, with a progress bar
/// on stderr.
fn replay(backtest: &mut Backtest, ticks: &[Tick], ticks_max: Option<u64>) -> Result<(), Error> {
    let taken = backtest.ticks();
    let end = ticks_max.unwrap_or(u64::MAX).min(ticks.len() as u64);
    if end < taken {
        return Err(Error::Data(format!(
            "--ticks {end} is below the {taken} ticks the checkpoint already took"
        )));
    }
    let progress = progress_bar(end - taken);
    let range = usize::try_from(taken).unwrap_or(usize::MAX)..usize::try_from(end).unwrap_or(0);
    for (index, tick) in (1..).zip(&ticks[range]) {
        backtest.step(tick);
        if index % PROGRESS_TICKS == 0 {
            progress.set_position(index);
        }
    }
    progress.finish_and_clear();
    Ok(())
}

fn progress_bar(length: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    bar.with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} ticks {per_sec} eta {eta}")
            .expect("the template is valid"),
    )
}

/// The ticks of `symbol` from `source` in a node's journal (its trades, or the quotes feeds
/// published), in log order, read in pages.
async fn journal_ticks(url: &str, symbol: &str, source: PrintSource) -> Result<Vec<Tick>, Error> {
    let url = journal_url(url)?;
    let config = JournalConfig::default();
    let database = Database::connect(&url, &config).await?;
    let journal = Journal::open(database, config).await?;
    let filter = prints();
    let mut ticks = Vec::new();
    let mut after = 0;
    loop {
        let page = journal
            .read_all(after, JOURNAL_PAGE_EVENTS, &filter)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.global_offset;
        for stored in &page {
            ticks.extend(ticks_of(stored, symbol, source)?);
        }
    }
    if ticks.is_empty() {
        return Err(Error::Data(format!(
            "the journal has no trade or quote of {symbol}"
        )));
    }
    Ok(ticks)
}

/// A journal URL: `postgres://…` as given; an SQLite file (bare or `sqlite:`) only if it
/// exists (connecting would create an empty one).
fn journal_url(url: &str) -> Result<String, Error> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_owned());
    }
    let path = PathBuf::from(url.strip_prefix("sqlite:").unwrap_or(url));
    if !path.is_file() {
        return Err(Error::file(&path, "no such journal file"));
    }
    Ok(format!("sqlite:{}", path.display()))
}

/// Pretty JSON with a final newline.
fn json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|error| Error::Data(format!("cannot serialize: {error}")))?;
    text.push('\n');
    Ok(text)
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|error| Error::file(path, error))
}
