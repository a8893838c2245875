//! `tradefloor ctl strategies` and `ctl strategy show|create|start|stop`: live strategies
//! from a terminal.
//!
//! `create` reads the spec file here and checks it (JSON, a valid spec naming the account it
//! trades for) before sending it, so a bad file is refused with its name and the reason
//! without a call to the node. The node reads a logistic predictor's model file itself:
//! a relative `model` path is taken from the spec file's directory, as `tradefloor
//! backtest` takes it, and sent as an absolute path when that file exists here.
//!
//! Like the other commands, each prints the node's JSON with `--json` and a rendering for
//! people otherwise; the rendering functions are pure and tested without a node.

use std::fmt::Write as _;
use std::path::Path;

use tradefloor_strategy::engine::Decision;
use tradefloor_strategy::{BreakerState, Direction, Signal, StrategySpec};

use super::{Align, pretty, show, snake_case, table};
use crate::api;
use crate::cli::StrategyCommand;
use crate::client::Client;
use crate::error::Error;

/// Decisions `ctl strategy show` lists, newest last (the node keeps a few more).
pub const DECISIONS_SHOWN_MAX: usize = 8;

/// Runs one `ctl strategy` command: the text to print.
pub async fn run(client: &Client, command: StrategyCommand, json: bool) -> Result<String, Error> {
    match command {
        StrategyCommand::Show { id } => show(client.strategy(&id), json, render_strategy).await,
        StrategyCommand::Create { file } => {
            let spec = read_spec(&file)?;
            if json {
                return Ok(pretty(&client.create_strategy(&spec).json_value().await?));
            }
            let view = client.create_strategy(&spec).await?;
            Ok(format!("created\n{}", render_strategy(&view)))
        }
        StrategyCommand::Start { id } => {
            show(client.start_strategy(&id), json, render_strategy).await
        }
        StrategyCommand::Stop { id, reason } => {
            let stop = api::StopStrategyRequest { reason };
            show(client.stop_strategy(&id, &stop), json, render_strategy).await
        }
    }
}

/// The spec in `path` as the node takes it: a valid strategy naming its account, its
/// relative model paths made absolute from the file's directory (when the model is there).
pub fn read_spec(path: &Path) -> Result<serde_json::Value, Error> {
    let text = std::fs::read_to_string(path).map_err(|error| Error::file(path, error))?;
    let mut spec: StrategySpec = serde_json::from_str(&text)
        .map_err(|error| Error::file(path, format!("not a strategy spec: {error}")))?;
    spec.validate()
        .map_err(|error| Error::file(path, format!("not a valid strategy: {error}")))?;
    if spec.account.as_deref().is_none_or(str::is_empty) {
        return Err(Error::file(
            path,
            "names no `account`: a live strategy trades for one (add \"account\": \"…\")",
        ));
    }
    let directory = path.parent().unwrap_or(Path::new("."));
    for predictor in &mut spec.predictors {
        let Some(model) = &predictor.model else {
            continue;
        };
        if Path::new(model).is_relative()
            && let Ok(absolute) = directory.join(model).canonicalize()
        {
            predictor.model = Some(absolute.display().to_string());
        }
    }
    Ok(serde_json::to_value(&spec).expect("a spec always serializes"))
}

