//! Orders: place, cancel, look up.

use actix_web::{HttpResponse, web};
use tracing::Instrument;
use tradefloor_domain::saga::OrderView;
use tradefloor_domain::{ClientOrderId, OrderId, OrderReference, OrderStatus};

use crate::api::{self, OrderRequest};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::{AppState, command_span};

/// Place an order; answers once the book accepted it (open, partially filled, filled) or it
/// was refused (422 with the reason's code). An order the node could not place within its
/// placement wait is answered `pending` with 202 and goes on.
#[utoipa::path(post, path = "/v1/orders", tag = "orders", request_body = OrderRequest,
    responses(
        (status = 201, description = "On the book, filled or ended", body = api::Order),
        (status = 202, description = "Accepted, not yet on the book", body = api::Order)))]
pub async fn place(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<OrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let (mut order, reference) = convert::new_order(&body)?;
    principal.require_account(order.account_id.as_str())?;
    if let Some(reference) = reference {
        order.order_id = Some(state.exchange()?.order_id_for(order.account_id, reference));
    }
    let command_id = body
        .command_id
        .clone()
        .or_else(|| body.order_id.map(|id| format!("client-order:{id}")))
        .unwrap_or_else(|| "generated".to_owned());
    let saga = order
        .order_id
        .map_or_else(|| "generated".to_owned(), |id| id.to_string());
    let span = command_span(&command_id, &format!("/trading/sagas/{saga}"));
    let view = state
        .call(move |exchange| async move { Ok(exchange.place_order(order).await?) })
        .instrument(span.clone())
        .await?;
    span.in_scope(|| {
        tracing::info!(
            order_id = view.order_id.0,
            account_id = %view.account_id,
            symbol = %view.symbol,
            status = ?view.status,
            "order placed"
        );
    });
    match view.status {
        OrderStatus::Rejected => Err(view
            .reject_reason
            .as_ref()
            .map(ApiError::domain)
            .unwrap_or_else(|| {
                ApiError::new(
                    actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "rejected",
                    "the order was rejected",
                )
            })),
        OrderStatus::Pending => {
            Ok(HttpResponse::Accepted().json(with_client_id(&view, body.order_id)))
        }
        _ => Ok(HttpResponse::Created().json(with_client_id(&view, body.order_id))),
    }
}

/// The order, with the id its account chose for it (if the caller named it by that id).
fn with_client_id(view: &OrderView, client_order_id: Option<u64>) -> api::Order {
    api::Order {
        client_order_id,
        ..convert::order(view)
    }
}

/// The order: status, filled quantity, fills.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = u64, Path, description = "The order")),
    responses((status = 200, description = "The order", body = api::Order)))]
pub async fn order(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    let view = owned_order(&state, &principal, OrderId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(convert::order(&view)))
}

/// The order an account placed under its own id (the placement's `order_id`).
#[utoipa::path(get, path = "/v1/accounts/{id}/orders/{client_order_id}", tag = "orders",
    params(("id" = String, Path, description = "The account"),
        ("client_order_id" = u64, Path, description = "The account's own id for the order")),
    responses((status = 200, description = "The order", body = api::Order)))]
pub async fn order_by_client_id(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ApiError> {
    let (account, client) = path.into_inner();
    let account_id = convert::account_id(&account)?;
    principal.require_account(account_id.as_str())?;
    let reference = OrderReference::Client(ClientOrderId::new(client)?);
    let order_id = state.exchange()?.order_id_for(account_id, reference);
    let view = owned_order(&state, &principal, order_id).await?;
    // Another account's order under the same venue id (a hash collision) is not this one.
    if view.account_id != account_id {
        return Err(ApiError::domain(&tradefloor_domain::Error::OrderNotFound {
            order_id,
        }));
    }
    Ok(HttpResponse::Ok().json(with_client_id(&view, Some(client))))
}

/// The order, if the caller may see it. Another account's order is "not found", exactly as
/// an order that does not exist: a trader learns nothing of others' orders, not even that
/// an id is in use.
async fn owned_order(
    state: &AppState,
    principal: &Principal,
    order_id: OrderId,
) -> Result<OrderView, ApiError> {
    let view = state
        .call(move |exchange| async move { Ok(exchange.order(order_id).await?) })
        .await?;
    if principal.require_account(view.account_id.as_str()).is_err() {
        return Err(ApiError::domain(&tradefloor_domain::Error::OrderNotFound {
            order_id,
        }));
    }
    Ok(view)
}

/// Ask for the order to be cancelled; answers the order as known then (the cancel completes
/// asynchronously: poll `GET /v1/orders/{id}`).
#[utoipa::path(delete, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = u64, Path, description = "The order")),
    responses((status = 202, description = "Cancel requested", body = api::Order)))]
pub async fn cancel(
    state: web::Data<AppState>,
    principal: Principal,
    id: web::Path<u64>,
) -> Result<HttpResponse, ApiError> {
    let order_id = OrderId(id.into_inner());
    // Look first: a trader cannot touch others' orders.
    owned_order(&state, &principal, order_id).await?;
    let span = command_span(
        &format!("cancel-{order_id}"),
        &format!("/trading/sagas/{order_id}"),
    );
    let view = state
        .call(move |exchange| async move { Ok(exchange.cancel_order(order_id).await?) })
        .instrument(span.clone())
        .await?;
    span.in_scope(|| tracing::info!(status = ?view.status, "cancel requested"));
    Ok(HttpResponse::Accepted().json(convert::order(&view)))
}
