//! Pattern rules and their alerts (admin): the rules in force (`GET /v1/rules`), replacing
//! them (`PUT /v1/rules`, journaled, so they survive restarts) and the alerts raised
//! (`GET /v1/alerts`).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use tradefloor_actors::trading::alerts::ALERTS_PAGE_MAX;
use tradefloor_domain::rules::{Action, Alert, RuleSet};

use super::events::OFFSET_MAX;
use crate::api::{self, AlertsQuery};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

fn rules_off() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "rules_off",
        "no rules monitor runs on this node (enable it with [rules] enabled = true)",
    )
}

/// The rules in force and the owners (admin).
#[utoipa::path(get, path = "/v1/rules", tag = "rules",
    responses((status = 200, description = "`{rules: [{name, kind, …}], owners: {account: owner}}`",
        body = serde_json::Value),
        (status = 409, description = "No rules monitor on this node", body = api::ErrorBody)))]
pub async fn rules(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let set = state.exchange()?.rules().ok_or_else(rules_off)?;
    Ok(HttpResponse::Ok().json(set))
}

/// Replaces the rules (admin): journaled, then in force at once (their windows start empty).
#[utoipa::path(put, path = "/v1/rules", tag = "rules",
    request_body(content = serde_json::Value,
        description = "`{rules: [{name, kind: price_band|price_move|cancel_burst|wash_trade|deposit_withdrawal, …}], owners?}`"),
    responses((status = 200, description = "The rules now in force", body = serde_json::Value),
        (status = 409, description = "No rules monitor on this node", body = api::ErrorBody)))]
pub async fn replace(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let set: RuleSet = convert::object_body(body.into_inner(), "the rules")?;
    set.validate()
        .map_err(|reason| ApiError::invalid_json(format!("the rules: {reason}")))?;
    let answer = set.clone();
    let replaced = state
        .call(move |exchange| async move { Ok(exchange.replace_rules(set).await?) })
        .await?;
    if !replaced {
        return Err(rules_off());
    }
    Ok(HttpResponse::Ok().json(answer))
}

fn alert_body(sequence: u64, alert: Alert) -> api::AlertBody {
    let (action, orders_per_second) = match alert.action {
        Action::Halt => ("halt", None),
        Action::Flag => ("flag", None),
        Action::Throttle { orders_per_second } => ("throttle", Some(orders_per_second)),
    };
    api::AlertBody {
        sequence,
        rule: alert.rule,
        key: alert.key,
        account: alert.account,
        symbol: alert.symbol,
        action: action.to_owned(),
        orders_per_second,
        message: alert.message,
        offset: alert.offset,
        at: alert.at,
    }
}

/// The alerts raised, in order (admin).
#[utoipa::path(get, path = "/v1/alerts", tag = "rules",
    params(AlertsQuery),
    responses((status = 200, description = "A page of alerts", body = api::AlertsPage)))]
pub async fn alerts(
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<AlertsQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let after = query.after.unwrap_or(0);
    if after > OFFSET_MAX {
        return Err(ApiError::invalid_query(format!(
            "after must be 0 to {OFFSET_MAX}"
        )));
    }
    let limit =
        super::markets::bounded(query.limit, 100, ALERTS_PAGE_MAX as u32, "limit")? as usize;
    let page = state
        .call(move |exchange| async move { Ok(exchange.alerts(after, limit).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(api::AlertsPage {
        alerts: page
            .alerts
            .into_iter()
            .map(|(sequence, alert)| alert_body(sequence, alert))
            .collect(),
        next_after: page.next_after,
    }))
}