/// The strategies, one a line.
pub fn render_strategies(list: &api::StrategyList) -> String {
    if list.strategies.is_empty() {
        return "no strategies (define one with `ctl strategy create FILE`)".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .strategies
        .iter()
        .map(|view| {
            let spec = view.spec.as_ref();
            vec![
                view.id.clone(),
                view.state.clone(),
                spec.map_or_else(dash, |spec| {
                    spec.market.clone().unwrap_or_else(|| spec.symbol.clone())
                }),
                spec.and_then(|spec| spec.account.clone())
                    .unwrap_or_else(dash),
                view.bars.to_string(),
                view.position.to_string(),
                signed(view.pnl),
                view.signal.as_ref().map_or_else(dash, describe_signal),
            ]
        })
        .collect();
    table(
        &[
            ("ID", Align::Left),
            ("STATE", Align::Left),
            ("MARKET", Align::Left),
            ("ACCOUNT", Align::Left),
            ("BARS", Align::Right),
            ("POSITION", Align::Right),
            ("PNL", Align::Right),
            ("SIGNAL", Align::Left),
        ],
        &rows,
    )
}

/// One strategy: its state, what it trades, position and PnL, last signal, orders, breakers
/// and last decisions.
pub fn render_strategy(view: &api::StrategyView) -> String {
    let mut text = format!("strategy {}: {}", view.id, view.state);
    if view.state == "running" {
        if let Some(started_at) = view.started_at {
            write!(text, " since {}", utc(started_at)).expect("writing to a string");
        }
    } else if let Some((reason, cancelled)) = &view.stopped {
        write!(text, " ({reason}; {cancelled} open order(s) cancelled)").expect("writing");
    }
    if let Some(spec) = &view.spec {
        let market = spec.market.as_deref().unwrap_or(&spec.symbol);
        write!(
            text,
            "\ntrades {market} for account {} on {} s bars of {}",
            spec.account.as_deref().unwrap_or("-"),
            spec.timeframe_seconds,
            spec.symbol,
        )
        .expect("writing to a string");
    }
    write!(
        text,
        "\nposition {}, PnL {} (quote units since its last start)\
         \n{} ticks, {} bars, last close {}",
        view.position,
        signed(view.pnl),
        view.ticks,
        view.bars,
        view.last_close.map_or_else(dash, |close| close.to_string()),
    )
    .expect("writing to a string");
    match &view.signal {
        Some(signal) => write!(text, "\nlast signal {}", describe_signal(signal)),
        None => write!(text, "\nno signal yet"),
    }
    .expect("writing to a string");
    write!(
        text,
        "\norders: {} answered, {} refused",
        view.orders_answered, view.orders_failed
    )
    .expect("writing to a string");
    for (model, error) in &view.model_errors {
        write!(text, "\nmodel {model} failed to read: {error}").expect("writing");
    }
    if !view.breakers.is_empty() {
        write!(text, "\n\nbreakers\n{}", breakers_table(&view.breakers)).expect("writing");
    }
    if view.decisions.is_empty() {
        text.push_str("\n\nno decisions yet");
    } else {
        let skipped = view.decisions.len().saturating_sub(DECISIONS_SHOWN_MAX);
        write!(
            text,
            "\n\nlast decisions\n{}",
            decisions_table(&view.decisions[skipped..])
        )
        .expect("writing to a string");
    }
    text
}

fn breakers_table(breakers: &[api::StrategyBreaker]) -> String {
    let rows: Vec<Vec<String>> = breakers
        .iter()
        .map(|breaker| {
            vec![
                breaker.predictor.clone(),
                describe_breaker(&breaker.state),
                breaker.failures_total.to_string(),
                breaker.opened_total.to_string(),
            ]
        })
        .collect();
    table(
        &[
            ("PREDICTOR", Align::Left),
            ("BREAKER", Align::Left),
            ("FAILURES", Align::Right),
            ("OPENED", Align::Right),
        ],
        &rows,
    )
}

fn decisions_table(decisions: &[Decision]) -> String {
    let rows: Vec<Vec<String>> = decisions
        .iter()
        .map(|decision| {
            let order = match (&decision.order, &decision.refused) {
                (Some(order), _) => format!(
                    "{} {} @ {}",
                    snake_case(&order.side),
                    order.quantity,
                    order.price
                ),
                (None, Some(refused)) => format!("refused: {refused}"),
                (None, None) => dash(),
            };
            vec![
                utc(decision.bar.start),
                decision.bar.close.to_string(),
                snake_case(&decision.signal.direction),
                format!("{:+.3}", decision.signal.score),
                order,
            ]
        })
        .collect();
    table(
        &[
            ("BAR", Align::Left),
            ("CLOSE", Align::Right),
            ("SIGNAL", Align::Left),
            ("SCORE", Align::Right),
            ("ORDER", Align::Left),
        ],
        &rows,
    )
}

/// `buy +0.412 (confidence 0.41)`, and whether a cached prediction stood in.
fn describe_signal(signal: &Signal) -> String {
    let direction = match signal.direction {
        Direction::Buy => "buy",
        Direction::Sell => "sell",
        Direction::Flat => "flat",
    };
    let mut text = format!(
        "{direction} {:+.3} (confidence {:.2})",
        signal.score, signal.confidence
    );
    if signal.fallback {
        text.push_str(", on a cached prediction");
    }
    text
}

fn describe_breaker(state: &BreakerState) -> String {
    match state {
        BreakerState::Closed => "closed".to_owned(),
        BreakerState::HalfOpen => "half_open".to_owned(),
        BreakerState::Open { until } => format!("open until bar {until}"),
    }
}

/// `+12`, `-3`, `0`, or `-` for none.
fn signed(value: Option<i128>) -> String {
    match value {
        Some(value) if value > 0 => format!("+{value}"),
        Some(value) => value.to_string(),
        None => dash(),
    }
}

fn dash() -> String {
    "-".to_owned()
}

/// Microseconds since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(micros: i64) -> String {
    let seconds = micros.div_euclid(1_000_000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        second_of_day / 3_600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`, exact over the whole range of `i64` microseconds).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_spec() -> StrategySpec {
        let text = include_str!("../../../strategy/tests/data/strategy.json");
        let mut spec: StrategySpec = serde_json::from_str(text).expect("the sample spec");
        spec.account = Some("strat-1".to_owned());
        spec
    }

    fn view(state: &str) -> api::StrategyView {
        api::StrategyView {
            id: "sample-ensemble".to_owned(),
            spec: Some(sample_spec()),
            state: state.to_owned(),
            stopped: None,
            started_at: Some(1_700_000_000_000_000),
            ticks: 120,
            bars: 12,
            last_close: Some(101),
            signal: Some(Signal {
                score: 0.4123,
                confidence: 0.4123,
                direction: Direction::Buy,
                fallback: true,
            }),
            fallback: true,
            breakers: vec![
                api::StrategyBreaker {
                    predictor: "momentum".to_owned(),
                    state: BreakerState::Closed,
                    failures_total: 0,
                    opened_total: 0,
                },
                api::StrategyBreaker {
                    predictor: "learned".to_owned(),
                    state: BreakerState::Open { until: 20 },
                    failures_total: 3,
                    opened_total: 1,
                },
            ],
            decisions: Vec::new(),
            orders_answered: 2,
            orders_failed: 1,
            model_errors: Default::default(),
            position: 4,
            pnl: Some(-25),
        }
    }

    #[test]
    fn times_are_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn a_list_is_a_table_of_strategies() {
        let list = api::StrategyList {
            strategies: vec![view("running")],
        };
        let expected = "\
ID               STATE    MARKET   ACCOUNT  BARS  POSITION  PNL  SIGNAL
sample-ensemble  running  BTC-USD  strat-1    12         4  -25  buy +0.412 (confidence 0.41), on a cached prediction";
        assert_eq!(render_strategies(&list), expected);
        let empty = api::StrategyList {
            strategies: Vec::new(),
        };
        assert!(render_strategies(&empty).starts_with("no strategies"));
    }

    #[test]
    fn a_strategy_shows_state_position_signal_and_breakers() {
        let text = render_strategy(&view("running"));
        let expected = "\
strategy sample-ensemble: running since 2023-11-14 22:13:20 UTC
trades BTC-USD for account strat-1 on 5 s bars of BTC-USD
position 4, PnL -25 (quote units since its last start)
120 ticks, 12 bars, last close 101
last signal buy +0.412 (confidence 0.41), on a cached prediction
orders: 2 answered, 1 refused

breakers
PREDICTOR  BREAKER            FAILURES  OPENED
momentum   closed                    0       0
learned    open until bar 20         3       1

no decisions yet";
        assert_eq!(text, expected);
        let mut stopped = view("stopped");
        stopped.stopped = Some(("drawdown".to_owned(), 1));
        let text = render_strategy(&stopped);
        assert!(
            text.starts_with(
                "strategy sample-ensemble: stopped (drawdown; 1 open order(s) cancelled)\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_spec_without_an_account_or_with_bad_json_is_refused_with_its_file() {
        let directory = tempfile::tempdir().expect("a directory");
        let garbage = directory.path().join("garbage.json");
        std::fs::write(&garbage, "{ not json").expect("written");
        let error = read_spec(&garbage).expect_err("not JSON").to_string();
        assert!(
            error.contains("garbage.json: not a strategy spec"),
            "{error}"
        );
        let no_account = directory.path().join("no-account.json");
        let mut spec = sample_spec();
        spec.account = None;
        std::fs::write(&no_account, serde_json::to_string(&spec).expect("JSON")).expect("written");
        let error = read_spec(&no_account).expect_err("no account").to_string();
        assert!(error.contains("names no `account`"), "{error}");
        let missing = directory.path().join("missing.json");
        assert!(read_spec(&missing).is_err());
    }

    #[test]
    fn a_relative_model_is_sent_as_an_absolute_path_from_the_spec_file() {
        let directory = tempfile::tempdir().expect("a directory");
        std::fs::write(directory.path().join("model.json"), "{}").expect("written");
        let file = directory.path().join("strategy.json");
        std::fs::write(&file, serde_json::to_string(&sample_spec()).expect("JSON"))
            .expect("written");
        let spec = read_spec(&file).expect("a valid spec");
        let model = spec["predictors"][2]["model"]
            .as_str()
            .expect("a model path");
        assert!(Path::new(model).is_absolute(), "{model}");
        assert!(model.ends_with("model.json"), "{model}");
    }
}
