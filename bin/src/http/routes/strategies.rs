//! Strategies: define one (it starts at once), list them, read one (state, position, PnL,
//! last signals, breakers), start and stop it (the kill switch).

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use tradefloor_actors::trading::strategies::StrategyView;
use tradefloor_strategy::StrategySpec;

use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Longest stop reason kept.
const REASON_LEN_MAX: usize = 200;

/// `POST /v1/strategies/{id}/stop`'s optional body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Why (kept in the strategy's journal).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The stop's reason from its optional body: nothing, or an object `{"reason"?}` (anything
/// else is refused rather than ignored).
fn stop_reason(body: &[u8]) -> Result<String, ApiError> {
    let default = || "stopped by a user".to_owned();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(default());
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| ApiError::invalid_json(error.to_string()))?;
    let request: StopRequest = convert::object_body(value, "the body {\"reason\"?}")?;
    Ok(request.reason.unwrap_or_else(default))
}

/// The spec, from an object only (the spec's JSON as `tradefloor backtest` reads it).
fn spec_of(body: serde_json::Value) -> Result<StrategySpec, ApiError> {
    let spec: StrategySpec = convert::object_body(body, "a strategy")?;
    spec.validate().map_err(|error| {
        ApiError::from(tradefloor_actors::Error::Rejected(
            tradefloor_domain::Error::InvalidStrategy {
                reason: error.to_string(),
            },
        ))
    })?;
    Ok(spec)
}

/// The account a strategy trades, if the caller may see it; 404 otherwise (like another
/// account's order).
fn visible(principal: &Principal, view: &StrategyView) -> Result<(), ApiError> {
    let account = view
        .status
        .spec
        .as_ref()
        .and_then(|spec| spec.account.as_deref())
        .unwrap_or_default();
    principal.require_account(account).map_err(|_| {
        ApiError::not_found(
            "strategy_not_found",
            format!("strategy {} not found", view.status.id),
        )
    })
}

/// Strategy `id` if the caller may see it (404 otherwise, as if it did not exist).
async fn seen(state: &AppState, principal: &Principal, id: &str) -> Result<StrategyView, ApiError> {
    let id = id.to_owned();
    let view = state
        .call(move |exchange| async move { Ok(exchange.strategy(&id).await?) })
        .await?;
    visible(principal, &view)?;
    Ok(view)
}

/// Define a strategy for an account (admin, or a trader on that account); it starts at once.
#[utoipa::path(post, path = "/v1/strategies", tag = "strategies",
    request_body(content = Object, description = "The strategy's spec (docs/strategies.md)"),
    responses((status = 201, description = "The strategy, running", body = Object)))]
pub async fn create(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let spec = spec_of(body.into_inner())?;
    principal.require_account(spec.account.as_deref().unwrap_or_default())?;
    let view = state
        .call(move |exchange| async move { Ok(exchange.create_strategy(spec).await?) })
        .await?;
    Ok(HttpResponse::Created().json(view))
}

/// Every strategy the caller may see.
#[utoipa::path(get, path = "/v1/strategies", tag = "strategies",
    responses((status = 200, description = "The strategies", body = Object)))]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    let views = state
        .call(move |exchange| async move { Ok(exchange.strategies().await?) })
        .await?;
    let views: Vec<StrategyView> = views
        .into_iter()
        .filter(|view| visible(&principal, view).is_ok())
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "strategies": views })))
}

/// One strategy: its state, position, PnL, last signals and breakers.
#[utoipa::path(get, path = "/v1/strategies/{id}", tag = "strategies",
    params(("id" = String, Path, description = "The strategy")),
    responses((status = 200, description = "The strategy", body = Object)))]
pub async fn strategy(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(seen(&state, &principal, &id).await?))
}

/// Start a stopped strategy (it reads the log from now on, from its last checkpoint's state).
#[utoipa::path(post, path = "/v1/strategies/{id}/start", tag = "strategies",
    params(("id" = String, Path, description = "The strategy")),
    responses((status = 200, description = "The strategy, running", body = Object)))]
pub async fn start(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    seen(&state, &principal, &id).await?;
    let view = state
        .call(move |exchange| async move { Ok(exchange.start_strategy(&id).await?) })
        .await?;
    tracing::info!(strategy = %view.status.id, "strategy started by a user");
    Ok(HttpResponse::Ok().json(view))
}

/// The kill switch: stop a strategy and cancel its account's open orders on its market.
#[utoipa::path(post, path = "/v1/strategies/{id}/stop", tag = "strategies",
    params(("id" = String, Path, description = "The strategy")),
    responses((status = 200, description = "The strategy, stopped", body = Object)))]
pub async fn stop(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let reason = stop_reason(&body)?;
    if reason.len() > REASON_LEN_MAX || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid_json(format!(
            "a reason is at most {REASON_LEN_MAX} bytes of printable text"
        )));
    }
    let id = id.into_inner();
    seen(&state, &principal, &id).await?;
    let view = state
        .call(move |exchange| async move { Ok(exchange.stop_strategy(&id, &reason).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}
