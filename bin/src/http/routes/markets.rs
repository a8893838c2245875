//! Markets: listing (admin), definitions, halts, and market data (book, trades, candles).

use actix_web::{HttpResponse, web};
use tradefloor_actors::trading::CandleInterval;

use crate::api::{self, CandlesQuery, DepthQuery, MarketRequest, ResumeRequest, TradesQuery};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Most book levels per side one request may ask for.
pub const DEPTH_MAX: u32 = 1_000;
/// Most trades or candles one request may ask for.
pub const LIST_LIMIT_MAX: u32 = 1_000;

/// List a market (admin).
#[utoipa::path(post, path = "/v1/markets", tag = "markets", request_body = MarketRequest,
    responses((status = 201, description = "Listed", body = api::Market)))]
pub async fn list_market(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<MarketRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let spec = convert::market_spec(&body)?;
    let answer = convert::market(&spec);
    state
        .call(move |exchange| async move { Ok(exchange.list_market(spec).await?) })
        .await?;
    tracing::info!(symbol = %answer.symbol, "market listed");
    Ok(HttpResponse::Created().json(answer))
}

/// A market's definition.
#[utoipa::path(get, path = "/v1/markets/{symbol}", tag = "markets",
    params(("symbol" = String, Path, description = "e.g. BTC-USD")),
    responses((status = 200, description = "The market", body = api::Market)))]
pub async fn market(
    state: web::Data<AppState>,
    _principal: Principal,
    symbol: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let symbol = convert::symbol(&symbol)?;
    let spec = state
        .call(move |exchange| async move { Ok(exchange.market(symbol).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(convert::market(&spec)))
}

/// Halt trading on a market (admin): submits are refused, cancels served.
#[utoipa::path(post, path = "/v1/markets/{symbol}/halt", tag = "markets",
    params(("symbol" = String, Path, description = "e.g. BTC-USD")),
    responses((status = 200, description = "Halted", body = api::Market)))]
pub async fn halt(
    state: web::Data<AppState>,
    principal: Principal,
    symbol: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let symbol = convert::symbol(&symbol)?;
    let spec = state
        .call(move |exchange| async move {
            let spec = exchange.market(symbol).await?;
            exchange.halt(symbol).await?;
            Ok(spec)
        })
        .await?;
    tracing::warn!(symbol = %symbol, "market halted by an operator");
    Ok(HttpResponse::Ok().json(convert::market(&spec)))
}

/// Resume a halted market (admin).
#[utoipa::path(post, path = "/v1/markets/{symbol}/resume", tag = "markets",
    params(("symbol" = String, Path, description = "e.g. BTC-USD")),
    request_body = ResumeRequest,
    responses((status = 200, description = "Resumed", body = api::Market)))]
pub async fn resume(
    state: web::Data<AppState>,
    principal: Principal,
    symbol: web::Path<String>,
    body: web::Json<ResumeRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let symbol = convert::symbol(&symbol)?;
    let reference = body.reference_price.map(tradefloor_domain::Price);
    let spec = state
        .call(move |exchange| async move {
            let spec = exchange.market(symbol).await?;
            exchange.resume(symbol, reference).await?;
            Ok(spec)
        })
        .await?;
    tracing::info!(symbol = %symbol, "market resumed");
    Ok(HttpResponse::Ok().json(convert::market(&spec)))
}

/// The market's book, best levels first.
#[utoipa::path(get, path = "/v1/markets/{symbol}/book", tag = "market data",
    params(("symbol" = String, Path, description = "e.g. BTC-USD"), DepthQuery),
    responses((status = 200, description = "The book", body = api::Book)))]
pub async fn book(
    state: web::Data<AppState>,
    _principal: Principal,
    symbol: web::Path<String>,
    query: web::Query<DepthQuery>,
) -> Result<HttpResponse, ApiError> {
    let symbol = convert::symbol(&symbol)?;
    let depth = bounded(query.depth, 10, DEPTH_MAX, "depth")?;
    let book = state
        .call(move |exchange| async move { Ok(exchange.book_depth(symbol, depth as usize).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(convert::book(symbol, &book)))
}

/// The market's latest trades, newest first (from the trade tape, which trails by the
/// projection's lag).
#[utoipa::path(get, path = "/v1/markets/{symbol}/trades", tag = "market data",
    params(("symbol" = String, Path, description = "e.g. BTC-USD"), TradesQuery),
    responses((status = 200, description = "The trades", body = api::Trades)))]
pub async fn trades(
    state: web::Data<AppState>,
    _principal: Principal,
    symbol: web::Path<String>,
    query: web::Query<TradesQuery>,
) -> Result<HttpResponse, ApiError> {
    let symbol = convert::symbol(&symbol)?;
    let limit = bounded(query.limit, 100, LIST_LIMIT_MAX, "limit")?;
    let trades = state
        .call(move |exchange| async move {
            exchange.market(symbol).await?;
            Ok(exchange.trades(symbol, limit as usize).await?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(api::Trades {
        symbol: symbol.to_string(),
        trades: trades.iter().map(convert::trade).collect(),
    }))
}

/// The market's candles of one interval, newest first.
#[utoipa::path(get, path = "/v1/markets/{symbol}/candles", tag = "market data",
    params(("symbol" = String, Path, description = "e.g. BTC-USD"), CandlesQuery),
    responses((status = 200, description = "The candles", body = api::Candles)))]
pub async fn candles(
    state: web::Data<AppState>,
    _principal: Principal,
    symbol: web::Path<String>,
    query: web::Query<CandlesQuery>,
) -> Result<HttpResponse, ApiError> {
    let symbol = convert::symbol(&symbol)?;
    let limit = bounded(query.limit, 100, LIST_LIMIT_MAX, "limit")?;
    let name = query.interval.clone().unwrap_or_else(|| "1m".to_owned());
    let interval = CandleInterval::parse(&name)
        .ok_or_else(|| ApiError::invalid_query("interval must be 1s, 1m or 1h"))?;
    let candles = state
        .call(move |exchange| async move {
            exchange.market(symbol).await?;
            Ok(exchange.candles(symbol, interval, limit as usize).await?)
        })
        .await?;
    Ok(HttpResponse::Ok().json(api::Candles {
        symbol: symbol.to_string(),
        interval: name,
        candles: candles.iter().map(convert::candle).collect(),
    }))
}

/// `value` (default `default`) if it is in `1..=max`, else 400 `invalid_query`.
pub fn bounded(value: Option<u32>, default: u32, max: u32, name: &str) -> Result<u32, ApiError> {
    let value = value.unwrap_or(default);
    if value == 0 || value > max {
        return Err(ApiError::invalid_query(format!(
            "{name} must be 1 to {max}"
        )));
    }
    Ok(value)
}
