//! The log for consumers outside the node: `GET /v1/events` (admin), pages of events after an
//! offset, filtered, with long polling; and subscriptions' offsets kept by the node
//! (`GET`/`PUT /v1/subscriptions/{name}/offset`), for at-least-once consumers that commit
//! what they processed and resume with `?subscription={name}`.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use tradefloor_actors::trading::events::{LOG_WAIT_MAX, LogQuery};

use crate::api::{self, EventsQuery, OffsetRequest, ReplayRequest};
use crate::http::auth::Principal;
use crate::http::convert;
use crate::http::error::ApiError;
use crate::http::state::AppState;

pub mod stream;

/// Entity kinds a filter may name.
const KINDS: [&str; 6] = [
    "account",
    "order_book",
    "order_saga",
    "quotes",
    "strategy",
    "alert",
];
/// Most names or kinds one filter lists.
const FILTER_ITEMS_MAX: usize = 32;
/// The longest stream prefix a filter takes.
const STREAM_PREFIX_BYTES_MAX: usize = 128;
/// The largest offset a client may name (JSON numbers are exact up to 2^53).
pub(super) const OFFSET_MAX: u64 = (1 << 53) - 1;

/// Events of the log after an offset (admin): a page as JSON, or, asked with
/// `Accept: text/event-stream`, every event from there on as Server-Sent Events (`id` = the
/// offset; `Last-Event-ID` resumes after it).
#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "SSE: resume after this offset")),
    responses((status = 200, description = "A page of the log, or text/event-stream of its events",
        body = api::EventsPage)))]
pub async fn events(
    request: HttpRequest,
    state: web::Data<AppState>,
    principal: Principal,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let mut query = query.into_inner();
    let subscription = query
        .subscription
        .clone()
        .map(|name| subscription_name(&name).map(|()| name))
        .transpose()?;
    let streaming = wants_event_stream(&request);
    if streaming {
        query.after = super::streams::resume_point(&request, query.after)?;
    }
    let resume = query.after.is_none().then_some(subscription).flatten();
    let mut query = log_query(query)?;
    let log = state.exchange()?.event_log();
    if let Some(name) = resume {
        let asked = log.clone();
        query.after = state
            .call(move |_| async move { Ok(asked.subscription_offset(&name).await?) })
            .await?;
    }
    if streaming {
        return stream::open(&state, log, query);
    }
    let page = state
        .call(move |_| async move { Ok(log.log_page(&query).await?) })
        .await?;
    Ok(HttpResponse::Ok().json(api::EventsPage {
        events: page.events,
        next_after: page.next_after,
    }))
}

/// Whether the client asked for Server-Sent Events.
fn wants_event_stream(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"))
}

/// The query, checked: a bad one is a 400 naming the parameter.
fn log_query(query: EventsQuery) -> Result<LogQuery, ApiError> {
    let after = query.after.unwrap_or(0);
    if after > OFFSET_MAX {
        return Err(ApiError::invalid_query(format!(
            "after must be 0 to {OFFSET_MAX}"
        )));
    }
    let limit = super::markets::bounded(query.limit, 100, 1_000, "limit")?;
    let wait = Duration::from_millis(u64::from(query.wait_ms.unwrap_or(0)));
    if wait > LOG_WAIT_MAX {
        return Err(ApiError::invalid_query(format!(
            "wait_ms must be 0 to {}",
            LOG_WAIT_MAX.as_millis()
        )));
    }
    let kinds = list(query.kinds.as_deref(), "kinds")?;
    if let Some(kind) = kinds.iter().find(|kind| !KINDS.contains(&kind.as_str())) {
        return Err(ApiError::invalid_query(format!(
            "kinds: no kind {kind:?} (one of {})",
            KINDS.join(", ")
        )));
    }
    let names = list(query.names.as_deref(), "names")?;
    if let Some(stream) = &query.stream
        && (stream.is_empty() || stream.len() > STREAM_PREFIX_BYTES_MAX)
    {
        return Err(ApiError::invalid_query(format!(
            "stream must be 1 to {STREAM_PREFIX_BYTES_MAX} bytes"
        )));
    }
    let symbol = query
        .symbol
        .as_deref()
        .map(|symbol| convert::symbol(symbol).map(|symbol| symbol.to_string()))
        .transpose()
        .map_err(|error| ApiError::domain(&error))?;
    Ok(LogQuery {
        after,
        limit: limit as usize,
        kinds,
        names,
        stream_prefix: query.stream,
        symbol,
        wait,
    })
}

