//! The HTTP contract (DESIGN §5): every request and response body, as JSON.
//!
//! The server, `ctl` and `bench` share these types, and the OpenAPI document is derived from
//! them, so the three cannot drift apart. Bodies carry plain integers and strings; the
//! server parses them into the domain's types, so a bad id or a zero amount gets the
//! domain's own error code. Request bodies refuse unknown fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// A stable, machine-readable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `insufficient_funds`, `invalid_json`, `overloaded`.
    pub code: String,
    /// What happened, in words.
    pub message: String,
}

/// `POST /v1/markets`: list a market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MarketRequest {
    /// `BASE-QUOTE`, e.g. `BTC-USD`.
    #[schema(pattern = "^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")]
    pub symbol: String,
    /// The asset traded, counted in quantity units.
    #[schema(pattern = "^[A-Z0-9]{1,12}$")]
    pub base: String,
    /// The asset prices are quoted in.
    #[schema(pattern = "^[A-Z0-9]{1,12}$")]
    pub quote: String,
    /// Every price is a positive multiple of this.
    #[schema(minimum = 1)]
    pub tick_size: u64,
    /// Every quantity is a positive multiple of this.
    #[schema(minimum = 1)]
    pub lot_size: u64,
    /// The smallest order quantity (default: the lot size).
    #[serde(default)]
    pub min_quantity: Option<u64>,
    /// The largest order quantity (default: no limit).
    #[serde(default)]
    pub max_quantity: Option<u64>,
    /// Half-width of the volatility band, in basis points (default 1 000 = 10 %).
    #[serde(default)]
    pub band_bps: Option<u32>,
    /// The reference price at listing (default: the first trade sets it).
    #[serde(default)]
    pub reference_price: Option<u64>,
}

/// A listed market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Market {
    /// `BASE-QUOTE`.
    pub symbol: String,
    /// The asset traded.
    pub base: String,
    /// The quote asset.
    pub quote: String,
    /// Price increment.
    pub tick_size: u64,
    /// Quantity increment.
    pub lot_size: u64,
    /// Smallest order quantity.
    pub min_quantity: u64,
    /// Largest order quantity.
    pub max_quantity: u64,
    /// Volatility band half-width in basis points.
    pub band_bps: u32,
    /// Reference price at listing, if any.
    pub reference_price: Option<u64>,
}

/// `POST /v1/markets/{symbol}/resume`: reopen a halted market.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The new band's centre (default: the last trade price).
    #[serde(default)]
    pub reference_price: Option<u64>,
}

/// `POST /v1/accounts/{id}/deposits` and `/withdrawals`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The asset, e.g. `USD`.
    #[schema(pattern = "^[A-Z0-9]{1,12}$")]
    pub asset: String,
    /// Units of the asset, > 0.
    #[schema(minimum = 1)]
    pub amount: u64,
    /// Idempotency key: repeating it repeats the first reply.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub command_id: Option<String>,
    /// Valid time in microseconds since the epoch (default: now); a past time records a
    /// correction.
    #[serde(default)]
    pub effective_at: Option<i64>,
}

/// One asset's balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balance {
    /// Everything owned.
    pub total: u64,
    /// Reserved for open orders.
    pub held: u64,
    /// `total − held`.
    pub available: u64,
}

/// The balances a deposit or withdrawal touched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Balances {
    /// The account.
    pub account_id: String,
    /// Balances by asset.
    pub balances: BTreeMap<String, Balance>,
}

/// `GET /v1/accounts/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    /// The account.
    pub account_id: String,
    /// Balances by asset.
    pub balances: BTreeMap<String, Balance>,
    /// Orders not yet final.
    pub open_orders: Vec<Order>,
}

/// Query of `GET /v1/accounts/{id}/history`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Valid time, microseconds since the epoch (default: now).
    pub valid_at: Option<i64>,
    /// Transaction time, microseconds since the epoch (default: now).
    pub known_at: Option<i64>,
    /// Events per page, 1 to 1 000 (default 100).
    pub limit: Option<u32>,
    /// Skip this many events of the view (the `next_after` of the page before); default 0.
    pub after: Option<u32>,
}

/// A signed balance in the past (a backdated correction can make it negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoricalBalance {
    /// Everything owned.
    pub total: i64,
    /// Reserved for open orders.
    pub held: i64,
}

