//! Accounts: deposits, withdrawals, balances and open orders, bitemporal history.

use actix_web::{HttpResponse, web};
use tracing::Instrument;
use tradefloor_domain::{Amount, CommandId, Timestamp};

use crate::api::{self, HistoryQuery, TransferRequest};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::{AppState, command_span};

/// Which way money moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    In,
    Out,
}

/// Credit an account.
#[utoipa::path(post, path = "/v1/accounts/{id}/deposits", tag = "accounts",
    params(("id" = String, Path, description = "The account")),
    request_body = TransferRequest,
    responses((status = 200, description = "The touched balance", body = api::Balances)))]
pub async fn deposit(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Json<TransferRequest>,
) -> Result<HttpResponse, ApiError> {
    transfer(state, principal, &id, body.into_inner(), Direction::In).await
}

/// Debit an account (from what is available).
#[utoipa::path(post, path = "/v1/accounts/{id}/withdrawals", tag = "accounts",
    params(("id" = String, Path, description = "The account")),
    request_body = TransferRequest,
    responses((status = 200, description = "The touched balance", body = api::Balances)))]
pub async fn withdraw(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Json<TransferRequest>,
) -> Result<HttpResponse, ApiError> {
    transfer(state, principal, &id, body.into_inner(), Direction::Out).await
}

async fn transfer(
    state: web::Data<AppState>,
    principal: Principal,
    id: &str,
    body: TransferRequest,
    direction: Direction,
) -> Result<HttpResponse, ApiError> {
    let account_id = convert::account_id(id)?;
    match direction {
        Direction::In => principal.require_deposit()?,
        Direction::Out => principal.require_funds(account_id.as_str())?,
    }
    let asset = convert::asset(&body.asset)?;
    let command_id = body.command_id.as_deref().map(CommandId::new).transpose()?;
    let amount = Amount(body.amount);
    let effective_at = body.effective_at.map(Timestamp);
    let span = command_span(
        command_id.as_ref().map_or("generated", |id| id.as_str()),
        &format!("/trading/accounts/{account_id}"),
    );
    let balances = state
        .call(move |exchange| async move {
            let balances = match direction {
                Direction::In => {
                    exchange
                        .deposit(account_id, asset, amount, command_id, effective_at)
                        .await?
                }
                Direction::Out => {
                    exchange
                        .withdraw(account_id, asset, amount, command_id, effective_at)
                        .await?
                }
            };
            Ok(balances)
        })
        .instrument(span.clone())
        .await?;
    span.in_scope(|| {
        tracing::info!(asset = %asset, amount = amount.get(), ?direction, "transfer applied");
    });
    Ok(HttpResponse::Ok().json(api::Balances {
        account_id: account_id.to_string(),
        balances: balances
            .iter()
            .map(|(asset, view)| (asset.to_string(), convert::balance(view)))
            .collect(),
    }))
}

/// An account's balances and open orders.
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = String, Path, description = "The account")),
    responses((status = 200, description = "The account", body = api::Account)))]
pub async fn account(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = convert::account_id(&id)?;
    principal.require_funds(account_id.as_str())?;
    let view = state
        .call(move |exchange| async move { Ok(exchange.account(account_id).await?) })
        .await?;
    if view.balances.is_empty() && view.open_orders.is_empty() {
        return Err(unknown_account(&account_id.to_string()));
    }
    Ok(HttpResponse::Ok().json(convert::account(&view)))
}

/// 404 `unknown_account`: no deposit ever reached it.
fn unknown_account(account_id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_account",
        format!("account {account_id:?} has never received a deposit"),
    )
}

/// The account as of a valid time, as known at a transaction time.
#[utoipa::path(get, path = "/v1/accounts/{id}/history", tag = "accounts",
    params(("id" = String, Path, description = "The account"), HistoryQuery),
    responses((status = 200, description = "The account then", body = api::AccountHistory)))]
pub async fn history(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiError> {
    let account_id = convert::account_id(&id)?;
    principal.require_funds(account_id.as_str())?;
    let query = query.into_inner();
    let limit =
        super::markets::bounded(query.limit, HISTORY_PAGE_DEFAULT, HISTORY_PAGE_MAX, "limit")?;
    // `after` is declared an int32: beyond it is no page, but a malformed query.
    let after = match query.after.unwrap_or(0) {
        after if after > i32::MAX as u32 => {
            return Err(ApiError::invalid_query(format!(
                "after must be 0 to {}",
                i32::MAX
            )));
        }
        after => after as usize,
    };
    let (valid_at, known_at, history) = state
        .call(move |exchange| async move {
            let now = exchange.now();
            let valid_at = query.valid_at.map(Timestamp).unwrap_or(now);
            let known_at = query.known_at.map(Timestamp).unwrap_or(now);
            let history = exchange
                .account_history(account_id, valid_at, known_at)
                .await?;
            Ok((valid_at, known_at, history))
        })
        .await?;
    let saturate =
        |value: i128| i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX });
    Ok(HttpResponse::Ok().json(api::AccountHistory {
        account_id: account_id.to_string(),
        valid_at: valid_at.micros(),
        known_at: known_at.micros(),
        balances: history
            .balances
            .iter()
            .map(|(asset, balance)| {
                (
                    asset.to_string(),
                    api::HistoricalBalance {
                        total: saturate(balance.total),
                        held: saturate(balance.held),
                    },
                )
            })
            .collect(),
        events: history
            .events
            .iter()
            .skip(after)
            .take(limit as usize)
            .map(|(recorded_at, event)| api::HistoryEvent {
                recorded_at: recorded_at.micros(),
                event: serde_json::to_value(event).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
        next_after: next_page(history.events.len(), after, limit as usize),
    }))
}

/// Events per history page when the query names no `limit`.
const HISTORY_PAGE_DEFAULT: u32 = 100;
/// The most events one history page carries.
const HISTORY_PAGE_MAX: u32 = 1_000;

/// Where the page after `[after, after + limit)` of `total` events starts, if any.
fn next_page(total: usize, after: usize, limit: usize) -> Option<u64> {
    let end = after.saturating_add(limit);
    (end < total).then_some(end as u64)
}