/// A comma-separated list: its items, none empty, at most [`FILTER_ITEMS_MAX`].
fn list(text: Option<&str>, name: &str) -> Result<Vec<String>, ApiError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let items: Vec<String> = text.split(',').map(str::to_owned).collect();
    if items.len() > FILTER_ITEMS_MAX || items.iter().any(|item| item.is_empty() || item.len() > 64)
    {
        return Err(ApiError::invalid_query(format!(
            "{name}: 1 to {FILTER_ITEMS_MAX} comma-separated items of 1 to 64 bytes"
        )));
    }
    Ok(items)
}

/// Refuses a subscription name outside `[A-Za-z0-9_.:-]{1,64}`.
fn subscription_name(name: &str) -> Result<(), ApiError> {
    let valid = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_id",
            "a subscription name is 1 to 64 of A-Z a-z 0-9 _ . : -",
        ))
    }
}

/// A request about a subscription: an admin's, with a valid name and body.
fn subscription_request<T: serde::de::DeserializeOwned>(
    principal: &Principal,
    name: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<(String, T), ApiError> {
    principal.require_admin()?;
    let name = name.into_inner();
    subscription_name(&name)?;
    Ok((name, convert::object_body(body.into_inner(), "the body")?))
}

/// The offset a subscription committed (admin): its consumer resumes after it.
#[utoipa::path(get, path = "/v1/subscriptions/{name}/offset", tag = "subscriptions",
    params(("name" = String, Path, description = "The subscription")),
    responses((status = 200, description = "Its offset (0 if none)", body = api::SubscriptionOffset)))]
pub async fn subscription_offset(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require_admin()?;
    let name = name.into_inner();
    subscription_name(&name)?;
    let asked = name.clone();
    let offset =
        state
            .call(move |exchange| async move {
                Ok(exchange.event_log().subscription_offset(&asked).await?)
            })
            .await?;
    Ok(HttpResponse::Ok().json(api::SubscriptionOffset { name, offset }))
}

/// Commits what a subscription's consumer processed (admin): forward only.
#[utoipa::path(put, path = "/v1/subscriptions/{name}/offset", tag = "subscriptions",
    params(("name" = String, Path, description = "The subscription")),
    request_body = OffsetRequest,
    responses((status = 200, description = "Committed", body = api::SubscriptionOffset),
        (status = 409, description = "Behind the committed offset: nothing changed", body = api::ErrorBody)))]
pub async fn commit_subscription(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let (name, body): (_, OffsetRequest) = subscription_request(&principal, name, body)?;
    let offset = body.offset;
    if offset > OFFSET_MAX {
        return Err(ApiError::invalid_json(format!(
            "offset must be 0 to {OFFSET_MAX}"
        )));
    }
    let asked = name.clone();
    let (committed, current) = state
        .call(move |exchange| async move {
            let log = exchange.event_log();
            let committed = log.commit_subscription(&asked, offset).await?;
            Ok((committed, log.subscription_offset(&asked).await?))
        })
        .await?;
    if !committed {
        return Err(ApiError::new(
            actix_web::http::StatusCode::CONFLICT,
            "offset_behind",
            format!("offset {offset} is behind the committed {current}"),
        ));
    }
    Ok(HttpResponse::Ok().json(api::SubscriptionOffset {
        name,
        offset: current,
    }))
}

/// Replays a subscription (admin): sets its offset, backwards too, to an offset or to just
/// before the first event recorded at or after a time; its consumer then gets every event
/// from there again.
#[utoipa::path(post, path = "/v1/subscriptions/{name}/replay", tag = "subscriptions",
    params(("name" = String, Path, description = "The subscription")),
    request_body = ReplayRequest,
    responses((status = 200, description = "Its offset now", body = api::SubscriptionOffset)))]
pub async fn replay_subscription(
    state: web::Data<AppState>,
    principal: Principal,
    name: web::Path<String>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let (name, body): (_, ReplayRequest) = subscription_request(&principal, name, body)?;
    let from = match (body.offset, body.at) {
        (Some(offset), None) if offset <= OFFSET_MAX => Ok(offset),
        (None, Some(at)) => Err(at),
        _ => {
            return Err(ApiError::invalid_json(format!(
                "give exactly one of offset (0 to {OFFSET_MAX}) and at (microseconds)"
            )));
        }
    };
    let asked = name.clone();
    let offset = state
        .call(move |exchange| async move {
            let log = exchange.event_log();
            let offset = match from {
                Ok(offset) => offset,
                Err(at) => log.offset_before(at).await?,
            };
            log.replay_subscription(&asked, offset).await?;
            Ok(offset)
        })
        .await?;
    Ok(HttpResponse::Ok().json(api::SubscriptionOffset { name, offset }))
}