/// One event of an account's history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HistoryEvent {
    /// When the journal recorded it (transaction time, µs since the epoch).
    pub recorded_at: i64,
    /// The event, tagged by its name.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
}

/// `GET /v1/accounts/{id}/history`: the account as of a valid time, as known at a
/// transaction time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AccountHistory {
    /// The account.
    pub account_id: String,
    /// The valid time asked for.
    pub valid_at: i64,
    /// The transaction time asked for.
    pub known_at: i64,
    /// Balances by asset.
    pub balances: BTreeMap<String, HistoricalBalance>,
    /// One page of the events making up the view, in valid-time order.
    pub events: Vec<HistoryEvent>,
    /// Where the next page starts (`after=`), when more events follow.
    pub next_after: Option<u64>,
}

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy the base asset.
    Buy,
    /// Sell the base asset.
    Sell,
}

/// Limit or market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Trades at its price or better; may rest.
    Limit,
    /// Trades at any price up to its protection price; never rests.
    Market,
}

/// How long an order may live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled.
    #[default]
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
}

/// `POST /v1/orders`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The caller's own id for the order, below 2^53, unique within its account only: the
    /// answer's `order_id` is the venue's id for it (the same for every retry; no other
    /// account can take it), and `client_order_id` echoes it. Repeating it with the same order
    /// repeats the answer; with another order it is a conflict (409). Without it the venue's
    /// id is derived from `command_id` in the same way, else generated.
    #[serde(default)]
    #[schema(maximum = 9007199254740991_u64)]
    pub order_id: Option<u64>,
    /// Idempotency key: the order id is derived from it (per account), so repeating it
    /// repeats the first answer. Ignored when `order_id` is given.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub command_id: Option<String>,
    /// The owner.
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,40}$")]
    pub account_id: String,
    /// The market.
    #[schema(pattern = "^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")]
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Limit price, or a market order's protection price (required to buy).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub price: Option<u64>,
    /// Base quantity.
    #[schema(minimum = 1)]
    pub quantity: u64,
    /// GTC (default), IOC or FOK.
    #[serde(default)]
    pub time_in_force: TimeInForce,
    /// Refuse the order if it would trade on arrival.
    #[serde(default)]
    pub post_only: bool,
}

/// Where an order stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted, not yet on the book.
    Pending,
    /// Resting, nothing filled.
    Open,
    /// Resting, partly filled.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Ended before it filled completely.
    Cancelled,
    /// Refused by the account or the book.
    Rejected,
}

/// One fill of an order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Fill {
    /// The trade, numbered within its market.
    pub trade_id: u64,
    /// The trade price.
    pub price: u64,
    /// The quantity traded.
    pub quantity: u64,
    /// Whether the account settled this order's leg.
    pub settled: bool,
}

/// An order as its saga knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Order {
    /// The order: the venue's id, for `GET` and `DELETE /v1/orders/{id}`.
    pub order_id: u64,
    /// The id the caller chose (the request's `order_id`), in the answer to a placement
    /// that named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_order_id: Option<u64>,
    /// Its owner.
    pub account_id: String,
    /// Its market.
    pub symbol: String,
    /// Buy or sell.
    pub side: Side,
    /// Limit or market.
    #[serde(rename = "type")]
    pub order_type: OrderType,
    /// Limit or protection price.
    pub price: Option<u64>,
    /// Base quantity ordered.
    pub quantity: u64,
    /// Where it stands.
    pub status: OrderStatus,
    /// Base quantity filled.
    pub filled_quantity: u64,
    /// Its fills.
    pub fills: Vec<Fill>,
    /// Why it was rejected, when it was.
    pub reject_reason: Option<ErrorDetail>,
    /// Why it left the book (`filled`, `cancelled`, `expired`, `self_trade_prevented`,
    /// `halted`), when it did.
    pub end_reason: Option<String>,
    /// Whether a step exhausted its retries and waits for an operator.
    pub stalled: bool,
}

/// One aggregated price level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Level {
    /// The price.
    pub price: u64,
    /// Quantity resting at it.
    pub quantity: u64,
    /// Orders resting at it.
    pub orders: u64,
}

/// Query of `GET /v1/markets/{symbol}/book`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DepthQuery {
    /// Levels per side, 1 to 1 000 (default 10).
    pub depth: Option<u32>,
}

