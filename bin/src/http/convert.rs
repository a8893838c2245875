//! Between the HTTP contract's bodies ([`crate::api`]) and the domain's types. Parsing goes
//! through the domain's constructors, so a bad id gets `invalid_id` and nothing else decides
//! what is valid.

use tradefloor_actors::runtime::registry::{ActorStatus, ActorTree};
use tradefloor_actors::trading::{BalanceView, Candle, NewOrder};
use tradefloor_actors::{BreakerState, trading};
use tradefloor_domain::book::{BookDepth, EndReason, Trade};
use tradefloor_domain::saga::OrderView;
use tradefloor_domain::{
    AccountId, Asset, ClientOrderId, CommandId, MarketSpec, OrderReference, OrderStatus, OrderType,
    Price, Quantity, Side, Symbol, TimeInForce,
};

use crate::api;
use crate::http::error::ApiError;

/// An account id from a path or body.
pub fn account_id(text: &str) -> Result<AccountId, tradefloor_domain::Error> {
    AccountId::new(text)
}

/// A symbol from a path or body.
pub fn symbol(text: &str) -> Result<Symbol, tradefloor_domain::Error> {
    Symbol::new(text)
}

/// An asset from a body.
pub fn asset(text: &str) -> Result<Asset, tradefloor_domain::Error> {
    Asset::new(text)
}

/// A market listing request as the domain's definition.
pub fn market_spec(request: &api::MarketRequest) -> Result<MarketSpec, tradefloor_domain::Error> {
    Ok(MarketSpec {
        symbol: symbol(&request.symbol)?,
        base: asset(&request.base)?,
        quote: asset(&request.quote)?,
        tick_size: Price(request.tick_size),
        lot_size: Quantity(request.lot_size),
        min_quantity: Quantity(request.min_quantity.unwrap_or(request.lot_size)),
        max_quantity: Quantity(request.max_quantity.unwrap_or_else(|| {
            // The largest multiple of the lot a signed 64-bit integer holds.
            let storable = tradefloor_domain::Amount::BALANCE_MAX.get();
            storable - storable % request.lot_size.max(1)
        })),
        band_bps: request.band_bps.unwrap_or(1_000),
        reference_price: request.reference_price.map(Price),
    })
}

/// A market as the contract shows it.
pub fn market(spec: &MarketSpec) -> api::Market {
    api::Market {
        symbol: spec.symbol.to_string(),
        base: spec.base.to_string(),
        quote: spec.quote.to_string(),
        tick_size: spec.tick_size.get(),
        lot_size: spec.lot_size.get(),
        min_quantity: spec.min_quantity.get(),
        max_quantity: spec.max_quantity.get(),
        band_bps: spec.band_bps,
        reference_price: spec.reference_price.map(Price::get),
    }
}

/// An order request as the application's new order, and what the client named it by (its own
/// order id, else its command id): the venue's id for that is the application's to derive
/// ([`Exchange::order_id_for`](tradefloor_actors::trading::Exchange::order_id_for)), so the
/// order's `order_id` is left `None` here.
pub fn new_order(
    request: &api::OrderRequest,
) -> Result<(NewOrder, Option<OrderReference>), tradefloor_domain::Error> {
    let account_id = account_id(&request.account_id)?;
    let command_id = request
        .command_id
        .as_deref()
        .map(CommandId::new)
        .transpose()?;
    let reference = match (request.order_id, command_id) {
        (Some(order_id), _) => Some(OrderReference::Client(ClientOrderId::new(order_id)?)),
        (None, Some(command_id)) => Some(OrderReference::Command(command_id)),
        (None, None) => None,
    };
    let order = NewOrder {
        order_id: None,
        account_id,
        symbol: symbol(&request.symbol)?,
        side: match request.side {
            api::Side::Buy => Side::Buy,
            api::Side::Sell => Side::Sell,
        },
        order_type: match request.order_type {
            api::OrderType::Limit => OrderType::Limit,
            api::OrderType::Market => OrderType::Market,
        },
        price: request.price.map(Price),
        quantity: Quantity(request.quantity),
        time_in_force: match request.time_in_force {
            api::TimeInForce::Gtc => TimeInForce::Gtc,
            api::TimeInForce::Ioc => TimeInForce::Ioc,
            api::TimeInForce::Fok => TimeInForce::Fok,
        },
        post_only: request.post_only,
    };
    Ok((order, reference))
}

fn side(side: Side) -> api::Side {
    match side {
        Side::Buy => api::Side::Buy,
        Side::Sell => api::Side::Sell,
    }
}

