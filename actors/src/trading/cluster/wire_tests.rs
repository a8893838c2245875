//! Every type that crosses between nodes survives the binary codec of remote calls: as the
//! body of a [`Call`] frame and as the answer in a [`remote::Reply`] frame, each error
//! variant included; garbage frames are errors.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tradefloor_domain::account::{AccountCommand, AccountReply, Balance, Leg, RiskLimits};
use tradefloor_domain::book::{BookCommand, BookEvent, BookReply, EndReason, OrderReport, Trade};
use tradefloor_domain::saga::{
    Fill, OrderView, SagaCommand, SagaConfig, SagaInput, SagaReply, SagaStart, SagaStep,
};
use tradefloor_domain::{
    AccountId, Amount, Asset, CommandId, Error as DomainError, MarketSpec, OrderId, OrderSpec,
    OrderStatus, OrderType, Price, Quantity, Side, Symbol, TimeInForce, Timestamp, TradeId,
};
use tradefloor_persistence::codec;

use super::{NewOrder, PlaceOrder};
use crate::error::Error;
use crate::routing::remote::{self, Call};

/// `value` as a call's body, through the [`Call`] frame, and as an answer, through the
/// [`remote::Reply`] frame.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let call = Call {
        target: "/trading/accounts".to_owned(),
        operation: "ask".to_owned(),
        entity_id: "alice".to_owned(),
        body: remote::encode("test", value).unwrap(),
        deadline_ms: 1_500,
    };
    let frame = codec::encode_frame(&call).unwrap();
    let received: Call = codec::decode_frame(&frame).unwrap();
    assert_eq!(received, call);
    let body: T = remote::decode("test", &received.body).unwrap();
    assert_eq!(&body, value);

    let reply: remote::Reply = Ok(remote::encode("test", value).unwrap());
    let frame = codec::encode_frame(&reply).unwrap();
    let answer: remote::Reply = codec::decode_frame(&frame).unwrap();
    let answer: T = remote::decode("test", &answer.unwrap()).unwrap();
    assert_eq!(&answer, value);
}

/// `error` as a callee's answer, through the [`remote::Reply`] frame.
fn error_round_trip(error: Error) {
    let reply: remote::Reply = Err(error.clone());
    let frame = codec::encode_frame(&reply).unwrap();
    let answer: remote::Reply = codec::decode_frame(&frame).unwrap();
    assert_eq!(answer, Err(error));
}

fn at() -> Timestamp {
    Timestamp(1_700_000_000_000_000)
}

fn asset(text: &str) -> Asset {
    Asset::new(text).unwrap()
}

fn symbol() -> Symbol {
    Symbol::new("BTC-USD").unwrap()
}

fn account() -> AccountId {
    AccountId::new("alice").unwrap()
}

fn command_id(text: &str) -> CommandId {
    CommandId::new(text).unwrap()
}

fn market() -> MarketSpec {
    MarketSpec {
        symbol: symbol(),
        base: asset("BTC"),
        quote: asset("USD"),
        tick_size: Price(5),
        lot_size: Quantity(10),
        min_quantity: Quantity(10),
        max_quantity: Quantity(1_000),
        band_bps: 1_000,
        reference_price: Some(Price(100)),
    }
}