/// `GET /v1/markets/{symbol}/book`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Book {
    /// The market.
    pub symbol: String,
    /// Buy levels, best (highest) first.
    pub bids: Vec<Level>,
    /// Sell levels, best (lowest) first.
    pub asks: Vec<Level>,
}

/// Query of `GET /v1/markets/{symbol}/trades`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TradesQuery {
    /// How many, 1 to 1 000 (default 100).
    pub limit: Option<u32>,
}

/// One trade of the tape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Trade {
    /// Numbered from 1 within the market.
    pub trade_id: u64,
    /// The resting order.
    pub maker_order_id: u64,
    /// The incoming order.
    pub taker_order_id: u64,
    /// The incoming order's side.
    pub taker_side: Side,
    /// Price (the maker's).
    pub price: u64,
    /// Base quantity.
    pub quantity: u64,
    /// When, µs since the epoch.
    pub at: i64,
}

/// `GET /v1/markets/{symbol}/trades`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Trades {
    /// The market.
    pub symbol: String,
    /// The trades.
    pub trades: Vec<Trade>,
}

/// Query of `GET /v1/markets/{symbol}/candles`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandlesQuery {
    /// `1s`, `1m` (default) or `1h`.
    pub interval: Option<String>,
    /// How many, 1 to 1 000 (default 100).
    pub limit: Option<u32>,
}

/// One OHLCV window.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Candle {
    /// Window start, µs since the epoch.
    pub start: i64,
    /// First price.
    pub open: u64,
    /// Highest price.
    pub high: u64,
    /// Lowest price.
    pub low: u64,
    /// Last price.
    pub close: u64,
    /// Σ quantity.
    pub volume: u64,
    /// Σ price × quantity.
    pub notional: u64,
    /// Volume-weighted average price, rounded down.
    pub vwap: u64,
    /// Number of trades.
    pub trades: u64,
}

/// `GET /v1/markets/{symbol}/candles`: newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Candles {
    /// The market.
    pub symbol: String,
    /// `1s`, `1m` or `1h`.
    pub interval: String,
    /// The windows.
    pub candles: Vec<Candle>,
}

/// A node's membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberStatus {
    /// Announced, not yet serving.
    Joining,
    /// Serving.
    Up,
    /// Draining its shards.
    Leaving,
    /// Gone.
    Down,
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// The node's id.
    pub node_id: String,
    /// Its HTTP address.
    pub http_addr: String,
    /// Its cluster address.
    pub cluster_addr: String,
    /// Its state.
    pub status: MemberStatus,
    /// Shards it owns.
    pub shards: u32,
    /// Whether this is the node that answered.
    pub this_node: bool,
}

/// `GET /v1/cluster/members`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Members {
    /// Every member, by node id.
    pub members: Vec<Member>,
}

/// One shard and where it lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shard {
    /// The shard number.
    pub shard: u32,
    /// The owning node.
    pub owner: String,
    /// Entities in memory, over every region.
    pub entities: u64,
    /// Commands queued.
    pub queued: u64,
    /// The owner's fence epoch (one more at every change of owner).
    pub epoch: u64,
    /// `active`, or `draining` / `released` while handed off to `target`.
    pub handoff: String,
    /// The node a hand-off goes to.
    pub target: Option<String>,
}

/// `GET /v1/cluster/shards`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Shards {
    /// Shards per region (fixed at cluster creation).
    pub shard_count: u32,
    /// Every shard.
    pub shards: Vec<Shard>,
}

/// Query of `POST /v1/cluster/rebalance`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RebalanceQuery {
    /// Only plan: move nothing.
    pub dry_run: Option<bool>,
}

/// One planned or made shard move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ShardMove {
    /// The shard.
    pub shard: u32,
    /// Its owner before.
    pub from: String,
    /// Its owner after.
    pub to: String,
}

/// `POST /v1/cluster/rebalance`: the plan, and how far it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rebalance {
    /// Whether this was only a plan.
    pub dry_run: bool,
    /// The moves.
    pub moves: Vec<ShardMove>,
    /// Moves done so far.
    pub completed: u32,
}

/// `POST /v1/cluster/shards/{shard}/move`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// The node to move the shard to.
    pub to: String,
}

/// `POST /v1/cluster/members/{node}/leave`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Leave {
    /// The node leaving.
    pub node_id: String,
    /// The shards it hands over.
    pub moves: Vec<ShardMove>,
}