/// An order as the contract shows it.
pub fn order(view: &OrderView) -> api::Order {
    api::Order {
        order_id: view.order_id.0,
        client_order_id: None,
        account_id: view.account_id.to_string(),
        symbol: view.symbol.to_string(),
        side: side(view.side),
        order_type: match view.order_type {
            OrderType::Limit => api::OrderType::Limit,
            OrderType::Market => api::OrderType::Market,
        },
        price: view.price.map(Price::get),
        quantity: view.quantity.get(),
        status: match view.status {
            OrderStatus::Pending => api::OrderStatus::Pending,
            OrderStatus::Open => api::OrderStatus::Open,
            OrderStatus::PartiallyFilled => api::OrderStatus::PartiallyFilled,
            OrderStatus::Filled => api::OrderStatus::Filled,
            OrderStatus::Cancelled => api::OrderStatus::Cancelled,
            OrderStatus::Rejected => api::OrderStatus::Rejected,
        },
        filled_quantity: view.filled_quantity.get(),
        fills: view
            .fills
            .iter()
            .map(|fill| api::Fill {
                trade_id: fill.trade_id.0,
                price: fill.price.get(),
                quantity: fill.quantity.get(),
                settled: fill.settled,
            })
            .collect(),
        reject_reason: view.reject_reason.as_ref().map(|reason| api::ErrorDetail {
            code: reason.code().to_owned(),
            message: reason.to_string(),
        }),
        end_reason: view.end_reason.map(|reason| {
            match reason {
                EndReason::Filled => "filled",
                EndReason::Cancelled => "cancelled",
                EndReason::Expired => "expired",
                EndReason::SelfTradePrevented => "self_trade_prevented",
                EndReason::Halted => "halted",
            }
            .to_owned()
        }),
        stalled: view.stalled,
    }
}

/// A balance as the contract shows it.
pub fn balance(view: &BalanceView) -> api::Balance {
    api::Balance {
        total: view.total.get(),
        held: view.held.get(),
        available: view.available.get(),
    }
}

/// An account as the contract shows it.
pub fn account(view: &trading::AccountView) -> api::Account {
    api::Account {
        account_id: view.account_id.to_string(),
        balances: view
            .balances
            .iter()
            .map(|(asset, view)| (asset.to_string(), balance(view)))
            .collect(),
        open_orders: view.open_orders.iter().map(order).collect(),
    }
}

/// A book's depth as the contract shows it.
pub fn book(symbol: Symbol, depth: &BookDepth) -> api::Book {
    let levels = |levels: &[tradefloor_domain::book::LevelView]| {
        levels
            .iter()
            .map(|level| api::Level {
                price: level.price.get(),
                quantity: level.quantity.get(),
                orders: level.orders as u64,
            })
            .collect()
    };
    api::Book {
        symbol: symbol.to_string(),
        bids: levels(&depth.bids),
        asks: levels(&depth.asks),
    }
}

/// A trade as the tape shows it.
pub fn trade(trade: &Trade) -> api::Trade {
    api::Trade {
        trade_id: trade.trade_id.0,
        maker_order_id: trade.maker_order_id.0,
        taker_order_id: trade.taker_order_id.0,
        taker_side: side(trade.taker_side),
        price: trade.price.get(),
        quantity: trade.quantity.get(),
        at: trade.at.micros(),
    }
}

/// A risk flag as the contract shows it.
pub fn risk_flag(flag: &tradefloor_actors::trading::RiskFlag) -> api::RiskFlag {
    api::RiskFlag {
        asset: flag.asset.clone(),
        position: flag.position,
        position_limit: flag.position_limit,
        first_offset: flag.first_offset,
        last_offset: flag.last_offset,
        flagged_at: flag.flagged_at,
    }
}

/// A candle as the contract shows it.
pub fn candle(candle: &Candle) -> api::Candle {
    api::Candle {
        start: candle.start.micros(),
        open: candle.open.get(),
        high: candle.high.get(),
        low: candle.low.get(),
        close: candle.close.get(),
        volume: candle.volume.get(),
        notional: candle.notional,
        vwap: candle.vwap.get(),
        trades: candle.trades,
    }
}

/// A registry snapshot as the contract's actor tree.
pub fn actor_tree(tree: &ActorTree) -> api::ActorNode {
    api::ActorNode {
        path: tree.path.clone(),
        kind: tree.kind.clone(),
        status: tree.status.map(|status| {
            match status {
                ActorStatus::Starting => "starting",
                ActorStatus::Running => "running",
                ActorStatus::Restarting => "restarting",
                ActorStatus::Stopping => "stopping",
                ActorStatus::Stopped => "stopped",
                ActorStatus::Failed => "failed",
            }
            .to_owned()
        }),
        restarts: tree.restarts,
        mailbox: tree.mailbox.as_ref().map(|mailbox| api::Mailbox {
            length: (mailbox.len + mailbox.priority_len) as u64,
            capacity: (mailbox.capacity + mailbox.priority_capacity) as u64,
        }),
        breaker: tree
            .breaker
            .as_ref()
            .map(|breaker| breaker_state(breaker.state).to_owned()),
        entities: tree.entity_count,
        descendants_hidden: tree.descendants_hidden as u64,
        children: tree.children.iter().map(actor_tree).collect(),
    }
}

/// A breaker state's name.
pub fn breaker_state(state: BreakerState) -> &'static str {
    match state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half_open",
    }
}

/// A JSON body as `T`, from an object only: serde would also take an array for a struct (its
/// fields in order, `[null, …]` for an all-optional one), which no client means. `what`
/// names the body in the error.
pub fn object_body<T: serde::de::DeserializeOwned>(
    body: serde_json::Value,
    what: &str,
) -> Result<T, ApiError> {
    if !body.is_object() {
        return Err(ApiError::invalid_json(format!(
            "{what} must be a JSON object"
        )));
    }
    serde_json::from_value(body).map_err(|error| ApiError::invalid_json(error.to_string()))
}
