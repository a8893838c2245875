//! Risk that users set and read: an account's limits (admin sets them), its positions and
//! the flags the risk monitor raised on it.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use tradefloor_domain::account::RiskLimits;
use tradefloor_domain::{AccountId, Amount, CommandId};

use crate::api::{self, LimitsRequest};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Replace an account's risk limits (admin): checked before every hold from now on.
#[utoipa::path(put, path = "/v1/accounts/{id}/limits", tag = "risk",
    params(("id" = String, Path, description = "The account")),
    request_body = LimitsRequest,
    responses((status = 200, description = "The limits in force", body = api::Limits)))]
pub async fn set_limits(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let account_id = convert::account_id(&id)?;
    let body: LimitsRequest = convert::object_body(body.into_inner(), "the limits")?;
    let command_id = body.command_id.as_deref().map(CommandId::new).transpose()?;
    let limits = domain_limits(&body)?;
    let limits = state
        .call(move |exchange| async move {
            Ok(exchange.set_limits(account_id, limits, command_id).await?)
        })
        .await?;
    tracing::info!(account = %account_id, ?limits, "risk limits set");
    Ok(HttpResponse::Ok().json(limits_answer(account_id, &limits)))
}

/// An account's risk limits.
#[utoipa::path(get, path = "/v1/accounts/{id}/limits", tag = "risk",
    params(("id" = String, Path, description = "The account")),
    responses((status = 200, description = "The limits in force", body = api::Limits)))]
pub async fn limits(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = readable(&principal, &id)?;
    let limits = state
        .call(move |exchange| async move { Ok(exchange.limits(account_id).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(limits_answer(account_id, &limits)))
}

/// What an account traded, per market.
#[utoipa::path(get, path = "/v1/accounts/{id}/positions", tag = "risk",
    params(("id" = String, Path, description = "The account")),
    responses((status = 200, description = "Its positions", body = api::Positions)))]
pub async fn positions(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = readable(&principal, &id)?;
    let positions = state
        .call(move |exchange| async move { Ok(exchange.positions(account_id).await?) })
        .await?;
    let positions = positions
        .into_iter()
        .map(|position| api::Position {
            net: i128::from(position.bought) - i128::from(position.sold),
            symbol: position.symbol,
            bought: position.bought,
            sold: position.sold,
            trades: position.trades,
        })
        .collect();
    Ok(HttpResponse::Ok().json(api::Positions {
        account_id: account_id.to_string(),
        positions,
    }))
}

/// The flags the risk monitor raised on an account.
#[utoipa::path(get, path = "/v1/accounts/{id}/risk", tag = "risk",
    params(("id" = String, Path, description = "The account")),
    responses((status = 200, description = "Its flags", body = api::Risk)))]
pub async fn risk(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let account_id = readable(&principal, &id)?;
    let flags = state
        .call(move |exchange| async move { Ok(exchange.account_risk_flags(account_id).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(api::Risk {
        account_id: account_id.to_string(),
        flags: flags.iter().map(convert::risk_flag).collect(),
    }))
}

/// The account `id` if the caller may read it: admins, the funding system, a trader its own.
fn readable(principal: &Principal, id: &str) -> Result<AccountId, ApiError> {
    let account_id = convert::account_id(id)?;
    principal.require_funds(account_id.as_str())?;
    Ok(account_id)
}

/// The request's limits as the domain's, defaults for those omitted.
fn domain_limits(body: &LimitsRequest) -> Result<RiskLimits, ApiError> {
    let defaults = RiskLimits::default();
    let mut max_position = BTreeMap::new();
    for (asset, maximum) in &body.max_position {
        max_position.insert(convert::asset(asset)?, Amount(*maximum));
    }
    let limits = RiskLimits {
        max_open_orders: body.max_open_orders.unwrap_or(defaults.max_open_orders),
        max_order_notional: body
            .max_order_notional
            .map_or(defaults.max_order_notional, Amount),
        max_position,
        max_orders_per_second: body.max_orders_per_second,
    };
    limits.validate()?;
    Ok(limits)
}

fn limits_answer(account_id: AccountId, limits: &RiskLimits) -> api::Limits {
    api::Limits {
        account_id: account_id.to_string(),
        max_open_orders: limits.max_open_orders,
        max_order_notional: limits.max_order_notional.get(),
        max_position: limits
            .max_position
            .iter()
            .map(|(asset, maximum)| (asset.to_string(), maximum.get()))
            .collect(),
        max_orders_per_second: limits.max_orders_per_second,
    }
}