/// Query of `GET /metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsQuery {
    /// Another member's metrics, or `all`: every member's, each sample labelled with its
    /// `node` (default: this node's).
    pub node: Option<String>,
}

/// Query of `GET /v1/audit`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// How many rows, 1 to 1 000 (default 100), newest first.
    pub limit: Option<u32>,
    /// Only this caller's rows: a token's name, `anonymous` or `loopback`.
    pub principal: Option<String>,
}

/// What became of an audited request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Answered with success.
    Done,
    /// Refused for who the caller is (401, 403, or 429 from the token's rate limit).
    Denied,
    /// Answered with another error.
    Failed,
}

/// One row of the audit log: a command sent, or a request denied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// When it was answered, microseconds since the epoch.
    pub recorded_at: i64,
    /// Who sent it: the token's name, `anonymous` without a valid token, `loopback` on a
    /// node without tokens.
    pub principal: String,
    /// The HTTP method.
    pub method: String,
    /// The request path (at most 256 characters).
    pub path: String,
    /// The answer's HTTP status.
    pub status: u16,
    /// What became of it.
    pub outcome: AuditOutcome,
}

/// The newest rows of the audit log, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    /// The rows.
    pub entries: Vec<AuditEntry>,
}

/// Query of `GET /v1/actors`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ActorsQuery {
    /// Only this node (default: every node).
    pub node: Option<String>,
    /// Levels below the root to show (default: all).
    pub depth: Option<u32>,
}

/// A mailbox's fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Mailbox {
    /// Messages queued.
    pub length: u64,
    /// Its bound.
    pub capacity: u64,
}

/// One actor of the tree and its children.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActorNode {
    /// Its path, e.g. `/n1/trading/accounts/shard-3`.
    pub path: String,
    /// Its kind (`node`, `region`, `shard`, …), if it is a registered actor.
    pub kind: Option<String>,
    /// `starting`, `running`, `stopping`, `stopped` or `failed`.
    pub status: Option<String>,
    /// Times it was restarted.
    pub restarts: Option<u32>,
    /// Its mailbox.
    pub mailbox: Option<Mailbox>,
    /// `closed`, `open` or `half_open`, for actors behind a circuit breaker.
    pub breaker: Option<String>,
    /// Entities it hosts (shards).
    pub entities: Option<u64>,
    /// Descendants cut off by the depth asked for.
    pub descendants_hidden: u64,
    /// Its children.
    #[schema(no_recursion)]
    pub children: Vec<ActorNode>,
}

/// `GET /health/live` and `/health/ready` when healthy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `live` or `ready`.
    pub status: String,
    /// The node's id.
    pub node_id: String,
}

/// `PUT /v1/accounts/{id}/limits`: the account's new risk limits (each omitted one is reset to
/// its default: 1 000 open orders, no notional cap, no position cap, no order rate cap).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsRequest {
    /// Most orders open at once.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub max_open_orders: Option<u32>,
    /// Largest `price × quantity` of one order, in its quote asset (> 0).
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_order_notional: Option<u64>,
    /// Largest position per asset (the total plus every open buy of it, if all filled).
    #[serde(default)]
    pub max_position: BTreeMap<String, u64>,
    /// Most orders a second (> 0): a bucket of this many orders, refilled at this many a
    /// second, so bursts up to it pass. Unlimited if omitted.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub max_orders_per_second: Option<u32>,
    /// Idempotency key: repeating it repeats the first reply.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub command_id: Option<String>,
}

/// An account's risk limits, checked before every hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Limits {
    /// The account.
    pub account_id: String,
    /// Most orders open at once.
    pub max_open_orders: u32,
    /// Largest notional of one order, in its quote asset.
    pub max_order_notional: u64,
    /// Largest position per asset; assets not listed are unlimited.
    pub max_position: BTreeMap<String, u64>,
    /// Most orders a second (bursts up to it); `null`: unlimited.
    pub max_orders_per_second: Option<u32>,
}

/// What an account traded on one market.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Position {
    /// The market.
    pub symbol: String,
    /// Base units bought.
    pub bought: u64,
    /// Base units sold.
    pub sold: u64,
    /// `bought − sold`.
    pub net: i128,
    /// Trades it took part in.
    pub trades: u64,
}