fn order_spec() -> OrderSpec {
    OrderSpec {
        order_id: OrderId(7),
        account_id: account(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        price: Some(Price(100)),
        quantity: Quantity(20),
        time_in_force: TimeInForce::Gtc,
        post_only: false,
    }
}

fn trade() -> Trade {
    Trade {
        trade_id: TradeId(3),
        maker_order_id: OrderId(6),
        maker_account_id: AccountId::new("bob").unwrap(),
        taker_order_id: OrderId(7),
        taker_account_id: account(),
        taker_side: Side::Buy,
        price: Price(100),
        quantity: Quantity(10),
        maker_remaining: Quantity(0),
        taker_remaining: Quantity(10),
        at: at(),
    }
}

fn order_view(reject_reason: Option<DomainError>) -> OrderView {
    OrderView {
        order_id: OrderId(7),
        account_id: account(),
        symbol: symbol(),
        side: Side::Sell,
        order_type: OrderType::Market,
        price: None,
        quantity: Quantity(20),
        status: OrderStatus::PartiallyFilled,
        filled_quantity: Quantity(10),
        fills: vec![Fill {
            trade_id: TradeId(3),
            price: Price(100),
            quantity: Quantity(10),
            settled: true,
        }],
        reject_reason,
        end_reason: Some(EndReason::SelfTradePrevented),
        resting: true,
        step: Some(SagaStep::Settle),
        stalled: false,
        attempts: 2,
        finished: false,
    }
}

fn account_commands() -> Vec<AccountCommand> {
    vec![
        AccountCommand::Deposit {
            command_id: command_id("d-1"),
            asset: asset("USD"),
            amount: Amount(1_000),
            effective_at: Some(Timestamp(-5)),
            at: at(),
        },
        AccountCommand::Withdraw {
            command_id: command_id("w-1"),
            asset: asset("USD"),
            amount: Amount(10),
            effective_at: None,
            at: at(),
        },
        AccountCommand::PlaceHold {
            command_id: command_id("7:hold"),
            order_id: OrderId(7),
            symbol: symbol(),
            base: asset("BTC"),
            quote: asset("USD"),
            side: Side::Buy,
            price: Some(Price(100)),
            quantity: Quantity(20),
            start: Some(Box::new(SagaStart {
                order: order_spec(),
                market: market(),
                config: SagaConfig::default(),
            })),
            at: at(),
        },
        AccountCommand::SettleTrade {
            command_id: command_id("7:settle:3"),
            order_id: OrderId(7),
            trade_id: TradeId(3),
            price: Price(100),
            quantity: Quantity(10),
            at: at(),
        },
        AccountCommand::ReleaseHold {
            command_id: command_id("7:release"),
            order_id: OrderId(7),
            at: at(),
        },
        AccountCommand::Finish {
            command_id: command_id("7:finish"),
            order_id: OrderId(7),
            legs: vec![
                Leg {
                    trade_id: TradeId(3),
                    price: Price(100),
                    quantity: Quantity(10),
                },
                Leg {
                    trade_id: TradeId(4),
                    price: Price(99),
                    quantity: Quantity(5),
                },
            ],
            at: at(),
        },
        AccountCommand::SetRiskLimits {
            command_id: command_id("limits-1"),
            limits: RiskLimits {
                max_open_orders: 5,
                max_order_notional: Amount(u64::MAX),
                max_orders_per_second: Some(50),
                max_position: BTreeMap::from([(asset("BTC"), Amount(3))]),
            },
            at: at(),
        },
    ]
}

fn book_commands() -> Vec<BookCommand> {
    vec![
        BookCommand::List {
            spec: market(),
            at: at(),
        },
        BookCommand::Submit {
            order: order_spec(),
            at: at(),
        },
        BookCommand::Cancel {
            order_id: OrderId(7),
            at: at(),
        },
        BookCommand::Abandon {
            order_id: OrderId(7),
            at: at(),
        },
        BookCommand::Halt { at: at() },
        BookCommand::Resume {
            reference_price: Some(Price(95)),
            at: at(),
        },
    ]
}

fn saga_inputs() -> Vec<SagaInput> {
    let inputs = vec![
        SagaInput::Start {
            request: order_spec(),
            market: market(),
            config: SagaConfig {
                step_timeout_micros: 2_000_000,
                step_timeout_max_micros: 60_000_000,
                attempts_max: 6,
            },
            by_hold: true,
            at: at(),
        },
        SagaInput::HoldPlaced { at: at() },
        SagaInput::HoldRejected {
            reason: DomainError::InsufficientFunds {
                asset: asset("USD"),
                available: Amount(1),
                required: Amount(2_000),
            },
            at: at(),
        },
        SagaInput::Book {
            event: BookEvent::Listed {
                spec: market(),
                at: at(),
            },
        },
        SagaInput::SubmitRejected {
            reason: DomainError::PostOnlyWouldCross,
            at: at(),
        },
        SagaInput::CancelRejected {
            reason: DomainError::OrderAlreadyEnded {
                order_id: OrderId(7),
            },
            at: at(),
        },
        SagaInput::LegSettled {
            trade_id: TradeId(3),
            at: at(),
        },
        SagaInput::SettleRejected {
            trade_id: TradeId(3),
            reason: DomainError::HoldNotFound {
                order_id: OrderId(7),
            },
            at: at(),
        },
        SagaInput::HoldReleased { at: at() },
        SagaInput::CancelRequested { at: at() },
        SagaInput::Tick { now: at() },
        SagaInput::Retry { at: at() },
    ];
    let mut all = inputs.clone();
    all.push(SagaInput::Answers { inputs });
    all
}

fn domain_errors() -> Vec<DomainError> {
    vec![
        DomainError::InvalidId {
            what: "account id".to_owned(),
            reason: "\"\" is empty".to_owned(),
        },
        DomainError::ZeroValue {
            what: "amount".to_owned(),
        },
        DomainError::Overflow,
        DomainError::InvalidMarket {
            reason: "tick".to_owned(),
        },
        DomainError::InvalidOrder {
            reason: "no price".to_owned(),
        },
        DomainError::BadTick {
            price: Price(101),
            tick_size: Price(5),
        },
        DomainError::BadLot {
            quantity: Quantity(15),
            lot_size: Quantity(10),
        },
        DomainError::QuantityOutOfRange {
            quantity: Quantity(5_000),
            min: Quantity(10),
            max: Quantity(1_000),
        },
        DomainError::EffectiveInFuture,
        DomainError::UnknownMarket { symbol: symbol() },
        DomainError::MarketNotListed,
        DomainError::OrderNotFound {
            order_id: OrderId(7),
        },
        DomainError::OrderAlreadyEnded {
            order_id: OrderId(7),
        },
        DomainError::HoldNotFound {
            order_id: OrderId(7),
        },
        DomainError::MarketAlreadyListed { symbol: symbol() },
        DomainError::DuplicateOrder {
            order_id: OrderId(7),
        },
        DomainError::CommandIdReused,
        DomainError::SagaAlreadyStarted {
            order_id: OrderId(7),
        },
        DomainError::SagaNotStarted,
        DomainError::InsufficientFunds {
            asset: asset("USD"),
            available: Amount(1),
            required: Amount(2),
        },
        DomainError::RiskLimit {
            limit: "max_open_orders".to_owned(),
            requested: 6,
            maximum: 5,
        },
        DomainError::FokNotFillable,
        DomainError::PostOnlyWouldCross,
        DomainError::MarketHalted { symbol: symbol() },
        DomainError::MarketNotHalted { symbol: symbol() },
        DomainError::SettlementMismatch {
            order_id: OrderId(7),
            reason: "side".to_owned(),
        },
        DomainError::Timeout {
            step: "hold".to_owned(),
        },
    ]
}

fn actor_errors() -> Vec<Error> {
    let mut errors = vec![
        Error::Overloaded {
            actor: "/a".to_owned(),
            capacity: usize::MAX,
        },
        Error::Timeout {
            actor: "/a".to_owned(),
            after: Duration::new(3, 999_999_999),
        },
        Error::BreakerOpen {
            breaker: "cluster/node/n2".to_owned(),
            retry_after: Duration::from_millis(250),
        },
        Error::Stopped {
            actor: "/a".to_owned(),
        },
        Error::PathTaken {
            path: "/a".to_owned(),
        },
        Error::Failed {
            actor: "/a".to_owned(),
            reason: "üñíçødé".to_owned(),
        },
        Error::Persistence {
            actor: "/a".to_owned(),
            reason: "disk full".to_owned(),
        },
        Error::Fenced {
            actor: "/a".to_owned(),
        },
        Error::RestartIntensityExceeded {
            supervisor: "/guardian".to_owned(),
            max_restarts: 3,
            within: Duration::from_secs(10),
        },
        Error::StartFailed {
            actor: "/a".to_owned(),
            reason: "name taken".to_owned(),
        },
    ];
    errors.extend(domain_errors().into_iter().map(Error::Rejected));
    errors
}

#[test]
fn commands_of_accounts_books_and_sagas_cross() {
    for command in account_commands() {
        round_trip(&command);
    }
    for command in book_commands() {
        round_trip(&command);
    }
    for input in saga_inputs() {
        round_trip(&input);
    }
}

#[test]
fn replies_cross() {
    round_trip(&AccountReply {
        command_id: Some(command_id("d-1")),
        balances: BTreeMap::from([(
            asset("USD"),
            Balance {
                total: Amount(1_000),
                held: Amount(200),
            },
        )]),
    });
    round_trip(&AccountReply::default());
    for reply in [
        BookReply::Listed,
        BookReply::Order(OrderReport {
            order_id: OrderId(7),
            status: OrderStatus::Filled,
            filled_quantity: Quantity(20),
            resting_quantity: Quantity(0),
            trades: vec![trade(), trade()],
        }),
        BookReply::Cancelled {
            order_id: OrderId(7),
            remaining: Quantity(10),
        },
        BookReply::Blocked {
            order_id: OrderId(7),
        },
        BookReply::Halted,
        BookReply::Resumed,
    ] {
        round_trip(&reply);
    }
    let commands = account_commands()
        .into_iter()
        .map(|command| SagaCommand::Account {
            account_id: account(),
            command,
        })
        .chain(
            book_commands()
                .into_iter()
                .map(|command| SagaCommand::Book {
                    symbol: symbol(),
                    command,
                }),
        )
        .collect();
    round_trip(&SagaReply {
        view: order_view(Some(DomainError::FokNotFillable)),
        commands,
        deadline: Some(at()),
    });
    // A region's answer with events (`ask_with_events`).
    round_trip(&(
        BookReply::Listed,
        vec![BookEvent::Listed {
            spec: market(),
            at: at(),
        }],
    ));
}

#[test]
fn placements_and_order_views_cross() {
    let order = NewOrder {
        order_id: None,
        account_id: account(),
        symbol: symbol(),
        side: Side::Buy,
        order_type: OrderType::Limit,
        price: Some(Price(100)),
        quantity: Quantity(20),
        time_in_force: TimeInForce::Fok,
        post_only: true,
    };
    round_trip(&order);
    let placement = PlaceOrder {
        order: NewOrder {
            order_id: Some(OrderId(u64::MAX)),
            ..order
        },
        fresh: true,
    };
    let body = remote::encode("test", &placement).unwrap();
    let received: PlaceOrder = remote::decode("test", &body).unwrap();
    assert_eq!(received.order, placement.order);
    assert!(received.fresh);
    round_trip(&order_view(None));
    round_trip(&order_view(Some(DomainError::CommandIdReused)));
    // The node service's arguments and answers: a depth, and text.
    round_trip(&Some(3_usize));
    round_trip(&None::<usize>);
    round_trip(&"{\"path\":\"/\"}".to_owned());
}

#[test]
fn every_error_crosses() {
    for error in actor_errors() {
        error_round_trip(error);
    }
    for error in domain_errors() {
        round_trip(&error);
    }
}

#[test]
fn garbage_frames_are_errors() {
    let call = Call {
        target: "/trading/books".to_owned(),
        operation: "ask".to_owned(),
        entity_id: "BTC-USD".to_owned(),
        body: remote::encode("test", &book_commands()[0]).unwrap(),
        deadline_ms: 10,
    };
    let frame = codec::encode_frame(&call).unwrap();
    // Every truncation is an error; every single-byte change decodes to a value or an
    // error, never a panic.
    for end in 0..frame.len() {
        assert!(codec::decode_frame::<Call>(&frame[..end]).is_err());
        let _ = codec::decode_frame::<remote::Reply>(&frame[..end]);
    }
    for at in 0..frame.len() {
        for byte in [0, 1, 0x7f, 0xfb, 0xfc, 0xfd, 0xfe, 0xff] {
            let mut bent = frame.clone();
            bent[at] = byte;
            if let Ok(bent) = codec::decode_frame::<Call>(&bent) {
                let _ = remote::decode::<BookCommand>("test", &bent.body);
            }
            let _ = codec::decode_frame::<remote::Reply>(&bent);
        }
    }
    // A body claiming a huge string (`List`'s market symbol).
    let mut huge = vec![0_u8, 253];
    huge.extend_from_slice(&u64::MAX.to_le_bytes());
    assert!(remote::decode::<BookCommand>("test", &huge).is_err());
    let garbage = vec![0xff; 4_096];
    assert!(codec::decode_frame::<Call>(&garbage).is_err());
    assert!(codec::decode_frame::<remote::Reply>(&garbage).is_err());
    assert!(matches!(
        remote::decode::<OrderView>("/trading", &garbage),
        Err(Error::Failed { actor, .. }) if actor == "/trading"
    ));
}