/// `GET /v1/accounts/{id}/positions` (a read model: trails the log by milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Positions {
    /// The account.
    pub account_id: String,
    /// By market.
    pub positions: Vec<Position>,
}

/// A flag the risk monitor raised: an asset's position over the node's position limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RiskFlag {
    /// The asset.
    pub asset: String,
    /// The position at the latest breach, in minor units.
    pub position: u64,
    /// The limit it exceeded.
    pub position_limit: u64,
    /// The log offset of the first breach.
    pub first_offset: u64,
    /// The log offset of the latest breach.
    pub last_offset: u64,
    /// When first flagged, µs since the epoch.
    pub flagged_at: i64,
}

/// `GET /v1/accounts/{id}/risk`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Risk {
    /// The account.
    pub account_id: String,
    /// Its flags, by asset (sticky: an operator clears them).
    pub flags: Vec<RiskFlag>,
}

/// `POST /v1/markets/{symbol}/quotes`: a batch of external prints of a reference symbol, in
/// their order (1 to 1 000).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotesRequest {
    /// The prints.
    #[schema(min_items = 1, max_items = 1000)]
    pub quotes: Vec<QuoteRequest>,
}

/// One external print: a trade, or a quote without size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    /// When it happened at its source, µs since the epoch (default: the node's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<i64>,
    /// Its price, in quote units per base unit, like an order's.
    #[schema(minimum = 1, maximum = 9223372036854775807_u64)]
    pub price: u64,
    /// Its size, in base units like an order's quantity (default 0: a quote with no size).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 9223372036854775807_u64)]
    pub quantity: Option<u64>,
}

/// The answer to `POST /v1/markets/{symbol}/quotes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotesAccepted {
    /// The symbol.
    pub symbol: String,
    /// Quotes journaled.
    pub accepted: u64,
    /// The global log offset of the batch's event.
    pub offset: u64,
}

/// `POST /v1/strategies/{id}/stop`'s optional body, as `ctl` sends it (the route reads it as
/// its own `StopRequest`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopStrategyRequest {
    /// Why (kept in the strategy's journal; default "stopped by a user").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/strategies`: the strategies the caller may see.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyList {
    /// The strategies.
    pub strategies: Vec<StrategyView>,
}

/// A strategy as `ctl` reads it: the part of the node's view (the actors'
/// `StrategyView`) it shows. Fields it does not show are ignored, and those a strategy
/// may not have yet default, so the view can grow without breaking `ctl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StrategyView {
    /// Its id.
    pub id: String,
    /// Its spec.
    #[serde(default)]
    pub spec: Option<tradefloor_strategy::StrategySpec>,
    /// `running` or `stopped`.
    pub state: String,
    /// Why it last stopped, and how many open orders its stop cancelled.
    #[serde(default)]
    pub stopped: Option<(String, u32)>,
    /// When it last started, µs since the epoch.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// Ticks taken since its first start.
    #[serde(default)]
    pub ticks: u64,
    /// Bars decided since its first start.
    #[serde(default)]
    pub bars: u64,
    /// The last bar's close.
    #[serde(default)]
    pub last_close: Option<u64>,
    /// The last signal.
    #[serde(default)]
    pub signal: Option<tradefloor_strategy::Signal>,
    /// Whether the last signal used a cached prediction for a failing predictor.
    #[serde(default)]
    pub fallback: bool,
    /// Each predictor's breaker.
    #[serde(default)]
    pub breakers: Vec<StrategyBreaker>,
    /// The latest decisions, newest last.
    #[serde(default)]
    pub decisions: Vec<tradefloor_strategy::engine::Decision>,
    /// Orders the placement answered.
    #[serde(default)]
    pub orders_answered: u64,
    /// Orders the placement refused.
    #[serde(default)]
    pub orders_failed: u64,
    /// Model files that failed to read at their last change, with why.
    #[serde(default)]
    pub model_errors: BTreeMap<String, String>,
    /// Base units its account holds.
    #[serde(default)]
    pub position: u64,
    /// Its account's gain since its last start, in quote units (the base marked at the last
    /// close); none before its first bar.
    #[serde(default)]
    pub pnl: Option<i128>,
}

/// One predictor's breaker in a [`StrategyView`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyBreaker {
    /// The predictor.
    pub predictor: String,
    /// Where its breaker stands.
    pub state: tradefloor_strategy::BreakerState,
    /// Failures since the strategy started.
    #[serde(default)]
    pub failures_total: u64,
    /// Times it opened.
    #[serde(default)]
    pub opened_total: u64,
}

/// `GET /v1/events`: which events of the log, from where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this global offset (the `next_after` of the page before); default 0.
    #[param(minimum = 0, maximum = 9007199254740991_u64)]
    pub after: Option<u64>,
    /// Events per page, 1 to 1 000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Comma-separated entity kinds kept: `account`, `order_book`, `order_saga`, `quotes`,
    /// `strategy`, `alert`.
    pub kinds: Option<String>,
    /// Comma-separated event names kept, e.g. `book.traded,account.deposited`.
    pub names: Option<String>,
    /// Streams kept: those starting with this, e.g. `account|alice` or `order_book|`.
    pub stream: Option<String>,
    /// Events about this symbol only (its book's and quotes' events, and events naming it).
    #[param(pattern = "^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")]
    pub symbol: Option<String>,
    /// If no event matches yet, wait this long for new ones (long polling), 0 to 30 000 ms.
    #[param(minimum = 0, maximum = 30000)]
    pub wait_ms: Option<u32>,
    /// Without `after`: start after the offset this subscription committed
    /// (`PUT /v1/subscriptions/{name}/offset`).
    #[param(pattern = "^[A-Za-z0-9_.:-]{1,64}$")]
    pub subscription: Option<String>,
}

/// A page of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    /// The matching events in offset order: `{offset, stream, kind, sequence, name,
    /// schema_version, recorded_at, effective_at, tags, event}` (`event` decoded; `null`
    /// with a `decode_error` for one the node cannot decode).
    pub events: Vec<serde_json::Value>,
    /// Where the next page starts (pass it as `after`): the last offset this page scanned,
    /// matching or not.
    pub next_after: u64,
}

/// `PUT /v1/subscriptions/{name}/offset`: the offset a consumer has processed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OffsetRequest {
    /// The last offset processed (a page's `next_after`); never behind the committed one.
    #[schema(maximum = 9007199254740991_u64)]
    pub offset: u64,
}

/// A subscription's committed offset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionOffset {
    /// The subscription.
    pub name: String,
    /// Where its consumer resumes: events after this.
    pub offset: u64,
}

/// `GET /v1/dead-letters`: which letters.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// Only this consumer's letters (e.g. `trading.balances`).
    #[param(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    /// Letters after this id (the `next_after` of the page before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Letters per page, 1 to 1 000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// An event a consumer of the log parked because it could not apply it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterBody {
    /// `{consumer}:{offset}`: what the retry and delete routes take.
    pub id: String,
    /// The consumer that parked it.
    pub consumer: String,
    /// The event's global offset.
    pub offset: u64,
    /// Why: the consumer's last error, or the earlier letter that holds its key.
    pub error: String,
    /// Failed attempts (0 for an event parked behind an earlier one of its key).
    pub attempts: u32,
    /// When it was parked, microseconds since the epoch.
    pub parked_at: i64,
    /// The key whose order the consumer keeps (an account's stream), if it keeps one.
    pub order_key: Option<String>,
    /// The offset of the parked event that held this one back, if any.
    pub held_by: Option<u64>,
    /// Whether a retry was asked for and is not yet attempted.
    pub retry_requested: bool,
    /// The event, as `GET /v1/events` shows it (with its payload decoded, or its
    /// `decode_error`).
    pub event: serde_json::Value,
}

/// Undeliverable actor messages: counted, the latest kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UndeliveredBody {
    /// Every message that could not be delivered since the node started.
    pub total: u64,
    /// The latest ones, oldest first: `{recipient, message_type, reason, at_unix_ms}`.
    pub recent: Vec<serde_json::Value>,
}

/// A page of dead letters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeadLettersPage {
    /// Parked events, by consumer then offset.
    pub letters: Vec<DeadLetterBody>,
    /// The id to pass as `after` for the next page, if there may be one.
    pub next_after: Option<String>,
    /// Parked events per consumer (all of them, not only this page's).
    pub counts: std::collections::BTreeMap<String, u64>,
    /// Actor messages that could not be delivered.
    pub undelivered: UndeliveredBody,
}

/// `POST /v1/dead-letters/{id}/retry`: what was asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RetryAnswer {
    /// The letter.
    pub id: String,
    /// Letters marked for retry: this one, and the letters of its key behind it if the
    /// consumer keeps the key's order (they are applied together, in offset order).
    pub letters: u64,
}

/// A read model's progress on this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectionBody {
    /// Its name, e.g. `trading.balances`.
    pub name: String,
    /// The last offset applied and committed.
    pub offset: u64,
    /// Every event at or below it has been read (past `offset` when the last events were
    /// not for this read model).
    pub read_to: u64,
    /// Events of the journal not yet read (events its filter leaves out count as read).
    pub lag: u64,
    /// Events applied by this incarnation.
    pub events: u64,
    /// Batches applied by this incarnation.
    pub batches: u64,
    /// Events it parked as dead letters and has not yet applied or given up.
    pub dead_letters: u64,
    /// Whether another node holds it now (this holder applies nothing more).
    pub fenced: bool,
    /// The last rebuild asked of it, if any.
    pub rebuild: Option<RebuildBody>,
}

/// How far a rebuild has come.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RebuildBody {
    /// The journal's head when it began: done once the read model has read up to it.
    pub target: u64,
    /// The part of the log read again, 0 to 1.
    pub progress: f64,
    /// When it began, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// How long it took, once done.
    pub took_ms: Option<u64>,
}

/// `GET /v1/projections`: the read models running on this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProjectionList {
    /// By name.
    pub projections: Vec<ProjectionBody>,
}

/// `POST /v1/subscriptions/{name}/replay`: where a subscription starts again, by offset or
/// by time (exactly one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Start after this offset (backwards allowed: events after it are delivered again).
    #[schema(maximum = 9007199254740991_u64)]
    pub offset: Option<u64>,
    /// Start at the first event recorded at or after this time, microseconds since the
    /// epoch.
    pub at: Option<i64>,
}

/// `GET /v1/alerts`: which alerts.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Alerts after this sequence (the `next_after` of the page before); default 0.
    #[param(minimum = 0, maximum = 9007199254740991_u64)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// Alerts per page, 1 to 1 000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A rule's match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertBody {
    /// Its place in the alert stream (pages resume after it).
    pub sequence: u64,
    /// The rule.
    pub rule: String,
    /// What it is about: a market, an account, an owner, or `account/asset`.
    pub key: String,
    /// The account its action applies to, if any.
    pub account: Option<String>,
    /// The market, for market rules.
    pub symbol: Option<String>,
    /// `halt`, `flag` or `throttle`.
    pub action: String,
    /// For `throttle`: the order rate the account was limited to.
    pub orders_per_second: Option<u32>,
    /// What was seen.
    pub message: String,
    /// The global offset of the event that completed the pattern.
    pub offset: u64,
    /// That event's time, microseconds since the epoch.
    pub at: i64,
}

/// A page of alerts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AlertsPage {
    /// In the order raised.
    pub alerts: Vec<AlertBody>,
    /// The sequence to pass as `after` for the next page.
    pub next_after: u64,
}

/// `POST /v1/archive`: archive the events older than this (once a snapshot covers them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// Events recorded more than this many seconds ago; none: the node's
    /// `retention.horizon_seconds`.
    #[schema(maximum = 3153600000_u64)]
    pub older_than_seconds: Option<u64>,
}

/// `GET /v1/archive`: what the archive holds, and the last run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveBody {
    /// Archive files.
    pub files: u64,
    /// Events in them.
    pub events: u64,
    /// Their size in bytes.
    pub bytes: u64,
    /// The horizon the node archives at by itself, if configured.
    pub horizon_seconds: Option<u64>,
    /// The run in progress, or the last one since the node started.
    pub run: Option<ArchiveRunBody>,
}

/// One archive run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArchiveRunBody {
    /// It moves events recorded before this, microseconds since the epoch.
    pub recorded_before: i64,
    /// When it began, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// Files written so far.
    pub files: u64,
    /// Events moved so far.
    pub events: u64,
    /// Bytes written so far.
    pub bytes: u64,
    /// Every event up to this offset that could move has moved.
    pub through_offset: u64,
    /// The log's last offset when it began: where it ends.
    pub last_offset: u64,
    /// The part of the log looked at, 0 to 1.
    pub progress: f64,
    /// How long it took, once done.
    pub took_ms: Option<u64>,
    /// Why it stopped short, if it failed.
    pub error: Option<String>,
}
